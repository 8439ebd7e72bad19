#!/usr/bin/env bash
# Builds a real corpus into data/NAME/{train,valid,test}.tsv from Debian packages.
#   scripts/data.sh fortunes_en   English fortunes (packages fortunes, fortunes-min):
#                                 label = the fortune file, text = one quote
#   scripts/data.sh fortunes_zh   Chinese fortunes (package fortunes-zh), the same way
#   scripts/data.sh debian_packages
#                                 Debian's package index (apt-cache dumpavail, from the archive
#                                 apt-get reads): label = the package's section (the 20 largest),
#                                 text = its one-line description; about 50,000 short texts
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-fortunes_en}"
bin=build/bin/ltk-data
[[ -x $bin ]] || { echo "data.sh: $bin missing; run scripts/build.sh first" >&2; exit 1; }

case "$name" in
  fortunes_en)
    # The package file lists, not the directory: fortunes-zh installs into the same folder.
    mapfile -t files < <(dpkg -L fortunes fortunes-min | grep '^/usr/share/games/fortunes/[^/]*$' |
                         grep -v -e '\.dat$' -e '\.u8$' | sort)
    ((${#files[@]})) || { echo "data.sh: no fortune files; run scripts/setup.sh" >&2; exit 1; }
    "$bin" fortunes --out "data/$name" --min-quotes 100 --seed 13 --ratios 0.8,0.1,0.1 "${files[@]}"
    ;;
  fortunes_zh)
    mapfile -t files < <(dpkg -L fortunes-zh | grep '^/usr/share/games/fortunes/[^/]*$' |
                         grep -v -e '\.dat$' -e '\.u8$' | sort)
    ((${#files[@]})) || { echo "data.sh: no fortunes-zh files; run scripts/setup.sh" >&2; exit 1; }
    "$bin" fortunes --out "data/$name" --min-quotes 100 --seed 13 --ratios 0.8,0.1,0.1 "${files[@]}"
    ;;
  debian_packages)
    # One line per package of the index: section<TAB>description, without the area prefix
    # (contrib/, non-free/) or duplicates; the 20 largest sections, so every class has ~1,000 texts.
    command -v apt-cache >/dev/null || { echo "data.sh: apt-cache missing (Debian's apt)" >&2; exit 1; }
    mkdir -p "data/$name"
    apt-cache dumpavail |
      awk -F': ' '/^Package: /{pkg=$2; sec=""; desc=""} /^Section: /{sec=$2; sub(/.*\//, "", sec)}
                  /^Description: /{desc=substr($0, 14)} /^$/{if (pkg != "" && sec != "" && desc != "") print sec "\t" desc; pkg=""}' |
      tr -d '\r' | LC_ALL=C sort -u > "data/$name/all.tsv"
    ((  $(wc -l < "data/$name/all.tsv") > 10000 )) ||
      { echo "data.sh: the package index is nearly empty; run 'apt-get update' first" >&2; exit 1; }
    cut -f1 "data/$name/all.tsv" | LC_ALL=C sort | uniq -c | sort -k1,1nr -k2 | head -20 | awk '{print $2}' \
      > "data/$name/sections.txt"
    awk -F'\t' 'NR == FNR {keep[$1] = 1; next} ($1 in keep)' "data/$name/sections.txt" "data/$name/all.tsv" \
      > "data/$name/corpus.tsv"
    "$bin" split --input "data/$name/corpus.tsv" --out "data/$name" --seed 13 --ratios 0.8,0.1,0.1
    rm -f "data/$name/all.tsv"
    ;;
  *)
    echo "data.sh: unknown corpus '$name' (known: fortunes_en, fortunes_zh, debian_packages)" >&2
    exit 2
    ;;
esac
