#!/usr/bin/env bash
# Does masked-LM pretraining help here? For fortunes_en and fortunes_zh: pretrain a small BERT on
# the training split's text (configs/*mlm.json), fine-tune it (configs/*bert.json), and train the
# same architecture from scratch with the same fine-tuning budget and vocabulary. Prints test
# accuracy, macro-F1 and wall-clock times; writes docs/bench_pretrain.md. Run it alone.
#   scripts/bench_pretrain.sh [fortunes_en|fortunes_zh|all] [seed...]
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
shift || true
seeds=("${@:-13}")
bin=build/bin
out=docs/bench_pretrain.md
rows=()
metric() {  # run dir -> "accuracy macro_f1" of its test record
  python3 -c "import json,sys; r=[json.loads(l) for l in open('$1/metrics.jsonl') if '\"test\"' in l][-1]; print(f\"{r['accuracy']:.4f} {r['macro_f1']:.4f}\")"
}
seconds() { local s=$SECONDS; "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; echo $((SECONDS - s)); }
for corpus in fortunes_en fortunes_zh; do
  [[ $which == all || $which == "$corpus" ]] || continue
  [[ -f data/$corpus/train.tsv ]] || ./scripts/data.sh "$corpus"
  prefix=${corpus/fortunes_en/fortunes}
  mlm=configs/${prefix}_mlm.json
  bert=configs/${prefix}_bert.json
  t_mlm=$(seconds "$bin/ltk-train" --config "$mlm" --overwrite)
  tokens=$(grep -o 'train: [0-9]* samples, [0-9]* tokens' "runs/${prefix}_mlm/train.log" | tail -1 | awk '{print $4}')
  steps=$(grep -o 'done: [0-9]* steps' "runs/${prefix}_mlm/train.log" | awk '{print $2}')
  epochs=$(python3 -c "import json; print(json.load(open('$mlm'))['trainer']['epochs'])")
  masked=$(python3 -c "import json; r=[json.loads(l) for l in open('runs/${prefix}_mlm/metrics.jsonl') if '\"valid\"' in l][-1]; print(f\"{r['masked_accuracy']:.3f} / {r['perplexity']:.1f}\")")
  vocab=runs/${prefix}_mlm/bert/vocab.txt
  for seed in "${seeds[@]}"; do
    t_ft=$(seconds "$bin/ltk-train" --config "$bert" --set seed="$seed" --set output_dir="runs/${prefix}_bert_s$seed" --overwrite)
    t_sc=$(seconds "$bin/ltk-train" --config "$bert" --set seed="$seed" --set output_dir="runs/${prefix}_bert_scratch_s$seed" \
      --set model.pretrained_dir= --set data.tokenizer.dict="$vocab" --set model.hidden_size=128 \
      --set model.num_hidden_layers=2 --set model.num_attention_heads=2 --set model.intermediate_size=512 \
      --set model.max_position_embeddings=128 --overwrite)
    rows+=("| $corpus | pretrained (MLM, $epochs epochs, $((tokens * epochs)) tokens, ${t_mlm} s; valid masked acc / ppl $masked) + fine-tuned | $seed | $(metric "runs/${prefix}_bert_s$seed" | tr ' ' '|') | ${t_ft} s |")
    rows+=("| $corpus | same architecture from scratch, same fine-tuning | $seed | $(metric "runs/${prefix}_bert_scratch_s$seed" | tr ' ' '|') | ${t_sc} s |")
  done
done
{
  echo "# Does pretraining help? (scripts/bench_pretrain.sh)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), LibTorch/OpenBLAS threads: all cores."
  echo "A 2-layer, 128-wide BERT (1.2 M parameters) with a WordPiece vocabulary learnt on the training split."
  echo
  echo "| corpus | model | seed | test accuracy | macro-F1 | fine-tuning time |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$out"
