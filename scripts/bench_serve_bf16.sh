#!/usr/bin/env bash
# ltk-serve with the bf16 deploy artifacts of the textcnn, transformer and rnn runs (where the CPU
# has native bf16), against the same runs in float32 and Flask + gunicorn serving float32: one text
# per request at 8 connections, 32 texts per request, in one invocation. Writes
# docs/bench_serve_bf16.{json,md}. Run it alone.
#   scripts/bench_serve_bf16.sh   (trains configs/fortunes_{textcnn,transformer,rnn}.json when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
[[ -x build/bin/ltk-serve ]] || ./scripts/build.sh
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
if ! grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
  echo "bench_serve_bf16: this CPU has no native bf16 (AVX512_BF16 or AMX): ltk-eval refuses bf16 artifacts here" >&2
  exit 2
fi
models=()
for m in textcnn transformer rnn; do
  [[ -f runs/fortunes_$m/report.html ]] ||
    OMP_NUM_THREADS=1 build/bin/ltk-train --config configs/fortunes_$m.json --set trainer.bucket_pool=50 --overwrite >&2
  models+=("$m=runs/fortunes_$m")
done
/usr/bin/python3 bench/bench_serve.py --models "$(IFS=,; echo "${models[*]}")" --connections 8 --seconds 10 \
  --copies 2 --rss-requests 1 --workers "$(getconf _NPROCESSORS_ONLN)" --artifacts bf16 --out bench_serve_bf16
