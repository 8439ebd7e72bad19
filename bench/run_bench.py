#!/usr/bin/python3
"""scripts/bench.sh's harness: runs ltk, the same pipeline in PyTorch-in-Python (bench/py_train.py)
and, for the bag-of-words model, fastText, one after another on the same data, then writes the
table to docs/benchmarks.md and the chart to docs/benchmarks.svg. Standard library only; the
training itself runs in the child processes. Never run it next to another CPU-heavy job."""
import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
TARGET_ACC = 0.40  # the fixed validation accuracy for "time to accuracy"

# name, config, --set overrides for both, --set overrides for ltk only (its levers), corpus
# ("en" or "synthetic"), with fastText, runs of each program (the fastest is kept: the machine is
# noisy, and a run is only ever slowed down by it).
BUCKETS = ["trainer.bucket_pool=50"]
CASES = [
    ("bow", "configs/fortunes_bow.json", [], [], "en", False, 2),
    ("bow sparse", "configs/fortunes_bow_sparse.json", [], [], "en", True, 3),
    ("textcnn", "configs/fortunes_textcnn.json", [], BUCKETS, "en", False, 1),
    ("rnn", "configs/fortunes_rnn.json", [], BUCKETS, "en", False, 1),
    ("transformer", "configs/fortunes_transformer.json", [], BUCKETS, "en", False, 1),
    ("bow", "configs/fortunes_bow.json", ["trainer.epochs=1"], [], "synthetic", False, 1),
    ("bow sparse", "configs/fortunes_bow_sparse.json", ["trainer.epochs=1"], [], "synthetic", True, 2),
]
# fastText's best settings found on fortunes_en (lr 1.0/epoch 50 and lr 0.5/epoch 50 were unstable:
# 0.21-0.45 test accuracy from run to run); the synthetic corpus is 20 copies, so 100/20 epochs.
FASTTEXT_ARGS = {"en": ["-dim", "128", "-lr", "0.5", "-epoch", "100"],
                 "synthetic": ["-dim", "128", "-lr", "0.5", "-epoch", "5"]}


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def timed(cmd, **kw):
    """Runs cmd under GNU time; returns (stdout, stderr, wall seconds, peak RSS MB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%M"] + cmd, capture_output=True, text=True, **kw)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        rss = int(tf.read().strip().splitlines()[-1]) / 1024
    return p.stdout, p.stderr, wall, rss


def first_reaching(curve, target):
    return next((t for t, acc in curve if acc >= target), None)


def run_ltk(config, sets, threads, run_dir):
    args = [os.path.join(BIN, "ltk-train"), "--config", config, "--overwrite", "--json",
            "--set", f"output_dir={run_dir}", "--set", f"threads={threads}"]
    for s in sets:
        args += ["--set", s]
    out, err, wall, rss = timed(args, cwd=ROOT)
    j = json.loads(out.strip().splitlines()[-1])
    valid = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if '"kind":"valid"' in l]
    # Warm evaluation throughput: the best of three passes over the validation split (ltk-eval's
    # own timing of the model's pass, as py_train.py times its loop).
    valid_file = next(s.split("=", 1)[1] for s in sets if s.startswith("data.valid="))
    ev = subprocess.run([os.path.join(BIN, "ltk-eval"), "--run", run_dir, "--data", valid_file, "--data", valid_file, "--data", valid_file,
                         "--json", "--threads", str(threads)], capture_output=True, text=True, check=True)
    warm_eval = max(json.loads(l)["samples_per_s"] for l in ev.stdout.splitlines() if l.strip())
    blas = re.search(r"BLAS: ([^(]*)", err)
    return {
        "train_samples_per_s": j["train_samples_per_s"],
        "eval_samples_per_s": warm_eval,
        "eval_samples_per_s_epochs": [v["eval_samples_per_s"] for v in valid],
        "curve": [[v["elapsed_s"], v["accuracy"]] for v in valid],
        "test_accuracy": j["test"]["accuracy"], "peak_rss_mb": rss, "wall_seconds": wall,
        "loop_seconds": j["seconds"], "data_seconds_in_loop": j["data_seconds"],
        "blas": blas.group(1).strip() if blas else "?", "blas_core": j.get("blas_core", ""),
    }


def run_python(config, sets, threads, tmp, coretype=None):
    """Python as a user runs it, or (coretype) with OPENBLAS_CORETYPE set to ltk's kernel."""
    args = [os.path.join(BIN, "ltk-train"), "--config", config, "--dump-config", "--set", f"threads={threads}"]
    for s in sets:
        args += ["--set", s]
    resolved = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = os.path.join(tmp, "resolved.json")
    open(path, "w").write(resolved)
    env = dict(os.environ)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out, _, wall, rss = timed(["/usr/bin/python3", os.path.join(ROOT, "bench", "py_train.py"), path,
                               "--threads", str(threads)], cwd=ROOT, env=env)
    j = json.loads(out.strip().splitlines()[-1])
    j["peak_rss_mb"], j["wall_seconds"] = rss, wall
    return j


