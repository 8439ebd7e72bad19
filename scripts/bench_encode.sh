#!/usr/bin/env bash
# Encoding speed of `ltk-data encode` per tokenizer, on 1 and 2 threads (not a test: the machine
# is noisy, run it alone). Writes docs/bench_encode.md.
#   - basic and WordPiece (a 6,000-entry vocabulary learned from fortunes_en by `ltk-data vocab`,
#     with [CLS]/[SEP]) on the English corpus of scripts/bench_scale.sh (Debian package
#     descriptions and fortunes, repeated and shuffled by bench/make_corpus.py);
#   - jieba (python3-jieba's dictionary) on fortunes_zh repeated and shuffled the same way.
# MB/s are of the input file, as ltk-data encode reports them (reading, tokenising, counting the
# vocabulary, writing, rewriting the ids, digests and the synced rename); whole process and peak
# RSS from /usr/bin/time.
#   scripts/bench_encode.sh [MEGABYTES]   (default 400; the Chinese corpus is a quarter of it)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-400}"
[[ -x build/bin/ltk-data ]] || ./scripts/build.sh >/dev/null
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
[[ -s data/fortunes_zh/train.tsv ]] || ./scripts/data.sh fortunes_zh
[[ -s data/debian_packages/corpus.tsv ]] || ./scripts/data.sh debian_packages
work="data/bench/encode_${mb}mb"
mkdir -p "$work"
en="data/bench/scale_${mb}mb/corpus.tsv"  # shared with scripts/bench_scale.sh
mkdir -p "$(dirname "$en")"
[[ -s $en ]] || /usr/bin/python3 bench/make_corpus.py data/debian_packages/corpus.tsv data/fortunes_en/train.tsv \
  --mb "$mb" --out "$en"
zh="$work/corpus_zh.tsv"
[[ -s $zh ]] || /usr/bin/python3 bench/make_corpus.py data/fortunes_zh/train.tsv --mb "$((mb / 4))" --out "$zh"
[[ -s $work/wp_vocab.txt ]] || build/bin/ltk-data vocab -i data/fortunes_en/train.tsv --size 6000 \
  -o "$work/wp_vocab.txt" >/dev/null 2>&1
config() {  # config NAME CORPUS TOKENIZER_JSON EXTRA_DATA_JSON
  cat >"$work/$1.json" <<JSON
{"name": "$1", "output_dir": "$work/run",
 "data": {"train": "$2", "tokenizer": $3 $4},
 "model": {"type": "bow"}}
JSON
}
config basic "$en" '{"type": "basic"}' ''
config wordpiece "$en" "{\"type\": \"wordpiece\", \"dict\": \"$work/wp_vocab.txt\"}" \
  ', "vocab": {"source": "tokenizer"}, "special_tokens": true'
config jieba "$zh" '{"type": "jieba"}' ''
: >"$work/results.txt"
for tok in basic wordpiece jieba; do
  for threads in 1 2; do
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.txt" build/bin/ltk-data encode --config "$work/$tok.json" \
      --out "$work/shards_$tok" --threads "$threads" --overwrite >"$work/out.txt" 2>"$work/err.txt"
    rate=$(grep -o '[0-9.]* MB/s' "$work/out.txt" | head -1 | cut -d' ' -f1)
    echo "$tok $threads $rate $(cat "$work/time.txt")" | tee -a "$work/results.txt"
  done
done
/usr/bin/python3 - "$work" "$en" "$zh" <<'PY' | tee docs/bench_encode.md
import os, sys
work, en, zh = sys.argv[1:4]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("# Encoding speed (`ltk-data encode`)\n")
print(f"{cpu}, {os.cpu_count()} cores. Made by `scripts/bench_encode.sh`. English: `{en}` "
      f"({os.path.getsize(en) / 1e6:.0f} MB, Debian package descriptions and fortunes_en repeated and shuffled); "
      f"Chinese: `{zh}` ({os.path.getsize(zh) / 1e6:.0f} MB, fortunes_zh repeated and shuffled). MB/s of the input "
      "file as `ltk-data encode` reports it (reading through the synced rename of the shard); the whole process "
      "and its peak RSS from /usr/bin/time. The issue's goal is 120 MB/s on 2 cores with the basic tokenizer.\n")
print("| tokenizer | corpus | --threads | MB/s | whole process | peak RSS |")
print("|---|---|---|---|---|---|")
corpus = {"basic": "English", "wordpiece": "English (6,000-entry WordPiece, [CLS]/[SEP])", "jieba": "Chinese"}
for line in open(f"{work}/results.txt"):
    tok, threads, mbs, secs, kb = line.split()[:5]
    print(f"| {tok} | {corpus[tok]} | {threads} | {float(mbs):.1f} | {float(secs):.1f} s | {int(kb) / 1024:.0f} MB |")
PY
