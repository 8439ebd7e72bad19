#!/usr/bin/env bash
# Corpora larger than memory (issue #33): a corpus of MB megabytes made from Debian packages
# (the package descriptions of `scripts/data.sh debian_packages` and the fortunes of
# `scripts/data.sh fortunes_en`, repeated and shuffled by bench/make_corpus.py until the size is
# reached: the variation is the order, the texts repeat), then
#   1. ltk-data encode (basic tokenizer, 2 threads): MB/s and peak RSS;
#   2. one epoch of bow training from the raw file and from the shard, and from the shard as a
#      2-process data-parallel job (--nproc 2): wall time, samples/s of the training loop
#      (ltk-train's "done" line) and peak RSS (of the largest process: a rank's, for --nproc). A
#      corpus whose raw run would take over half the available memory (about 5x its size) is not
#      trained raw;
#   3. configs/fortunes_bow.json (22 epochs of fortunes_en) from the raw files and from shards.
# Not a test. Run it alone: a busy second core changes the figures.
#   scripts/bench_scale.sh [MEGABYTES]      (default 400; the issue's goal is >= 4000)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-400}"
[[ -x build/bin/ltk-train ]] || ./scripts/build.sh >/dev/null
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
[[ -s data/debian_packages/corpus.tsv ]] || ./scripts/data.sh debian_packages
work="data/bench/scale_${mb}mb"
mkdir -p "$work"
corpus="$work/corpus.tsv"
[[ -s $corpus ]] || /usr/bin/python3 bench/make_corpus.py data/debian_packages/corpus.tsv data/fortunes_en/train.tsv \
  --mb "$mb" --out "$corpus"
cat >"$work/config.json" <<JSON
{
  "name": "scale", "seed": 1, "threads": 2, "output_dir": "$work/run",
  "data": {"train": "$corpus", "valid": "data/fortunes_en/valid.tsv", "max_len": 64},
  "model": {"type": "bow", "embed_dim": 64},
  "optimizer": {"type": "adam", "lr": 0.002},
  "trainer": {"epochs": 1, "batch_size": 256, "log_every": 1000, "memory_check": false}
}
JSON
timed() {  # timed NAME CMD...: runs CMD under /usr/bin/time, prints "NAME seconds peak_rss_kb"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err"
  echo "$name $(cat "$work/$name.time")"
}
sync
timed encode build/bin/ltk-data encode --config "$work/config.json" --out "$work/shards" --threads 2 --overwrite
avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
if (( 5 * $(stat -c %s "$corpus") / 1024 > avail_kb / 2 )); then
  # Read raw, a corpus takes about 5x its size (2,040 MB for 403 MB): not run past half the memory.
  rm -f "$work/raw.time"
  echo "not run: reading it raw takes about 5x its size, over half of the $((avail_kb / 1024)) MB available" >"$work/raw.err"
  echo "raw: not run"
else
  timed raw build/bin/ltk-train --config "$work/config.json" --overwrite
fi
timed shards build/bin/ltk-train --config "$work/config.json" --set "data.train=$work/shards/train" \
  --set "data.valid=$work/shards/valid" --set "output_dir=$work/run_shards" --overwrite
timed shards_nproc2 build/bin/ltk-train --config "$work/config.json" --nproc 2 --set threads=1 \
  --set "data.train=$work/shards/train" --set "data.valid=$work/shards/valid" \
  --set "output_dir=$work/run_shards_nproc2" --overwrite
fdir="$work/fortunes"
build/bin/ltk-data encode --config configs/fortunes_bow.json --out "$fdir/shards" --overwrite >/dev/null 2>&1
timed fortunes_raw build/bin/ltk-train --config configs/fortunes_bow.json --set "output_dir=$fdir/raw" --overwrite
timed fortunes_shards build/bin/ltk-train --config configs/fortunes_bow.json --set "output_dir=$fdir/shards_run" \
  --set "data.train=$fdir/shards/train" --set "data.valid=$fdir/shards/valid" --set "data.test=$fdir/shards/test" --overwrite
/usr/bin/python3 - "$work" "$corpus" <<'PY' | tee "docs/bench_scale_${mb}mb.md"
import os, re, subprocess, sys
work, corpus = sys.argv[1], sys.argv[2]
def t(name):
    s, kb = open(f"{work}/{name}.time").read().split()
    return float(s), int(kb) / 1024
def loop(name):
    m = re.findall(r"done: (\d+) steps in ([\d.]+)s \((\d+) samples/s\)", open(f"{work}/{name}.err").read())
    return m[-1] if m else ("?", "?", "?")
def valid(name):
    m = re.findall(r"\[valid\] epoch 1 step \d+ (accuracy [\d.]+)", open(f"{work}/{name}.err").read())
    return m[-1] if m else "?"
size = os.path.getsize(corpus) / 1e6
enc_s, enc_mb = t("encode")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"# Corpora larger than memory: {size:.0f} MB\n")
print(f"`{corpus}`: {size:.0f} MB of short texts (Debian package descriptions and fortunes, repeated and shuffled by "
      f"bench/make_corpus.py). {cpu}, {os.cpu_count()} cores. Made by `scripts/bench_scale.sh {sys.argv[1].split('_')[-1][:-2]}`.\n")
print(f"Encoding (`ltk-data encode`, basic tokenizer, 2 threads, train + valid): {enc_s:.1f} s, "
      f"**{size / enc_s:.0f} MB/s** of the training file, peak RSS {enc_mb:.0f} MB.\n")
def test(name):
    m = re.findall(r"\[test\] best checkpoint.*?(accuracy [\d.]+)", open(f"{work}/{name}.err").read())
    return m[-1] if m else "?"
def table(title, last, rows):  # rows: (run name, label, last column's value)
    print(f"| {title} | whole process | training loop | peak RSS | {last} |")
    print("|---|---|---|---|---|")
    for name, label, value in rows:
        if not os.path.exists(f"{work}/{name}.time"):
            err = open(f"{work}/{name}.err").read().strip().splitlines()
            print(f"| {label} | {err[-1][:160] if err else '?'} | | | |")
            continue
        s, mb = t(name)
        steps, secs, sps = loop(name)
        print(f"| {label} | {s:.1f} s | {sps} samples/s ({secs} s) | {mb:.0f} MB | {value} |")
table("bow, 1 epoch, max_len 64, batch 256", "valid",
      [("raw", "raw file", valid("raw")), ("shards", "shard", valid("shards")),
       ("shards_nproc2", "shard, --nproc 2 (1 thread each)", valid("shards_nproc2"))])
print()
table("configs/fortunes_bow.json (fortunes_en)", "test",
      [("fortunes_raw", "raw files", test("fortunes_raw")), ("fortunes_shards", "shards", test("fortunes_shards"))])
PY
