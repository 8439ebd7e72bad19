#!/usr/bin/env bash
# The tf-idf linear model (optimizer.type "dual_cd") against scikit-learn + liblinear on the same
# features and C, in one invocation: fortunes_en, fortunes_zh and debian_packages (multiclass,
# squared hinge: LinearSVC) and debian_packages as a binary task (libraries or not: logistic
# regression, LogisticRegression(solver="liblinear")). Makes every corpus it uses. Writes
# docs/bench_linear.md. Run it alone.
#   scripts/bench_linear.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/bin/ltk-train ]] || ./scripts/build.sh
out=docs/bench_linear.md
rows=() predict=()
for spec in fortunes_en:configs/fortunes_linear.json fortunes_zh:configs/fortunes_zh_linear.json \
            debian_packages:configs/debian_packages_linear.json debian_packages:configs/debian_packages_linear.json:libs,libdevel; do
  IFS=: read -r corpus config positives <<<"$spec"
  [[ -f data/$corpus/train.tsv ]] || ./scripts/data.sh "$corpus"
  json=$(/usr/bin/python3 bench/bench_linear.py "$corpus" "$config" ${positives:+--binary "$positives"})
  echo "$json"
  rows+=("$(/usr/bin/python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
s, l, l1 = r["sklearn"], r["ltk"], r["ltk_1_thread"]
sk = "LogisticRegression (liblinear)" if r["loss"] == "logistic" else "LinearSVC"
print(f"| {r['corpus']} | {r['C']} | {l['test_accuracy']:.4f} / {s['test_accuracy']:.4f} | "
      f"{l['whole_seconds']:.2f} ({l1['whole_seconds']:.2f}) | {s['process_seconds']:.2f} | "
      f"**{s['process_seconds'] / l['whole_seconds']:.2f}x** ({s['process_seconds'] / l1['whole_seconds']:.2f}x) | "
      f"{l['fit_seconds']:.2f} ({l1['fit_seconds']:.2f}) | {s['fit_seconds']:.2f} | "
      f"{l['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} | {sk} |")
PY
)")
  predict+=("$(/usr/bin/python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
p, s = r["ltk_predict"], r["sklearn"]
print(f"| {r['corpus']} | {p['test_texts']} | {p['test_per_s']:,.0f} | **{p['per_s_100k']:,.0f}** | "
      f"{p['per_s_100k_1_thread']:,.0f} | {p['libtorch_per_s_100k']:,.0f} | "
      f"{p['startup_seconds']:.3f} ({p['libtorch_startup_seconds']:.2f}) | "
      f"{p['per_s_100k_loop']:,.0f} ({p['per_s_100k_loop_1_thread']:,.0f}) | "
      f"{p['peak_rss_mb_100k']:.0f} ({p['libtorch_peak_rss_mb_100k']:.0f}) | {s['predict_100k_per_s']:,.0f} |")
PY
)")
done
{
  echo "# The tf-idf linear model: ltk against scikit-learn + liblinear"
  echo
  echo "Made by \`scripts/bench_linear.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "nothing else running. Same tokens and n-grams (the config's: word n-grams of \`\\w+|[^\\w\\s]\` or jieba words, and"
  echo "char_wb n-grams), sublinear tf, smoothed idf, L2 rows, the config's C (chosen on validation with \`ltk-sweep\`"
  echo "and \`configs/sweeps/*_linear_space.json\`). ltk: \`optimizer.type\` \`dual_cd\` on all cores (in brackets: one"
  echo "thread); liblinear runs on one core whatever the machine has."
  echo
  echo "Whole process: \`ltk-train\` (start-up, reading, features, the solve, one checkpoint, validation, test, report)"
  echo "against one Python process that imports scikit-learn, reads the files, vectorises, fits and predicts the test"
  echo "split. Fit: features + solve from ltk's log; \`fit_transform\` + \`fit\` in Python. Peak RSS of each process."
  echo
  echo "| corpus | C | test acc ltk / sklearn | ltk s (1 thread) | sklearn s | speed-up (1 thread) | ltk fit s (1 thread) | sklearn fit s | peak RSS MB ltk / sklearn | sklearn model |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Prediction, every class's score written to a file: \`ltk-predict\`'s whole process (it answers a linear run"
  echo "without LibTorch) on the test texts and on 100,000 texts made by repeating them, on all cores and on one thread; the"
  echo "same 100,000 texts through \`ltk-predict-torch\` (the LibTorch build, which answered linear runs before), all"
  echo "cores; start-up (one text: the run's config, vocabulary and weights), the least of 3 runs, ltk-predict-torch's"
  echo "in brackets; the 100,000 texts' rate without that start-up (the loop alone); peak RSS on the 100,000 texts; and"
  echo "scikit-learn's \`transform\` + \`predict\` of the 100,000 texts with the model in memory (loop alone, no output)."
  echo
  echo "| corpus | test texts | ltk-predict texts/s (test split) | ltk-predict texts/s (100k) | 1 thread | ltk-predict-torch texts/s (100k) | start-up s (ltk-predict-torch) | loop alone texts/s (1 thread) | peak RSS MB (ltk-predict-torch) | sklearn texts/s (100k, loop alone) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${predict[@]}"
} > "$out"
echo "wrote $out" >&2
