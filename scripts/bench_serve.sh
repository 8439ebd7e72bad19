#!/usr/bin/env bash
# ltk-serve under load (wrk on loopback) against the same model behind Flask under gunicorn, in one
# invocation: requests/s, p50/p99 at 1, 8 and 64 connections for bow and textcnn on fortunes_en,
# --max-batch 1 against dynamic batching, texts/s against ltk-predict on a file, RSS before and
# after 100k requests. Writes docs/bench_serve.json and the serving section of docs/benchmarks.md.
# Run it alone: the load generator, the server and the model share the machine's cores.
#   scripts/bench_serve.sh [--seconds S] [--connections 1,8,64] [--rss-requests N]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
[[ -x build/bin/ltk-serve ]] || ./scripts/build.sh
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
for model in bow textcnn; do
  # (length bucketing: the same accuracy in half the time, docs/benchmarks.md)
  [[ -f runs/fortunes_$model/report.html ]] ||
    OMP_NUM_THREADS=1 build/bin/ltk-train --config configs/fortunes_$model.json --set trainer.bucket_pool=50 --overwrite >&2
done
/usr/bin/python3 bench/bench_serve.py "$@"
