#!/usr/bin/env bash
# ltk-serve with a BERT run against the same model, in float32, behind Flask under gunicorn
# (bench/serve_flask.py: BERT's basic tokenisation and greedy WordPiece over the run's vocabulary),
# in one invocation: requests/s, p50/p99 at 1 and 8 connections, 32 texts per request, RSS; and
# the run's bf16 (where the CPU has native bf16) and int8 deploy artifacts behind ltk-serve.
# ltk-serve runs as many model workers as cores (one LibTorch thread each, sharing the weights);
# gunicorn its usual 2 x cores + 1 sync workers. Writes docs/bench_serve_bert.{json,md}. Run it
# alone: the load generator, the servers and the models share the machine's cores.
#   scripts/bench_serve_bert.sh [RUN]   (default runs/fortunes_bert, trained when missing:
#                                        configs/fortunes_bert.json from the masked-LM run)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
[[ -x build/bin/ltk-serve ]] || ./scripts/build.sh
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
run="${1:-runs/fortunes_bert}"
if [[ $# -gt 0 && ! -f $run/config.json ]]; then
  echo "bench_serve_bert: $run is not a run directory (no config.json)" >&2
  exit 2
fi
if [[ ! -f $run/config.json ]]; then
  [[ -f runs/fortunes_mlm/bert/config.json ]] || build/bin/ltk-train --config configs/fortunes_mlm.json >&2
  build/bin/ltk-train --config configs/fortunes_bert.json --overwrite >&2
fi
# Deploy artifacts served too (Flask keeps float32): bf16 where the CPU has native bf16, and int8.
artifacts=int8
grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo && artifacts=bf16,int8
/usr/bin/python3 bench/bench_serve.py --models "bert=$run" --connections 1,8 --seconds 10 --copies 2 \
  --rss-requests 30000 --workers "$(getconf _NPROCESSORS_ONLN)" --artifacts "$artifacts" --out bench_serve_bert
