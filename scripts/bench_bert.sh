#!/usr/bin/env bash
# Fine-tuning throughput and peak memory of a small BERT (4 layers, hidden 256, 4 heads, max_len
# 128, batch 32) in ltk against the same model in python3-torch (bench/bench_bert.py), on the same
# texts in the same batch order (no shuffling, no length bucketing on either side), 2 threads each,
# run one after the other in this invocation; then ltk-predict's inference samples/s. The texts are
# fortunes_en's training texts rewritten as word ids, so that both sides see identical ids without
# a WordPiece tokenizer in Python. Writes docs/bench_bert.md (BENCH_OUT=FILE: there instead; BENCH_JSON=FILE:
# the ratios as JSON too). LTK_NATIVE_BF16=0 skips the bf16 rows (scripts/bench_isa.sh sets it to play a CPU
# without native bf16). Run it alone.
#   scripts/bench_bert.sh [samples=1024] [threads=2]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1024}"
threads="${2:-2}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="${BENCH_OUT:-docs/bench_bert.md}"
# As ltk decides it: LTK_NATIVE_BF16, else the CPU's flags and oneDNN's instruction-set cap.
native_bf16() {
  if [[ -n "${LTK_NATIVE_BF16:-}" ]]; then [[ "$LTK_NATIVE_BF16" != 0 ]]; return; fi
  local cap="${ONEDNN_MAX_CPU_ISA:-${DNNL_MAX_CPU_ISA:-}}"
  case "${cap^^}" in SSE41 | AVX | AVX2 | AVX2_VNNI | AVX2_VNNI_2 | AVX512_CORE | AVX512_CORE_VNNI) return 1 ;; esac
  grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo
}
[[ -f data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
# Every distinct lowercase word of the texts becomes a vocabulary entry of its own (no ## pieces).
python3 - "$n" "$tmp" <<'PY'
import re, sys
n, tmp = int(sys.argv[1]), sys.argv[2]
rows = [l.rstrip("\n").split("\t", 1) for l in open("data/fortunes_en/train.tsv", encoding="utf-8")][:n]
words = {}
out = []
for label, text in rows:
    ws = [w for w in re.findall(r"[a-z]+", text.lower())] or ["x"]
    for w in ws:
        words.setdefault(w, len(words))
    out.append(f"{label}\t{' '.join(ws)}")
open(f"{tmp}/data.tsv", "w").write("\n".join(out) + "\n")
open(f"{tmp}/vocab.txt", "w").write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(words)) + "\n")
PY
cat > "$tmp/bert.json" <<JSON
{"name": "bench_bert", "seed": 13, "device": "cpu", "threads": $threads, "output_dir": "$tmp/run",
 "data": {"train": "$tmp/data.tsv", "max_len": 128, "tokenizer": {"dict": "$tmp/vocab.txt"}},
 "model": {"type": "bert", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
           "intermediate_size": 1024, "max_position_embeddings": 128},
 "optimizer": {"type": "adamw", "lr": 0.0001, "weight_decay": 0.01},
 "trainer": {"epochs": 1, "batch_size": 32, "shuffle": false, "bucket_pool": 0, "log_every": 1000}}
JSON
/usr/bin/time -f "%M" -o "$tmp/ltk.rss" build/bin/ltk-train --config "$tmp/bert.json" 2> "$tmp/ltk.log"
ltk_line=$(grep -o 'done: [0-9]* steps in [0-9.]*s' "$tmp/run/train.log")
ltk_s=$(echo "$ltk_line" | grep -o '[0-9.]*s$' | tr -d s)
tokens=$(grep -o 'train: [0-9]* samples, [0-9]* tokens' "$tmp/run/train.log" | awk '{print $4}')
# The same run under trainer.precision "bf16" (autocast), where the CPU computes bf16 natively.
bf16_s=0
if native_bf16; then
  build/bin/ltk-train --config "$tmp/bert.json" --set trainer.precision=bf16 --set output_dir="$tmp/run_bf16" \
    2> "$tmp/bf16.log"
  bf16_s=$(grep -o 'done: [0-9]* steps in [0-9.]*s' "$tmp/run_bf16/train.log" | grep -o '[0-9.]*s$' | tr -d s)
fi
cut -f2 "$tmp/data.tsv" > "$tmp/texts.txt"
start=$(date +%s.%N)
OMP_NUM_THREADS=$threads /usr/bin/time -f "%M" -o "$tmp/predict.rss" build/bin/ltk-predict --run "$tmp/run" \
  --input "$tmp/texts.txt" --threads "$threads" --batch-size 32 > /dev/null
predict_s=$(echo "$(date +%s.%N) - $start" | bc)
# Deploy artifacts of the same run (ltk-eval --quantize; the check's --max-drop is lifted: one epoch
# on 1024 texts is a speed test, not a model), predicted on the same texts.
declare -A art_s art_rss art_mb
for p in int8 bf16; do
  art_s[$p]=0 art_rss[$p]=0 art_mb[$p]=0
  [[ $p == bf16 ]] && ! native_bf16 && continue
  build/bin/ltk-eval --run "$tmp/run" --quantize $p --out "$tmp/$p" --data "$tmp/data.tsv" --max-drop 100 \
    --threads "$threads" 2> "$tmp/$p.log" || { cat "$tmp/$p.log" >&2; exit 1; }
  art_mb[$p]=$(stat -c %s "$tmp/$p/checkpoints/deploy/weights.pt")
  start=$(date +%s.%N)
  OMP_NUM_THREADS=$threads /usr/bin/time -f "%M" -o "$tmp/$p.rss" build/bin/ltk-predict --run "$tmp/$p" \
    --input "$tmp/texts.txt" --threads "$threads" --batch-size 32 > /dev/null
  art_s[$p]=$(echo "$(date +%s.%N) - $start" | bc)
  art_rss[$p]=$(cat "$tmp/$p.rss")
