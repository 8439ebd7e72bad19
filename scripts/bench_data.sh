#!/usr/bin/env bash
# Data-path benchmark (issue #3, item 8): reading + normalising + tokenising + building the
# vocabulary + numericalising a >= 200 MB corpus (fortunes_en's training split repeated and
# shuffled), with ltk (bench/data_bench.cpp, basic tokenizer, one thread) and with the same job
# written in plain Python (bench/data_pipeline.py: str/re/dict/Counter, a LongTensor per
# sample, /usr/bin/python3). Prints a markdown table and writes it to docs/bench_data.md.
# Run it alone: a busy second core changes the figures.
#   scripts/bench_data.sh [MEGABYTES]      (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-200}"
./scripts/build.sh -DLTK_BUILD_BENCH=ON >/dev/null
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
corpus="data/bench/corpus_${mb}mb.tsv"
mkdir -p data/bench
[[ -s $corpus ]] || /usr/bin/python3 bench/make_corpus.py data/fortunes_en/train.tsv --mb "$mb" --out "$corpus"

ltk_json=$(build/bin/ltk-data-bench "$corpus" basic)
py_json=$(/usr/bin/python3 bench/data_pipeline.py "$corpus")
echo "$ltk_json" >&2
echo "$py_json" >&2

/usr/bin/python3 - "$ltk_json" "$py_json" "$corpus" <<'PY' | tee docs/bench_data.md
import json, platform, subprocess, sys
ltk, py = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Data path: ltk against plain Python\n")
print(f"Corpus `{sys.argv[3]}`: {ltk['bytes'] / 1e6:.0f} MB, {ltk['samples']} samples, {ltk['tokens']} tokens "
      "(fortunes_en's training split repeated and shuffled). One thread each. "
      f"Machine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
      f"{platform.platform()}. Made by `scripts/bench_data.sh`.\n")
print("| | read | tokenise + vocabulary + ids | total | MB/s | ids stored | bytes/token | peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for name, r in (("ltk (basic tokenizer)", ltk), ("Python (re, dict, LongTensor per sample)", py)):
    rest = r["total_s"] - r["read_s"]
    print(f"| {name} | {r['read_s']:.2f} s | {rest:.2f} s | {r['total_s']:.2f} s | {r['mb_per_s']:.1f} | "
          f"{r.get('id_bytes', r['stored_bytes']) / 1e6:.0f} MB | {r['id_bytes_per_token']:.2f} | {r['peak_rss_mb']:.0f} MB |")
print(f"\nltk / Python throughput: **{ltk['mb_per_s'] / py['mb_per_s']:.1f}x**. ltk also keeps "
      f"{ltk['bytes_per_sample_besides_ids']:.0f} bytes per sample besides the ids (offsets, labels, lengths, "
      "source lines).")
PY
