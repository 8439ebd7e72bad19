#!/usr/bin/env bash
# ltk-serve under hostile load, on loopback only, bounded in time and connections: wrk at a steady
# rate from 127.0.0.1 beside 1,000 idle and 200 slowloris connections from 127.0.0.2 and up, and a
# reload every 5 s, for 3 minutes; then 20 rounds of SIGTERM during or just after such a storm.
# Reports the legitimate clients' p50/p99 and errors, the server's RSS and open descriptors over
# time, and every exit code (docs/soak_serve.md, docs/soak_serve.json). Run it alone.
#   scripts/soak_serve.sh [--seconds 180] [--idle 1000] [--slow 200] [--rounds 20] [--delay-ms 10]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
[[ -x build/bin/ltk-serve ]] || ./scripts/build.sh
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
[[ -f runs/fortunes_bow/report.html ]] ||
  OMP_NUM_THREADS=1 build/bin/ltk-train --config configs/fortunes_bow.json --set trainer.bucket_pool=50 --overwrite >&2
/usr/bin/python3 bench/soak_serve.py "$@"
