#!/usr/bin/env bash
# The tf-idf linear baseline against scikit-learn's TfidfVectorizer + LinearSVC (same tokens,
# n-grams and C grid, C chosen on the validation split) on fortunes_en and fortunes_zh, in one
# invocation: accuracy, macro-F1, training seconds, prediction texts/s. Writes docs/bench_linear.md.
# Run it alone (one thread each side).
#   scripts/bench_linear.sh [C ...]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/bin/ltk-train ]] || ./scripts/build.sh
out=docs/bench_linear.md
rows=()
for pair in fortunes_en:configs/fortunes_linear.json fortunes_zh:configs/fortunes_zh_linear.json; do
  corpus=${pair%%:*} config=${pair#*:}
  [[ -f data/$corpus/train.tsv ]] || ./scripts/data.sh "$corpus"
  json=$(OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_linear.py "$corpus" "$config" "$@")
  echo "$json"
  rows+=("$(/usr/bin/python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
def row(name, s):
    return (f"| {r['corpus']} | {name} | {s['C']} | {s['valid_accuracy']:.4f} | {s['test_accuracy']:.4f} | "
            f"{s['test_macro_f1']:.4f} | {s['train_seconds']:.1f} | {s['predict_texts_per_s']:.0f} |")
print(row("ltk linear (LibTorch, adagrad, squared hinge)", r["ltk"]))
print(row("ltk linear, optimizer.type dual_cd (exact, LinearSVC's problem)", r["ltk_dual_cd"]))
print(row("scikit-learn TfidfVectorizer + LinearSVC", r["sklearn"]))
PY
)")
done
{
  echo "# The tf-idf linear baseline: ltk against scikit-learn"
  echo
  echo "Made by \`scripts/bench_linear.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), one thread each side."
  echo "Same tokens and n-grams (the configs' tokenizer; \`\\w+|[^\\w\\s]\` and jieba on the Python side), sublinear tf,"
  echo "smoothed idf, L2 rows; C chosen by validation accuracy over the same grid. Training seconds: ltk-train's"
  echo "whole process (reading, features, the epochs with a validation and checkpoint each, or dual_cd's one solve"
  echo "and checkpoint, the test and report);"
  echo "scikit-learn's fit_transform + LinearSVC.fit. Prediction: ltk-predict on a file of the test texts (ten"
  echo "copies) against transform + predict in the same Python process."
  echo
  echo "| corpus | system | C | valid acc | test acc | test macro-F1 | train s | predict texts/s |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$out"
echo "wrote $out" >&2