done
float_mb="$(stat -c %s "$(ls "$tmp"/run/checkpoints/step-*/weights.pt | head -1)") $(cat "$tmp/predict.rss")"
py=$(/usr/bin/python3 bench/bench_bert.py "$tmp/data.tsv" "$tmp/vocab.txt" 128 32 "$threads")
python3 - "$n" "$tokens" "$ltk_s" "$(cat "$tmp/ltk.rss")" "$predict_s" "$py" "$threads" "$bf16_s" \
  "${art_s[int8]} ${art_rss[int8]} ${art_mb[int8]}" "${art_s[bf16]} ${art_rss[bf16]} ${art_mb[bf16]}" "$float_mb" \
  "${BENCH_JSON:-}" <<'PY' | tee "$out"
import json, subprocess, sys
n, tokens, ltk_s, rss_kb, predict_s, py, threads, bf16_s = sys.argv[1:9]
artifacts = {p: [float(v) for v in sys.argv[i].split()] for p, i in (("int8", 9), ("bf16", 10))}
float_mb, float_rss = int(sys.argv[11].split()[0]) / 1e6, int(sys.argv[11].split()[1]) / 1024
json_out = sys.argv[12]
n, tokens, ltk_s, predict_s, py, bf16_s = int(n), int(tokens), float(ltk_s), float(predict_s), json.loads(py), float(bf16_s)
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
print("# BERT fine-tuning throughput (scripts/bench_bert.sh)\n")
print(f"{n} fortunes_en training texts ({tokens} tokens with [CLS]/[SEP], at most 128), batch 32, one epoch, "
      f"AdamW, dropout 0.1, in file order (no bucketing on either side), {threads} threads each; "
      f"BERT 4 layers x 256, 4 heads, feed-forward 1024. CPU: {cpu}. ltk-predict's time includes loading the run.\n")
print("| | ltk | python3-torch (same model, nn.TransformerEncoderLayer) | ltk / Python |")
print("|---|---|---|---|")
print(f"| training samples/s | {n/ltk_s:.1f} | {py['train_samples_per_s']:.1f} | {n/ltk_s/py['train_samples_per_s']:.2f}x |")
print(f"| training tokens/s | {tokens/ltk_s:.0f} | {py['train_tokens_per_s']:.0f} | {tokens/ltk_s/py['train_tokens_per_s']:.2f}x |")
if bf16_s > 0:
    print(f"| training samples/s, ltk with trainer.precision bf16 (autocast) | {n/bf16_s:.1f} | {py['train_samples_per_s']:.1f} (fp32) | {n/bf16_s/py['train_samples_per_s']:.2f}x |")
else:
    print("| training samples/s, ltk with trainer.precision bf16 | (this CPU has no native bf16) | | |")
print(f"| peak memory (RSS) | {int(rss_kb)/1024:.0f} MB | {py['peak_rss_mb']:.0f} MB | |")
print(f"| inference samples/s (ltk-predict, batch 32; Python: eval + inference_mode) | {n/predict_s:.1f} | {py['infer_samples_per_s']:.1f} | {n/predict_s/py['infer_samples_per_s']:.2f}x |")
for p, (s, rss, size) in artifacts.items():
    if s > 0:
        print(f"| inference samples/s, ltk-predict on the {p} artifact (ltk-eval --quantize {p}) | {n/s:.1f} | {py['infer_samples_per_s']:.1f} (fp32) | {n/s/py['infer_samples_per_s']:.2f}x |")
    else:
        print(f"| inference samples/s, {p} artifact | (this CPU has no native bf16) | | |")
print(f"\nltk-predict's whole process on the same texts: float32 run, weights {float_mb:.1f} MB, peak RSS {float_rss:.0f} MB" +
      "".join(f"; {p} artifact {n/s:.1f} samples/s, weights {size/1e6:.1f} MB, peak RSS {rss/1024:.0f} MB"
              for p, (s, rss, size) in artifacts.items() if s > 0) + ".")
if json_out:
    ratios = {"train_fp32": n / ltk_s / py["train_samples_per_s"], "infer_fp32": n / predict_s / py["infer_samples_per_s"],
              "train_bf16": n / bf16_s / py["train_samples_per_s"] if bf16_s > 0 else None,
              "py_train_samples_per_s": py["train_samples_per_s"], "py_infer_samples_per_s": py["infer_samples_per_s"],
              "ltk_train_samples_per_s": n / ltk_s, "ltk_infer_samples_per_s": n / predict_s}
    for p, (s, rss, size) in artifacts.items():
        ratios[f"infer_{p}"] = n / s / py["infer_samples_per_s"] if s > 0 else None
    json.dump(ratios, open(json_out, "w"))
PY
