#!/usr/bin/env bash
# Stress tables (ltk-eval --stress) of trained runs: for each run directory given (default: the
# shipped configs' runs under runs/, trained first when missing; the transformer's is left out for
# its 12 minutes), accuracy and the share of flipped predictions under every perturbation, on its
# own test split. Writes docs/stress.md. Run it alone.
#   scripts/bench_stress.sh [RUN_DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/bin/ltk-eval ]] || ./scripts/build.sh
runs=("$@")
if ((${#runs[@]} == 0)); then
  for name in fortunes_linear fortunes_bow fortunes_bow_sparse fortunes_spm fortunes_textcnn fortunes_rnn \
              fortunes_zh_linear fortunes_zh_jieba fortunes_zh_char; do
    if [[ ! -d runs/$name/checkpoints ]]; then
      corpus=$(python3 -c "import json; print(json.load(open('configs/$name.json'))['data']['train'].split('/')[1])")
      [[ -f data/$corpus/train.tsv ]] || ./scripts/data.sh "$corpus"
      OMP_NUM_THREADS=1 build/bin/ltk-train --config "configs/$name.json" --set threads=1 --overwrite >/dev/null 2>&1
    fi
    runs+=("runs/$name")
  done
  for name in fortunes_bert_s13 fortunes_zh_bert_s13; do  # made by scripts/bench_pretrain.sh, when it has run
    [[ -d runs/$name/checkpoints ]] && runs+=("runs/$name")
  done
fi
results=$(mktemp)
for run in "${runs[@]}"; do
  test=$(python3 -c "import json; print(json.load(open('$run/config.json'))['data']['test'])")
  OMP_NUM_THREADS=1 build/bin/ltk-eval --run "$run" --data "$test" --stress --json --threads 1 \
    --out "$(mktemp -d)" 2>/dev/null | RUN="$run" python3 -c "import json,os,sys; j=json.load(sys.stdin); j['run']=os.environ['RUN']; print(json.dumps(j))" >> "$results"
done
python3 bench/stress_table.py < "$results" > docs/stress.md
cat docs/stress.md
