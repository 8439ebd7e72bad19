"""One Linear layer (x W^T + b) in float32, bf16 and int8 on LibTorch's onednn engine, as ltk's
deploy artifacts run it (python3-torch, the same LibTorch version as ltk): int8 with the same
activation scale at every call (ltk's calibrated ranges) and with a new scale at each call (dynamic
quantization: onednn builds a kernel per scale). Microseconds per call; ratios to float32 (higher
is faster). Run it alone:  /usr/bin/python3 bench/int8_linear.py [threads=2] > docs/bench_int8_linear.md"""
import os
import subprocess
import sys
import time

# oneDNN's kernel cache as ltk sizes it while layers quantize with each call's own scale.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
import torch  # noqa: E402

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.backends.quantized.engine = "onednn"


def per_call(f, n=60):
    for _ in range(5):
        f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n * 1e6


cpu = subprocess.run("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", shell=True, capture_output=True,
                     text=True).stdout.strip()
flags = open("/proc/cpuinfo").read().split()
have = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
print("# One Linear layer in float32, bf16 and int8 (bench/int8_linear.py)\n")
print(f"CPU: {cpu} ({', '.join(have) or 'no bf16 or VNNI'}), {threads} thread(s), torch {torch.__version__}\n")
print("| rows x in -> out | float32 us | bf16 | int8, one scale | int8, a new scale each call |")
print("|---|---|---|---|---|")
torch.manual_seed(0)
for rows, k, n in ((1024, 128, 512), (1024, 512, 128), (1024, 256, 1024), (1024, 1024, 256), (1024, 768, 768),
                   (1024, 768, 3072)):
    w, b, x = torch.randn(n, k) * 0.1, torch.randn(n), torch.randn(rows, k)
    qw = torch.quantize_per_channel(w, (w.abs().amax(1) / 127).double(), torch.zeros(n, dtype=torch.long), 0,
                                    torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qw, b)
    scaled = [x * (1 + i * 1e-3) for i in range(70)]  # 70 inputs, each of another range
    calls = iter(range(10**9))
    f32 = per_call(lambda: torch.addmm(b, x, w.t()))
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    b16 = per_call(lambda: torch.addmm(bb, xb, wb.t()))
    one = per_call(lambda: torch.ops.quantized.linear_dynamic(x, packed, False))
    new = per_call(lambda: torch.ops.quantized.linear_dynamic(scaled[next(calls) % 70], packed, False), n=60)
    print(f"| {rows} x {k} -> {n} | {f32:.0f} | {b16:.0f} ({f32 / b16:.2f}x) | {one:.0f} ({f32 / one:.2f}x) | "
          f"{new:.0f} ({f32 / new:.2f}x) |")
