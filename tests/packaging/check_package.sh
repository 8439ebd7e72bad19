#!/usr/bin/env bash
# ltk as others get it: `cmake --install` to a temporary prefix, a project outside the tree
# (examples/consumer) built against it with find_package(ltk) and run (it trains a run in code and
# classifies through the library), then the Debian package: extracted with dpkg-deb -x into a
# temporary root, its ltk-predict run from there, and every shared library its binaries link
# directly (readelf NEEDED, resolved by ldd) must come from a package its Depends names.
#   tests/packaging/check_package.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1") src=$(realpath "$2")
mkdir -p "${LTK_TEST_TMP:-/tmp}"
work=$(mktemp -d "${LTK_TEST_TMP:-/tmp}/package.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Install, and the installed apps' --version.
cmake --install "$build" --prefix "$work/prefix" >/dev/null
version=$("$work/prefix/bin/ltk-train" --version)
echo "$version"
[[ $version == "ltk "*"LibTorch "*"BLAS: "* ]] || fail "ltk-train --version printed '$version'"
# The public headers: ltk/ltk.h and what it includes, none of them LibTorch's.
installed=$(cd "$work/prefix/include" && find ltk -name '*.h' | sort | tr '\n' ' ')
expected="ltk/api/classifier.h ltk/api/train.h ltk/config/config.h ltk/core/error.h ltk/core/version.h ltk/ltk.h ltk/models/load_config.h ltk/train/train_options.h "
[[ $installed == "$expected" ]] || fail "installed headers: '$installed', expected '$expected'"
if grep -l '#include <torch\|#include <ATen\|#include <c10' $(find "$work/prefix/include/ltk" -name '*.h'); then
  fail "a public header includes LibTorch"
fi
echo "public headers: $installed"

# 2. The consumer project, built against the install only, through the facade alone.
if grep -h '#include "ltk/\|#include <ltk/' "$src"/examples/consumer/*.cpp | grep -v 'ltk/ltk.h'; then
  fail "examples/consumer includes more than ltk/ltk.h"
fi
for i in $(seq 1 12); do
  printf 'sport\tgoal match team score\nfood\tbread cheese soup apple\ntech\tlinux kernel compiler bug\n'
done > "$work/train.tsv"
# -O0: the consumer's own code is a few lines; its compile time is the headers' (ltk's code is in the libraries).
cmake -S "$src/examples/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O0 >/dev/null
cmake --build "$work/consumer" -j2 >/dev/null
OMP_NUM_THREADS=1 "$work/consumer/train_bow" "$work/train.tsv" "$work/run" 2>"$work/train.log" ||
  { cat "$work/train.log" >&2; fail "train_bow"; }
[[ -f $work/run/ltk.json ]] || fail "the run directory records no ltk version (ltk.json)"
printf 'goal match team\nbread soup\nlinux kernel bug\n' > "$work/texts.txt"
"$work/consumer/classify" "$work/run" < "$work/texts.txt" > "$work/classify.out" 2>/dev/null
labels() { python3 -c 'import json,sys; print(" ".join(json.loads(l)["label"] for l in sys.stdin))'; }
got=$(labels < "$work/classify.out")
[[ $got == "sport food tech" ]] || fail "classify said '$got'"
echo "consumer: trained a run in code and classified: $got"

# 3. The Debian packages.
(cd "$build" && cpack -G DEB -B "$work/pkg" >/dev/null) || fail "cpack"
deb=$(ls "$work"/pkg/ltk_*_amd64.deb)
dev=$(ls "$work"/pkg/ltk-dev_*_amd64.deb)
echo "packages: $(basename "$deb") $(basename "$dev")"
dpkg-deb -x "$deb" "$work/root"
got=$("$work/root/usr/bin/ltk-predict" --run "$work/run" < "$work/texts.txt" 2>/dev/null | labels)
[[ $got == "sport food tech" ]] || fail "the packaged ltk-predict said '$got'"
# Its LibTorch-free path: a linear run trained by the installed ltk-train, answered by the packaged
# ltk-predict with ltk-predict-torch taken away (a hand-off to it would fail), as ltk-predict-torch
# answers it.
python3 -c 'import json, sys; w = sys.argv[1]; print(json.dumps({"data": {"train": w + "/train.tsv", "valid": w + "/train.tsv"},
  "task": {"type": "multiclass"}, "model": {"type": "linear"}, "output_dir": w + "/linear_run"}))' "$work" > "$work/linear.json"
OMP_NUM_THREADS=1 "$work/prefix/bin/ltk-train" -c "$work/linear.json" 2>"$work/linear.log" ||
  { cat "$work/linear.log" >&2; fail "the installed ltk-train on a linear config"; }
torch_build="$work/root/usr/lib/ltk/ltk-predict-torch"
[[ -x $torch_build ]] || fail "the package has no usr/lib/ltk/ltk-predict-torch"
[[ ! -e $work/root/usr/bin/ltk-predict-torch ]] || fail "the package has a second ltk-predict-torch in usr/bin"
"$torch_build" --run "$work/linear_run" < "$work/texts.txt" > "$work/linear_torch.out" 2>"$work/linear_torch.err" ||
  { cat "$work/linear_torch.err" >&2; fail "the packaged ltk-predict-torch on the linear run"; }
mv "$torch_build" "$work/ltk-predict-torch.away"
"$work/root/usr/bin/ltk-predict" --run "$work/linear_run" < "$work/texts.txt" > "$work/linear.out" 2>"$work/linear.err" ||
  { cat "$work/linear.err" >&2; fail "the packaged ltk-predict, without ltk-predict-torch, on the linear run"; }
mv "$work/ltk-predict-torch.away" "$torch_build"
got=$(labels < "$work/linear.out")
[[ $got == "sport food tech" ]] || fail "the packaged ltk-predict said '$got' on the linear run"
cmp -s "$work/linear.out" "$work/linear_torch.out" || fail "the packaged ltk-predict and ltk-predict-torch answer the linear run differently"
echo "packaged ltk-predict without LibTorch on a linear run: $got"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
declare -A named=()
for dep in $(echo "$depends" | tr ',|' '\n\n' | awk '{print $1}'); do named[$dep]=1; done
checked=0
for bin in "$work"/root/usr/bin/* "$work"/root/usr/lib/ltk/*; do
  [[ -e $bin ]] || continue
  while read -r soname; do
    [[ $soname == ld-linux* ]] && continue  # the dynamic loader itself (libc6, in Depends anyway)
    path=$(ldd "$bin" | awk -v s="$soname" '$1 == s && $3 ~ /^\// {print $3}')
    [[ -n $path ]] || fail "$bin needs $soname, which does not resolve"
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(realpath "$path")" 2>/dev/null || true)
    pkg=${pkg%%[:,]*}  # "libfoo:amd64: /path" (or "a, b: /path": the first owner)
    [[ -n $pkg ]] || fail "$soname ($path) belongs to no Debian package"
    ok=${named[$pkg]:-}
    for provided in $(dpkg-query -W -f='${Provides}' "$pkg" 2>/dev/null | tr ',' '\n' | awk '{print $1}'); do
      [[ -n ${named[$provided]:-} ]] && ok=1  # a virtual package of it (libspdlog1.10-fmt9)
    done
    [[ -n $ok ]] || fail "$(basename "$bin") links $soname from $pkg, which Depends does not name"
    checked=$((checked + 1))
  done < <(readelf -d "$bin" | awk '/NEEDED/ {gsub(/[\[\]]/, "", $5); print $5}')
done
((checked > 0)) || fail "no library checked"
echo "every one of the $checked direct library links comes from a package in Depends"
echo "packaging: ok"
