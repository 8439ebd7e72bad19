#!/usr/bin/env bash
# Training speed of trainer.precision "bf16" (autocast) against "fp32", model by model and width by
# width, on N texts (a fixed shuffle) of fortunes_en's training split (1 epoch, batch 32, no validation, no
# length bucketing), at 1 and 2 LibTorch threads: the evidence behind what trainer.precision "auto"
# picks. Times are the training loop's steps (train.log's "time: steps"), both precisions run one
# after the other in this invocation. Needs a CPU with native bf16 (AVX512_BF16 or AMX). Writes
# docs/bench_precision.md. Run it alone.
#   scripts/bench_precision.sh [samples=2048]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2048}"
grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo || { echo "this CPU has no native bf16: nothing to compare" >&2; exit 1; }
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
[[ -f runs/fortunes_mlm/bert/config.json ]] || build/bin/ltk-train --config configs/fortunes_mlm.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The split is sorted by label: a fixed shuffle takes every label.
shuf -n "$n" --random-source=<(yes) data/fortunes_en/train.tsv > "$tmp/train.tsv"
# name | config | overrides (space-separated --set values)
models=(
  "textcnn 128|configs/fortunes_textcnn.json|"
  "rnn (lstm) 128|configs/fortunes_rnn.json|"
  "transformer 128|configs/fortunes_transformer.json|"
  "transformer 256|configs/fortunes_transformer.json|model.embed_dim=256 model.ff_dim=1024 model.layers=4"
  "bert 2x128 (fine-tuned)|configs/fortunes_bert.json|"
  "bert 4x256|configs/fortunes_bert.json|model.pretrained_dir= model.hidden_size=256 model.num_hidden_layers=4 model.num_attention_heads=4 model.intermediate_size=1024 model.max_position_embeddings=128 data.tokenizer.dict=runs/fortunes_mlm/bert/vocab.txt"
)
steps_s() { grep -o 'time: steps [0-9.]*s' "$1" | grep -o '[0-9.]*s$' | tr -d s; }
rows=()
for m in "${models[@]}"; do
  IFS='|' read -r name config overrides <<< "$m"
  for threads in 1 2; do
    line="$name|$threads"
    for p in fp32 bf16; do
      sets=(--set "data.train=$tmp/train.tsv" --set data.valid= --set data.test= --set trainer.epochs=1
            --set trainer.bucket_pool=0 --set trainer.precision=$p --set threads=$threads --set "output_dir=$tmp/run")
      for o in $overrides; do sets+=(--set "$o"); done
      rm -rf "$tmp/run"
      OMP_NUM_THREADS=$threads build/bin/ltk-train --config "$config" "${sets[@]}" 2> "$tmp/log" \
        || { cat "$tmp/log" >&2; exit 1; }
      line="$line|$(steps_s "$tmp/run/train.log")"
    done
    echo "$line" >&2
    rows+=("$line")
  done
done
printf '%s\n' "${rows[@]}" > "$tmp/rows"
python3 - "$n" "$tmp/rows" <<'PY' | tee docs/bench_precision.md
import datetime, subprocess, sys
n = sys.argv[1]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
print("# trainer.precision: bf16 autocast against fp32, training loop\n")
print(f"`scripts/bench_precision.sh`: {n} texts (a fixed shuffle) of fortunes_en's training split, 1 epoch, batch 32, no")
print(f"length bucketing, the training loop's steps alone (train.log's `time: steps`), {cpu}, {datetime.date.today()}.\n")
print("| model | threads | fp32 s | bf16 s | bf16 speed-up |")
print("|---|---|---|---|---|")
for line in open(sys.argv[2]):
    name, threads, fp32, bf16 = line.strip().split("|")
    print(f"| {name} | {threads} | {float(fp32):.1f} | {float(bf16):.1f} | {float(fp32) / float(bf16):.2f}x |")
PY
