#!/usr/bin/env bash
# What each lever of ltk's BERT gives on CPUs without this one's instructions: scripts/bench_bert.sh
# (ltk against the same model in python3-torch, same invocation) run again with oneDNN and OpenBLAS
# held to an older instruction set, and ltk told that native bf16 (and VNNI) is absent, as on:
#   - AVX-512 with VNNI, without BF16 (Intel Cascade Lake);
#   - AVX-512 without VNNI or BF16 (Intel Skylake-SP);
#   - AVX2 alone (Intel Haswell to Comet Lake, AMD Zen 1-3).
# Both sides run under the same limits (ONEDNN_MAX_CPU_ISA, OPENBLAS_CORETYPE; ATen's own kernels are
# AVX2 on every row: LibTorch 1.13 prefers them to its AVX-512 ones unless ATEN_CPU_CAPABILITY says so).
# The caches, cores and clocks stay this machine's: a real CPU of that kind differs in those. Writes
# docs/bench_isa.md. Run it alone (about 6 minutes on 2 cores).
#   scripts/bench_isa.sh [samples=1024] [threads=2]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1024}"
threads="${2:-2}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
profiles=(
  "this CPU (no limit)|"
  "AVX-512 + VNNI, no BF16 (Cascade Lake)|ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI OPENBLAS_CORETYPE=SkylakeX LTK_NATIVE_BF16=0 LTK_VNNI=1"
  "AVX-512, no VNNI or BF16 (Skylake-SP)|ONEDNN_MAX_CPU_ISA=AVX512_CORE OPENBLAS_CORETYPE=SkylakeX LTK_NATIVE_BF16=0 LTK_VNNI=0"
  "AVX2 alone (Haswell, Zen 1-3)|ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell LTK_NATIVE_BF16=0 LTK_VNNI=0"
)
i=0
for p in "${profiles[@]}"; do
  IFS='|' read -r name vars <<< "$p"
  echo "== $name: ${vars:-no limit}" >&2
  # shellcheck disable=SC2086
  env $vars BENCH_OUT="$tmp/$i.md" BENCH_JSON="$tmp/$i.json" ./scripts/bench_bert.sh "$n" "$threads" > /dev/null
  # What oneDNN ran on, from its own report (checks that the limit took).
  isa=$(env $vars ONEDNN_VERBOSE=1 /usr/bin/python3 -c 'import torch; torch.nn.Conv2d(3, 8, 3)(torch.randn(4, 3, 16, 16))' \
        2>&1 | grep -m1 -o 'cpu,isa:[^,]*' | cut -d: -f2 || true)
  echo "$name|$vars|$isa" > "$tmp/$i.name"
  i=$((i + 1))
done
python3 - "$tmp" "$i" "$n" "$threads" <<'PY' | tee docs/bench_isa.md
import datetime, json, subprocess, sys
tmp, count, n, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
print("# BERT's levers on older instruction sets (scripts/bench_isa.sh)\n")
print(f"`scripts/bench_bert.sh` ({n} fortunes_en texts, a 4-layer 256-wide BERT, batch 32, {threads} threads each side) "
      f"four times on {cpu} ({datetime.date.today()}), each time with oneDNN and OpenBLAS held to an instruction "
      "set (ATen's own kernels: AVX2 throughout, LibTorch 1.13's default; the same limits for ltk and for python3-torch) and ltk told whether bf16 and VNNI are native. Each ratio is "
      "ltk against python3-torch's float32 in the same run; the caches, cores and clocks are this machine's.\n")
def f(v):
    return f"{v:.2f}x" if v is not None else "refused: no native bf16"
print("| instruction set | oneDNN's instruction set | Python fine-tunes (samples/s) | ltk fp32 | ltk bf16 autocast | Python infers (samples/s) | ltk-predict fp32 | int8 artifact | bf16 artifact |")
print("|---|---|---|---|---|---|---|---|---|")
for i in range(count):
    name, vars_, isa = open(f"{tmp}/{i}.name").read().strip().split("|")
    r = json.load(open(f"{tmp}/{i}.json"))
    print(f"| {name} | {isa or '?'} | {r['py_train_samples_per_s']:.1f} | {f(r['train_fp32'])} | {f(r['train_bf16'])} | "
          f"{r['py_infer_samples_per_s']:.1f} | {f(r['infer_fp32'])} | {f(r['infer_int8'])} | {f(r['infer_bf16'])} |")
print("\nThe limits, per row: " + "; ".join(
    f"{open(f'{tmp}/{i}.name').read().split('|')[0]}: `{open(f'{tmp}/{i}.name').read().split('|')[1] or 'none'}`" for i in range(count)) + ".")
PY
