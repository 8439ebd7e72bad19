"""Data-parallel training on this machine: 2 processes x 1 thread (ltk-train --nproc 2) against 1
process x 2 threads (and x 1 thread), the same global batch, so the same samples in the same order.
Reports training samples/s (validation excluded), their ratio, the all-reduce's share of the loop
and its MB/s, and the test accuracy of each. Writes docs/bench_dist.json and docs/bench_dist.md.
Run it alone (scripts/bench_dist.sh): the processes share the machine's cores."""
import argparse
import json
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bow,textcnn")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64, help="the global batch")
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
    with open(os.path.join(ROOT, "docs/bench_dist.json"), "w") as f:
        json.dump({"epochs": args.epochs, "global_batch": args.batch, "rows": rows}, f, indent=2)
    lines = ["| model | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs x 1 thread | 2x1 / 1x2 | all-reduce share "
             "(2x1) | gradient MB a step | all-reduce MB/s | test accuracy 1x2 / 2x1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["samples_per_s"]
        lines.append(f"| {r['model']} | {s['1x1']:.0f} | {s['1x2']:.0f} | {s['2x1']:.0f} | {r['ratio_2x1_over_1x2']:.2f} | "
                     f"{100 * r['allreduce_share']:.0f}% | {r['allreduce_mb_per_step']:.1f} | {r['allreduce_mb_per_s']:.0f} | "
                     f"{r['test_accuracy']['1x2']:.4f} / {r['test_accuracy']['2x1']:.4f} |")
    table = "\n".join(lines)
    with open(os.path.join(ROOT, "docs/bench_dist.md"), "w") as f:
        f.write("<!-- made by scripts/bench_dist.sh -->\n"
                f"Training samples/s on fortunes_en, {args.epochs} epoch(s), global batch {args.batch} "
                "(validation and checkpoints excluded).\n\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
