"""Data-parallel training on this machine: 2 processes x 1 thread (ltk-train --nproc 2) against 1
process x 2 threads (and x 1 thread), the same global batch, so the same samples in the same order.
Reports training samples/s (validation excluded), their ratio, the all-reduce's share of the loop
and its MB/s, and the test accuracy of each. Writes docs/bench_dist.json and docs/bench_dist.md.
Run it alone (scripts/bench_dist.sh): the processes share the machine's cores."""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(model, procs, threads, batch, epochs, out):
    cmd = [os.path.join(ROOT, "build/bin/ltk-train"), "--config", f"configs/fortunes_{model}.json", "--json",
           "--overwrite", "--set", f"output_dir={out}", "--set", f"threads={threads}",
           "--set", f"trainer.batch_size={batch}", "--set", f"trainer.epochs={epochs}",
           "--set", "trainer.progress=lines"]
    if procs > 1:
        cmd += ["--nproc", str(procs)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    j["wall_s"] = time.time() - t0
    return j


def allreduce_worker(rank, port, sizes, out):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    rows = []
    for mb in sizes:
        t = torch.ones(int(mb * 262144))
        for _ in range(3):
            dist.all_reduce(t)
        n = max(5, int(200 / max(mb, 1)))
        t0 = time.time()
        for _ in range(n):
            dist.all_reduce(t)
        rows.append({"mb": mb, "ms": (time.time() - t0) / n * 1e3})
    if rank == 0:
        out.put(rows)
    dist.destroy_process_group()


def measure_allreduce(sizes):
    """c10d's Gloo all-reduce (the engine ltk uses, from Debian's PyTorch) between 2 processes on
    loopback: milliseconds per call by size, with nothing else running."""
    import torch.multiprocessing as mp
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=allreduce_worker, args=(r, port, sizes, q)) for r in range(2)]
    for p in procs:
        p.start()
    rows = q.get(timeout=300)
    for p in procs:
        p.join()
    return rows


