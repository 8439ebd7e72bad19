#!/usr/bin/env bash
# Data-parallel training: 2 processes x 1 thread against 1 process x 2 threads for bow and textcnn on
# fortunes_en (bench/bench_dist.py). Writes docs/bench_dist.json and docs/bench_dist.md. Run it alone.
#   scripts/bench_dist.sh [--models bow,textcnn] [--epochs 1] [--batch 64]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[[ -x build/bin/ltk-train ]] || ./scripts/build.sh
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
/usr/bin/python3 bench/bench_dist.py "$@"
