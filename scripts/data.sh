#!/usr/bin/env bash
# Builds a real corpus into data/NAME/{train,valid,test}.tsv from Debian packages.
#   scripts/data.sh fortunes_en   English fortunes (packages fortunes, fortunes-min):
#                                 label = the fortune file, text = one quote
#   scripts/data.sh fortunes_zh   Chinese fortunes (package fortunes-zh), the same way
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
  *)
    echo "data.sh: unknown corpus '$name' (known: fortunes_en, fortunes_zh)" >&2
    exit 2
    ;;
esac