def projection(allreduce, bert_step_s, bert_batch, params):
    """Expected efficiency (compute / (compute + all-reduce), no overlap) of BERT-base-sized
    data-parallel training at 8 and 64 processes on 10 and 100 Gb/s networks: a ring all-reduce
    sends 2(p-1)/p of the gradients over each link, plus the per-MB cost of the reduction itself
    measured here (the largest size's ms/MB) and a latency term per ring step and bucket."""
    size_mb = params * 4 / 1e6
    big = max(allreduce, key=lambda r: r["mb"])
    local_s_per_mb = big["ms"] / 1e3 / big["mb"]
    latency_s = min(r["ms"] for r in allreduce) / 1e3 / 2  # the smallest call: two ring steps on loopback
    buckets = max(1, round(size_mb / 25))
    step_s = bert_step_s * 32 / bert_batch  # 32 samples of 128 tokens per process
    out = []
    for p in (8, 64):
        for gbit in (10, 100):
            net = 2 * (p - 1) / p * size_mb / (gbit * 125)
            comm = size_mb * local_s_per_mb + net + buckets * 2 * (p - 1) * 50e-6 / 2
            out.append({"processes": p, "gbit_s": gbit, "allreduce_s": comm, "compute_s": step_s,
                        "efficiency": step_s / (step_s + comm), "efficiency_if_compute_0_25_s": 0.25 / (0.25 + comm)})
    return {"gradient_mb": size_mb, "local_ms_per_mb": local_s_per_mb * 1e3, "loopback_latency_ms": latency_s * 1e3,
            "buckets": buckets, "rows": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bow,textcnn")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64, help="the global batch")
    ap.add_argument("--no-projection", action="store_true", help="skip the all-reduce and BERT-base measurements")
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        runs = {}
        for name, procs, threads in [("1x1", 1, 1), ("1x2", 1, 2), ("2x1", 2, 1)]:
            r = train(model, procs, threads, args.batch // procs, args.epochs, f"/tmp/ltk-bench-dist/{model}-{name}")
            runs[name] = r
            print(f"{model} {name}: {r['train_samples_per_s']:.0f} samples/s, sync {r.get('sync_seconds', 0):.2f}s "
                  f"of {r['seconds']:.1f}s, test acc {r['test']['accuracy']:.4f}", file=sys.stderr)
        two = runs["2x1"]
        rows.append({
            "model": model,
            "samples_per_s": {k: v["train_samples_per_s"] for k, v in runs.items()},
            "ratio_2x1_over_1x2": two["train_samples_per_s"] / runs["1x2"]["train_samples_per_s"],
            "allreduce_share": two["sync_seconds"] / two["seconds"],
            "allreduce_mb_per_step": two["sync_mb_per_step"],
            "allreduce_mb_per_s": two["sync_mb_per_step"] * two["steps"] / two["sync_seconds"] if two["sync_seconds"] else 0,
            "test_accuracy": {k: v["test"]["accuracy"] for k, v in runs.items()},
            "steps": two["steps"],
        })
    proj = None
    if not args.no_projection:
        allreduce = measure_allreduce([0.001, 1, 4, 16, 64])
        b = subprocess.run([sys.executable, os.path.join(ROOT, "bench/bert_base_step.py"), "--threads", "1", "--batch", "8"],
                           capture_output=True, text=True, check=True).stdout.split()
        params, bert_s = int(b[b.index("params") + 1]), float(b[b.index("step_s") + 1])
        proj = projection(allreduce, bert_s, 8, params)
        proj.update({"allreduce": allreduce, "bert_step_s_batch8_1thread": bert_s, "bert_params": params})
    with open(os.path.join(ROOT, "docs/bench_dist.json"), "w") as f:
        json.dump({"epochs": args.epochs, "global_batch": args.batch, "rows": rows, "projection": proj}, f, indent=2)
    lines = ["| model | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs x 1 thread | 2x1 / 1x2 | all-reduce share "
             "(2x1) | gradient MB sent a step | all-reduce MB/s | test accuracy 1x2 / 2x1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["samples_per_s"]
        lines.append(f"| {r['model']} | {s['1x1']:.0f} | {s['1x2']:.0f} | {s['2x1']:.0f} | {r['ratio_2x1_over_1x2']:.2f} | "
                     f"{100 * r['allreduce_share']:.0f}% | {r['allreduce_mb_per_step']:.2f} | {r['allreduce_mb_per_s']:.0f} | "
                     f"{r['test_accuracy']['1x2']:.4f} / {r['test_accuracy']['2x1']:.4f} |")
    text = ("<!-- made by scripts/bench_dist.sh -->\n## Data-parallel training on this machine\n\n"
            f"Training samples/s on fortunes_en, {args.epochs} epoch(s), global batch {args.batch} (so the same "
            "samples in the same order in every column; validation and checkpoints excluded). The all-reduce "
            "share is the time the 2-process run spent in the step's collectives, waiting for the slower rank "
            "included.\n\n" + "\n".join(lines) + "\n")
    if proj:
        ar = " · ".join(f"{r['mb']:g} MB {r['ms']:.2f} ms" for r in proj["allreduce"])
        text += ("\n## All-reduce cost, and what it means for a BERT-base-sized model\n\n"
                 f"c10d's Gloo all-reduce between 2 processes on loopback (Debian's PyTorch, the same engine), idle "
                 f"machine: {ar}; {proj['local_ms_per_mb']:.2f} ms per MB at the largest size.\n\n"
                 f"A BERT-base-sized encoder ({proj['bert_params'] / 1e6:.1f}M parameters, {proj['gradient_mb']:.0f} MB "
                 f"of float32 gradients) takes {proj['bert_step_s_batch8_1thread']:.1f} s for one training step of 8 "
                 "x 128 tokens on one core here, so about "
                 f"{proj['rows'][0]['compute_s']:.0f} s for 32 samples per process. Expected efficiency, compute / "
                 "(compute + all-reduce), without overlap: a ring all-reduce moves 2(p-1)/p of the gradients over "
                 "each link, plus the reduction's own cost per MB measured above, plus 50 µs per ring step and bucket "
                 f"({proj['buckets']} buckets of 25 MB).\n\n"
                 "| processes | network | all-reduce s/step | efficiency (CPU, this core) | efficiency if a step took 0.25 s (a GPU; assumed) |\n"
                 "|---|---|---|---|---|\n")
        for r in proj["rows"]:
            text += (f"| {r['processes']} | {r['gbit_s']} Gb/s | {r['allreduce_s']:.2f} | {100 * r['efficiency']:.1f}% | "
                     f"{100 * r['efficiency_if_compute_0_25_s']:.0f}% |\n")
    with open(os.path.join(ROOT, "docs/bench_dist.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