def fasttext_files(split_paths, tmp):
    """label<TAB>text -> '__label__L tokens', tokenised by ltk's basic tokenizer (the same tokens)."""
    out = {}
    for name, path in split_paths.items():
        labels = [l.split("\t", 1)[0] for l in open(path, encoding="utf-8") if l.strip()]
        texts = subprocess.run(f"cut -f2- {shlex.quote(path)} | {shlex.quote(BIN)}/ltk-data tokenize --tokenizer basic", shell=True,
                               capture_output=True, text=True, check=True).stdout.splitlines()
        dest = os.path.join(tmp, f"{name}.ft")
        with open(dest, "w", encoding="utf-8") as f:
            for label, text in zip(labels, texts):
                f.write(f"__label__{label} {text}\n")
        out[name] = dest
    return out


def run_fasttext(files, corpus, threads, tmp):
    model = os.path.join(tmp, "ft")
    _, _, train_wall, rss = timed(["fasttext", "supervised", "-input", files["train"], "-output", model,
                                   "-thread", str(threads), "-verbose", "0"] + FASTTEXT_ARGS[corpus])
    out, _, test_wall, _ = timed(["fasttext", "test", model + ".bin", files["test"]])
    acc = float(re.search(r"P@1\s+([0-9.]+)", out).group(1))
    n = sum(1 for _ in open(files["test"]))
    train_n = sum(1 for _ in open(files["train"]))
    epochs = int(FASTTEXT_ARGS[corpus][FASTTEXT_ARGS[corpus].index("-epoch") + 1])
    return {"train_seconds": train_wall, "train_samples_per_s": train_n * epochs / train_wall,
            "test_eval_samples_per_s": n / test_wall, "test_accuracy": acc, "peak_rss_mb": rss,
            "args": " ".join(FASTTEXT_ARGS[corpus])}


def fmt_acc(r):
    """Mean test accuracy over the runs, with the range when there were several."""
    accs = r.get("test_accuracy_runs", [r["test_accuracy"]])
    mean = sum(accs) / len(accs)
    return f"{mean:.4f}" if len(accs) == 1 else f"{mean:.4f} ({min(accs):.3f}-{max(accs):.3f})"


def fmt_time(t):
    return "not reached" if t is None else f"{t:.1f} s"


