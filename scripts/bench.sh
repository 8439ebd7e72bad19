#!/usr/bin/env bash
# Benchmarks (issue #7): ltk against the same pipeline in PyTorch-in-Python (bench/py_train.py)
# and fastText, on fortunes_en and on a synthetic corpus 20x larger (fortunes_en's training split
# repeated and shuffled), one program at a time. Prints the table and writes docs/benchmarks.md,
# docs/benchmarks.svg and docs/benchmarks.json. Takes about 40 minutes on 2 cores; run it
# alone (a busy second core makes OpenMP collapse and the figures meaningless).
#   scripts/bench.sh [--threads N] [--only "bow,textcnn"]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test >/dev/null
./scripts/build.sh >/dev/null
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
synth=data/bench/synthetic20/train.tsv
if [[ ! -s $synth ]]; then
  mkdir -p "$(dirname "$synth")"
  /usr/bin/python3 bench/make_corpus.py data/fortunes_en/train.tsv --times 20 --out "$synth"
fi
exec /usr/bin/python3 bench/run_bench.py "$@"
