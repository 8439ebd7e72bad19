#!/usr/bin/env bash
# The OpenBLAS kernel's share of ltk's speed (issue #19): a 1024^3 float32 matmul (PyTorch in
# Python, the same OpenBLAS) and ltk-train on the transformer config, under each kernel family
# forced with OPENBLAS_CORETYPE, and under the kernel OpenBLAS picks by itself on this machine.
# Prescott is what OpenBLAS falls back to on a VM whose CPU model it does not know; ltk then
# re-executes itself with the kernel the CPU supports (SkylakeX for AVX-512, Haswell for AVX2).
# Writes docs/bench_blas.md. Run it alone: a busy second core makes OpenMP collapse.
#   scripts/bench_blas.sh [--threads N] [--samples N]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc); samples=3000
while (($#)); do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    *) echo "usage: $0 [--threads N] [--samples N]" >&2; exit 2 ;;
  esac
done
./scripts/setup.sh --test >/dev/null
./scripts/build.sh >/dev/null
[[ -s data/fortunes_en/train.tsv ]] || ./scripts/data.sh fortunes_en
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# every k-th line, so that every label of the validation split is in it
step=$(( $(wc -l <data/fortunes_en/train.tsv) / samples )); ((step >= 1)) || step=1
awk -v k="$step" -v n="$samples" '(NR - 1) % k == 0 && c++ < n' data/fortunes_en/train.tsv >"$tmp/train.tsv"
gemm() {
  /usr/bin/python3 - "$threads" <<'PY'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
for _ in range(3): a @ b
best = float("inf")
for _ in range(10):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
print(f"{2 * 1024**3 / best / 1e9:.0f}")
PY
}
train() {  # prints "kernel samples_per_s"
  build/bin/ltk-train --config configs/fortunes_transformer.json --json --overwrite \
    --set output_dir="$tmp/run" --set threads="$threads" --set trainer.epochs=1 \
    --set data.train="$tmp/train.tsv" --set data.valid= --set data.test= 2>"$tmp/err" |
    /usr/bin/python3 -c 'import json,sys; j=json.loads(sys.stdin.read().splitlines()[-1]); print(j["blas_core"], round(j["train_samples_per_s"]))'
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|avx512f|avx512bw|avx512dq|avx512vl)$' | sort | tr '\n' ' ')
out=docs/bench_blas.md
{
  echo "# The OpenBLAS kernel and ltk's speed"
  echo
  echo "Made by \`scripts/bench_blas.sh\` on $(date +%F): $cpu, $(nproc) cores ($flags); $threads threads;"
  echo "$(dpkg-query -W -f '${Package} ${Version}' libopenblas0-openmp 2>/dev/null). The transformer is"
  echo "\`configs/fortunes_transformer.json\` trained for one epoch on $samples samples of fortunes_en (every k-th), without validation."
  echo
  echo "| OPENBLAS_CORETYPE | kernel run | 1024³ fp32 matmul, GFLOP/s | transformer training, samples/s |"
  echo "|---|---|---|---|"
} >"$out"
preset=${OPENBLAS_CORETYPE:-}
for core in Prescott Sandybridge Haswell SkylakeX unset; do
  if [[ $core == unset ]]; then
    unset OPENBLAS_CORETYPE
    label="unset (OpenBLAS's own choice, then ltk's check)"
  else
    export OPENBLAS_CORETYPE=$core
    label=$core
  fi
  g=$(gemm)
  read -r k s < <(train)
  echo "[bench_blas] $label: $k, ${g} GFLOP/s, ${s} samples/s" >&2
  echo "| $label | $k | $g | $s |" >>"$out"
done
[[ -n $preset ]] && printf '\nThis machine'"'"'s environment sets OPENBLAS_CORETYPE=%s; ltk keeps such a value.\n' "$preset" >>"$out"
cat "$out"