def svg_chart(rows, path):
    """Horizontal bars: ltk/Python training and evaluation throughput per case, targets dashed."""
    w, left, bar, gap = 720, 230, 14, 12
    scale_max = max(4.0, max(max(r["train_ratio"], r["eval_ratio"]) for r in rows) * 1.1)
    x = lambda v: left + (w - left - 30) * v / scale_max
    h = 60 + len(rows) * (2 * bar + gap) + 30
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">ltk / PyTorch-in-Python throughput '
         '(higher is better)</text>']
    y = 40
    for r in rows:
        s.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{r["label"]}</text>')
        for k, (key, color) in enumerate((("train_ratio", "#4c72b0"), ("eval_ratio", "#dd8452"))):
            v = r[key]
            s.append(f'<rect x="{left}" y="{y + k * bar}" width="{x(v) - left:.1f}" height="{bar - 2}" fill="{color}"/>')
            s.append(f'<text x="{x(v) + 4:.1f}" y="{y + k * bar + 11}">{v:.2f}x</text>')
        y += 2 * bar + gap
    for v, label in ((1.0, "1x"), (1.5, "1.5x train target"), (2.0, "2x eval target")):
        s.append(f'<line x1="{x(v):.1f}" y1="32" x2="{x(v):.1f}" y2="{y}" stroke="#555" stroke-dasharray="4,3"/>')
        s.append(f'<text x="{x(v) + 2:.1f}" y="{y + 14}" font-size="10">{label}</text>')
    s.append(f'<rect x="{left}" y="{h - 16}" width="10" height="10" fill="#4c72b0"/>'
             f'<text x="{left + 14}" y="{h - 7}">training samples/s</text>'
             f'<rect x="{left + 150}" y="{h - 16}" width="10" height="10" fill="#dd8452"/>'
             f'<text x="{left + 164}" y="{h - 7}">evaluation samples/s</text>')
    s.append("</svg>")
    open(path, "w").write("\n".join(s) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    a = ap.parse_args()
    synth_dir = os.path.join(ROOT, "data", "bench", "synthetic20")
    en = {s: os.path.join(ROOT, "data", "fortunes_en", f"{s}.tsv") for s in ("train", "valid", "test")}
    synth = {"train": os.path.join(synth_dir, "train.tsv"), "valid": en["valid"], "test": en["test"]}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ft_files = {}
        for name, config, sets, ltk_sets, corpus, with_ft, runs in CASES:
            if a.only and name not in a.only.split(","):
                continue
            paths = en if corpus == "en" else synth
            sets = sets + [f"data.{k}={v}" for k, v in paths.items()]
            label = f"{name} ({'fortunes_en' if corpus == 'en' else 'synthetic 20x'})"
            def best(xs):
                """The fastest run, with the test accuracy of every run."""
                top = dict(max(xs, key=lambda r: r["train_samples_per_s"]))
                top["test_accuracy_runs"] = [r["test_accuracy"] for r in xs]
                return top

            log(f"{label}: ltk x{runs}")
            ltk = best([run_ltk(config, sets + ltk_sets, a.threads, os.path.join(tmp, "run")) for _ in range(runs)])
            log(f"{label}: python x{runs}")
            py = best([run_python(config, sets, a.threads, tmp) for _ in range(runs)])
            # When ltk ran another OpenBLAS kernel than Python (ltk fixes a mis-detected one), Python
            # again with ltk's kernel: the table then separates the frontend from the kernel choice.
            py_same = None
            if ltk["blas_core"] and py.get("blas_core") != ltk["blas_core"]:
                log(f"{label}: python x{runs} with OPENBLAS_CORETYPE={ltk['blas_core']}")
                py_same = best([run_python(config, sets, a.threads, tmp, ltk["blas_core"]) for _ in range(runs)])
            ft = None
            if with_ft:
                log(f"{label}: fasttext x{runs}")
                if corpus not in ft_files:
                    ft_files[corpus] = fasttext_files(paths, tempfile.mkdtemp(dir=tmp))
                ft = best([run_fasttext(ft_files[corpus], corpus, a.threads, tmp) for _ in range(runs)])
            results.append({"label": label, "config": config, "sets": sets, "ltk_sets": ltk_sets, "runs": runs,
                            "ltk": ltk, "python": py, "python_same_kernel": py_same, "fasttext": ft})
            log(f"{label}: ltk {ltk['train_samples_per_s']:.0f}/s acc {ltk['test_accuracy']:.4f}, python "
                f"{py['train_samples_per_s']:.0f}/s acc {py['test_accuracy']:.4f}")
    write_report(results, a.threads)


def write_report(results, threads):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    torch_v = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    ft_v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "fasttext"], capture_output=True, text=True).stdout
    lines = ["# Benchmarks: ltk, PyTorch in Python, fastText", "",
             f"Made by `scripts/bench.sh` on {time.strftime('%Y-%m-%d')}: {cpu}, {os.cpu_count()} cores, "
             f"{platform.platform()}; {threads} threads for every program; LibTorch/PyTorch {torch_v} (Debian); "
             f"BLAS: {results[0]['ltk']['blas'] if results else '?'}; fastText {ft_v or '?'}. Nothing else ran.", "",
             "Each row trains the same model with the same data, vocabulary limits, hyperparameters, batch size and "
             "epochs in `ltk-train` and in `bench/py_train.py` (Dataset, DataLoader with a padding collate_fn, "
             "nn.Module, the five-step loop, no_grad evaluation). Training throughput leaves out validation; "
             "evaluation samples/s is the best of three passes over the validation split with the trained model "
             "(ltk-eval; py_train.py's no_grad loop). Time to accuracy: seconds from the "
             f"start of the training loop to the first validation accuracy >= {TARGET_ACC}. "
             "Test accuracy: the best-validation checkpoint on the test split, the mean over the runs (range in "
             "brackets). Other columns: the fastest run. Peak RSS of the whole process.", "",
             "| model (corpus) | train samples/s ltk / Python | ratio | eval samples/s ltk / Python | ratio | "
             f"time to {TARGET_ACC:.2f} valid acc ltk / Python | test acc ltk / Python | peak RSS ltk / Python | "
             "wall ltk / Python | OpenBLAS kernel ltk / Python |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for r in results:
        l, p = r["ltk"], r["python"]
        tr, ev = l["train_samples_per_s"] / p["train_samples_per_s"], l["eval_samples_per_s"] / p["eval_samples_per_s"]
        rows.append({"label": r["label"], "train_ratio": tr, "eval_ratio": ev})
        label = r["label"] + (" ¹" if r["ltk_sets"] else "")
        lines.append(
            f"| {label} | {l['train_samples_per_s']:.0f} / {p['train_samples_per_s']:.0f} | **{tr:.2f}x** | "
            f"{l['eval_samples_per_s']:.0f} / {p['eval_samples_per_s']:.0f} | **{ev:.2f}x** | "
            f"{fmt_time(first_reaching(l['curve'], TARGET_ACC))} / {fmt_time(first_reaching(p['curve'], TARGET_ACC))} | "
            f"{fmt_acc(l)} / {fmt_acc(p)} | {l['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} MB | "
            f"{l['wall_seconds']:.1f} / {p['wall_seconds']:.1f} s | {l.get('blas_core') or '?'} / "
            f"{p.get('blas_core') or '?'} |")
        if r.get("python_same_kernel"):
            q = r["python_same_kernel"]
            lines.append(f"| ... Python with ltk's kernel ({l.get('blas_core')}) | {l['train_samples_per_s']:.0f} / "
                         f"{q['train_samples_per_s']:.0f} | **{l['train_samples_per_s'] / q['train_samples_per_s']:.2f}x** | "
                         f"{l['eval_samples_per_s']:.0f} / {q['eval_samples_per_s']:.0f} | "
                         f"**{l['eval_samples_per_s'] / q['eval_samples_per_s']:.2f}x** | | {fmt_acc(l)} / {fmt_acc(q)} | | | |")
    lines += ["", "¹ ltk with length bucketing (`trainer.bucket_pool 50`: batches of similar lengths, shuffled; the "
              "same batch size). Python's DataLoader batches at random, as a PyTorch user's does. Each program ran "
              "the number of times in `runs` of docs/benchmarks.json and the fastest run is shown."]
    fts = [r for r in results if r["fasttext"]]
    if fts:
        lines += ["", "Against fastText (Debian's `fasttext supervised`, the same tokens from ltk's basic tokenizer; "
                  "its own SGD, so its best settings rather than ltk's):", "",
                  "| corpus | fastText settings | fastText train time | ltk train loop | fastText test acc | ltk test acc | "
                  "train samples/s ltk / fastText | ratio | peak RSS ltk / fastText |", "|---|---|---|---|---|---|---|---|---|"]
        for r in fts:
            l, f = r["ltk"], r["fasttext"]
            lines.append(f"| {r['label']} | `{f['args']}` | {f['train_seconds']:.1f} s | {l['loop_seconds']:.1f} s "
                         f"(process {l['wall_seconds']:.1f} s) | {fmt_acc(f)} | {fmt_acc(l)} | "
                         f"{l['train_samples_per_s']:.0f} / {f['train_samples_per_s']:.0f} | "
                         f"**{l['train_samples_per_s'] / f['train_samples_per_s']:.2f}x** | "
                         f"{l['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} MB |")
    lines += ["", "![ltk / Python throughput](benchmarks.svg)", "",
              "Raw figures: `docs/benchmarks.json`. Rerun: `./scripts/bench.sh` (about 40 minutes here)."]
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    # The serving section (scripts/bench_serve.sh) follows its marker and is kept.
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    serve_mark = "<!-- serve: made by scripts/bench_serve.sh -->"
    old = open(path).read() if os.path.exists(path) else ""
    kept = "\n" + serve_mark + old.split(serve_mark, 1)[1] if serve_mark in old else ""
    open(path, "w").write("\n".join(lines) + "\n" + kept)
    json.dump(results, open(os.path.join(ROOT, "docs", "benchmarks.json"), "w"), indent=1)
    if rows:
        svg_chart(rows, os.path.join(ROOT, "docs", "benchmarks.svg"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
