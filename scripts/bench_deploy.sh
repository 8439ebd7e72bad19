#!/usr/bin/env bash
# Deploy artifacts (ltk-eval --quantize) on real corpora: a small BERT (2 layers x 128, 2 heads,
# feed-forward 512, max_len 64, a WordPiece vocabulary of 4,000 learnt from the training split)
# trained from scratch on fortunes_en and fortunes_zh, and where the CPU has native bf16 the
# textcnn, rnn and transformer of configs/ on fortunes_en, then made into int8 and bf16 artifacts that
# the check accepts or refuses on the validation split (--max-drop 0.5). Each model is scored on the
# test split: accuracy, ltk-eval's model pass (the second pass over the file, warm), ltk-predict's
# whole process (loading included) and its peak RSS, and the weights' size. Writes
# docs/bench_deploy.md. Run it alone.
#   scripts/bench_deploy.sh [epochs=3] [threads=2]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-3}"
threads="${2:-2}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
precisions=(int8)
grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo && precisions+=(bf16)
rows=""
# measure NAME RUN CORPUS PRECISION...: the float32 run and its artifacts, one table row each.
measure() {
  local name=$1 trained=$2 corpus=$3
  shift 3
  cp "data/$corpus/test.tsv" "$tmp/test2.tsv"
  cut -f2 "data/$corpus/test.tsv" > "$tmp/texts.txt"
  for p in fp32 "$@"; do
    run="$trained"
    check='{}'
    if [[ $p != fp32 ]]; then
      run="$trained-$p"
      set +e
      check=$(build/bin/ltk-eval --run "$trained" --quantize "$p" --out "$run" --json --threads "$threads" \
        2> "$tmp/$p.log")
      code=$?
      set -e
      if [[ $code == 3 ]]; then rows+="$name $p refused $(echo "$check" | tr -d ' ')"$'\n'; continue; fi
      [[ $code == 0 ]] || { cat "$tmp/$p.log" >&2; exit 1; }
    fi
    # Two passes over the test split: the second is the warm model pass.
    eval_json=$(build/bin/ltk-eval --run "$run" --data "data/$corpus/test.tsv" --data "$tmp/test2.tsv" --json \
      --out "$tmp/eval-$p" --threads "$threads" 2> /dev/null | tail -1 | tr -d ' ')
    start=$(date +%s.%N)
    OMP_NUM_THREADS=$threads /usr/bin/time -f "%M" -o "$tmp/rss" build/bin/ltk-predict --run "$run" \
      --input "$tmp/texts.txt" --threads "$threads" > /dev/null
    predict_s=$(echo "$(date +%s.%N) - $start" | bc)
    weights=$(stat -c %s "$(ls "$run"/checkpoints/*/weights.pt | head -1)")
    rows+="$name $p $(echo "$check" | tr -d ' ') $eval_json $predict_s $(cat "$tmp/rss") $weights $(wc -l < "$tmp/texts.txt")"$'\n'
  done
}
for corpus in fortunes_en fortunes_zh; do
  [[ -f data/$corpus/train.tsv ]] || ./scripts/data.sh "$corpus"
  cat > "$tmp/$corpus.json" <<JSON
{"name": "deploy_$corpus", "seed": 13, "device": "cpu", "threads": $threads, "output_dir": "$tmp/$corpus",
 "data": {"train": "data/$corpus/train.tsv", "valid": "data/$corpus/valid.tsv", "max_len": 64,
          "tokenizer": {"type": "wordpiece", "vocab_size": 4000}},
 "model": {"type": "bert", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 512, "max_position_embeddings": 64},
 "optimizer": {"type": "adamw", "lr": 0.0005, "weight_decay": 0.01},
 "trainer": {"epochs": $epochs, "batch_size": 32, "bucket_pool": 50, "log_every": 1000}}
JSON
  build/bin/ltk-train --config "$tmp/$corpus.json" 2> "$tmp/$corpus.train.log"
  measure "$corpus/bert" "$tmp/$corpus" "$corpus" "${precisions[@]}"
done
# The other models with a deploy precision (bf16 alone), from their example configs.
if [[ " ${precisions[*]} " == *" bf16 "* ]]; then
  for model in textcnn rnn transformer; do
    build/bin/ltk-train --config "configs/fortunes_$model.json" --set "output_dir=$tmp/$model" \
      --set "trainer.epochs=$epochs" --set "threads=$threads" 2> "$tmp/$model.train.log"
    measure "fortunes_en/$model" "$tmp/$model" fortunes_en bf16
  done
fi
python3 - "$rows" "$epochs" "$threads" <<'PY' | tee docs/bench_deploy.md
import json, subprocess, sys
rows, epochs, threads = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
flags = subprocess.run("grep -m1 '^flags' /proc/cpuinfo", shell=True, capture_output=True, text=True).stdout.split()
native = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
print("# Deploy artifacts: int8 and bf16 against float32 (scripts/bench_deploy.sh)\n")
print(f"A BERT of 2 layers x 128 (2 heads, feed-forward 512, max_len 64, WordPiece 4,000) trained from scratch for "
      f"{epochs} epochs on each corpus, and the textcnn, rnn and transformer of configs/fortunes_MODEL.json "
      f"for {epochs} epochs on fortunes_en (bf16 alone: their deploy precision), {threads} threads; artifacts made by `ltk-eval --quantize` with the check on "
      f"the validation split (--max-drop 0.5), every figure below on the test split. CPU: {cpu} "
      f"({', '.join(native) or 'no native bf16 or VNNI'}). The model pass is ltk-eval's second pass over the file "
      f"(warm); ltk-predict's time is its whole process, loading included.\n")
print("| corpus/model | weights | check on valid: accuracy (float32 -> artifact), agreement, largest probability change | "
      "test accuracy | model pass, samples/s | ltk-predict whole process, s | peak RSS MB | weights MB |")
print("|---|---|---|---|---|---|---|---|")
base = {}
for line in rows.strip().splitlines():
    parts = line.split(" ")
    corpus, p = parts[0], parts[1]
    if parts[2] == "refused":
        c = json.loads(parts[3])
        print(f"| {corpus} | {p} | refused: {c['reference_accuracy']:.4f} -> {c['accuracy']:.4f}, agreement "
              f"{c['agreement']:.4f} | | | | | |")
        continue
    check, ev = json.loads(parts[2]), json.loads(parts[3])
    predict_s, rss, weights, n = float(parts[4]), int(parts[5]), int(parts[6]), int(parts[7])
    speed = ev["samples_per_s"]
    if p == "fp32":
        base[corpus] = speed
    ratio = f" ({speed / base[corpus]:.2f}x)" if p != "fp32" else ""
    c = (f"{check['reference_accuracy']:.4f} -> {check['accuracy']:.4f}, {check['agreement']:.4f}, "
         f"{check['max_probability_change']:.4f}" if check else "")
    print(f"| {corpus} | {p} | {c} | {ev['accuracy']:.4f} | {speed:.0f}{ratio} | {predict_s:.2f} | {rss / 1024:.0f} | "
          f"{weights / 1e6:.2f} |")
PY
