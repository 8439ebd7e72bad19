#!/usr/bin/env bash
# Builds a real corpus into data/NAME/{train,valid,test}.tsv from Debian packages.
#   scripts/data.sh fortunes_en   English fortunes (packages fortunes, fortunes-min):
#                                 label = the fortune file, text = one quote
#   scripts/data.sh fortunes_zh   Chinese fortunes (package fortunes-zh), the same way
#   scripts/data.sh debian_packages
#                                 Debian's package index (apt-cache dumpavail, from the archive
#                                 apt-get reads): label = the package's section (the 20 largest),
#                                 text = its one-line description; about 50,000 short texts
#   scripts/data.sh debtags       multilabel: the same index's packages that carry debtags,
#                                 labels = their tags among the 30 most frequent (role:: and
#                                 special:: left out), comma-separated; text = the one-line
#                                 description; about 25,000 short texts
#   scripts/data.sh manpages      long texts: the installed manual pages, label = the section
#                                 (1, 2, 3, 5, 7, 8; at most 400 pages each, chosen with a fixed
#                                 seed), text = the page without its roff markup and header line,
#                                 its first 3,000 words; pages under 50 words (.so links) left out
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
  debtags)
    command -v apt-cache >/dev/null || { echo "data.sh: apt-cache missing (Debian's apt)" >&2; exit 1; }
    mkdir -p "data/$name"
    # Tag: a, b,\n c (continuation lines start with a space) -> "a,b,c<TAB>description"
    apt-cache dumpavail |
      awk '/^Package: /{pkg=$2; tags=""; intag=0; desc=""}
           /^Tag: /{tags=substr($0, 6); intag=1; next}
           /^ /{if (intag) tags=tags $0; next}
           {intag=0}
           /^Description: /{desc=substr($0, 14)}
           /^$/{if (pkg != "" && tags != "" && desc != "") {gsub(/ /, "", tags); print tags "\t" desc}; pkg=""}' |
      tr -d '\r' | LC_ALL=C sort -u > "data/$name/all.tsv"
    ((  $(wc -l < "data/$name/all.tsv") > 10000 )) ||
      { echo "data.sh: the package index has few tags; run 'apt-get update' first" >&2; exit 1; }
    cut -f1 "data/$name/all.tsv" | tr ',' '\n' | grep -v -e '^role::' -e '^special::' -e '^$' |
      LC_ALL=C sort | uniq -c | sort -k1,1nr -k2 | head -30 | awk '{print $2}' > "data/$name/labels.txt"
    awk -F'\t' 'NR == FNR {keep[$1] = 1; next}
                {n = split($1, t, ","); out = ""
                 for (i = 1; i <= n; ++i) if (t[i] in keep) out = out (out == "" ? "" : ",") t[i]
                 if (out != "") print out "\t" $2}' "data/$name/labels.txt" "data/$name/all.tsv" \
      > "data/$name/corpus.tsv"
    "$bin" split --input "data/$name/corpus.tsv" --out "data/$name" --seed 13 --ratios 0.8,0.1,0.1
    rm -f "data/$name/all.tsv"
    ;;
  manpages)
    mkdir -p "data/$name"
    : > "data/$name/corpus.tsv"
    for section in 1 2 3 5 7 8; do
      find "/usr/share/man/man$section" -type f -name "*.gz" 2>/dev/null | LC_ALL=C sort |
        shuf -n 400 --random-source=<(yes 13) |
        while read -r page; do
          # roff to words: comments and the .TH/.Dt header (it names the section) dropped, macro
          # names and font or character escapes stripped, whitespace folded.
          text=$(zcat "$page" 2>/dev/null |
                 sed -e '/^[.'"'"']\\"/d' -e '/^\.\(TH\|Dt\|so\)\b/d' -e 's/^\.[A-Za-z]\+ *//' \
                     -e 's/\\f[BIRPC]//g; s/\\f(..//g; s/\\(..//g; s/\\[-e&]//g; s/\\\*.//g; s/\\//g' |
                 tr '\n\t\r' '   ' | tr -s ' ' | awk '{n = NF < 3000 ? NF : 3000; out = ""
                   for (i = 1; i <= n; ++i) out = out (i > 1 ? " " : "") $i; print out}')
          if (( $(wc -w <<< "$text") >= 50 )); then printf '%s\t%s\n' "$section" "$text"; fi
        done >> "data/$name/corpus.tsv"
    done
    (( $(wc -l < "data/$name/corpus.tsv") > 500 )) ||
      { echo "data.sh: few manual pages installed (apt-get install manpages manpages-dev)" >&2; exit 1; }
    "$bin" split --input "data/$name/corpus.tsv" --out "data/$name" --seed 13 --ratios 0.7,0.15,0.15
    ;;
  *)
    echo "data.sh: unknown corpus '$name' (known: fortunes_en, fortunes_zh, debian_packages, debtags, manpages)" >&2
    exit 2
    ;;
esac
