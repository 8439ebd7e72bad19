#!/usr/bin/python3
"""The driver of scripts/bench_serve.sh: ltk-serve under wrk on loopback, against the same model
behind Flask under gunicorn (bench/serve_flask.py), in one invocation on one machine.

For each model (bow, textcnn on fortunes_en) and each server (ltk-serve --max-batch 1, ltk-serve
with dynamic batching, Flask/gunicorn), one server start, then wrk at 1, 8 and 64 connections
(one text per request, the test split's texts in turn), each after a warm-up. Then: texts/s with
32 texts per request against ltk-predict reading a file; ltk-serve's RSS before and after 100k
requests; the share of the time ltk-serve's model thread was busy (from its /metrics).
Prints one JSON object; writes docs/bench_serve.json and the serving section of docs/benchmarks.md.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
MARK = "<!-- serve: made by scripts/bench_serve.sh -->"
COPIES = 50


def texts_of(tsv):
    out = []
    for line in open(tsv, encoding="utf-8"):
        _, _, text = line.rstrip("\n").partition("\t")
        if text.strip():
            out.append(text.strip())
    return out


def write_bodies(path, texts, per_request):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(0, len(texts) - per_request + 1, per_request):
            f.write(json.dumps({"texts": texts[i:i + per_request]}, ensure_ascii=False) + "\n")


def rss_mb(pid):
    total = 0
    for p in [pid] + children(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]
    except OSError:
        return []


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def wait_ready(port, proc, body):
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"bench_serve: the server exited ({proc.returncode})")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("bench_serve: the server did not answer")


class Server:
    def __init__(self, kind, run, export, port, max_batch, tmp, workers=1):
        self.kind, self.port = kind, port
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if kind == "flask":
            env.update(LTK_EXPORT=export, LTK_CONFIG=os.path.join(run, "config.json"), LTK_TORCH_THREADS="1")
            # gunicorn's advice for the number of sync workers: 2 x cores + 1
            workers = 2 * os.cpu_count() + 1
            cmd = ["gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--chdir",
                   os.path.join(ROOT, "bench"), "--log-level", "warning", "serve_flask:app"]
        else:
            # one model worker by default: on 2 cores shared with wrk a second one only contends for
            # bow and textcnn (docs/benchmarks.md)
            cmd = [os.path.join(BIN, "ltk-serve"), "--run", run, "--port", str(port), "--threads", "1",
                   "--workers", str(workers), "--max-batch", str(max_batch)]
        self.log = open(os.path.join(tmp, f"{kind}-{port}.log"), "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def model_busy_seconds(self):
        if self.kind == "flask":
            return None
        m = re.search(r"^ltk_batch_duration_seconds_sum (\S+)$", get(self.port, "/metrics"), re.M)
        return float(m.group(1)) if m else None


def wrk(port, connections, seconds, bodies):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
                          os.path.join(ROOT, "bench", "wrk_predict.lua"), f"http://127.0.0.1:{port}", "--", bodies],
                         capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["rps"] = r["requests"] / r["seconds"]
    r["errors"] = r["errors_status"] + r["errors_connect"] + r["errors_read"] + r["errors_write"] + r["errors_timeout"]
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bow=runs/fortunes_bow,textcnn=runs/fortunes_textcnn")
    ap.add_argument("--test", default=os.path.join(ROOT, "data", "fortunes_en", "test.tsv"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", default="1,8,64")
    ap.add_argument("--rss-requests", type=int, default=100000)
    ap.add_argument("--port", type=int, default=18500)
    ap.add_argument("--copies", type=int, default=COPIES, help="copies of the test texts ltk-predict reads")
    ap.add_argument("--workers", type=int, default=1, help="ltk-serve's model workers (one thread each)")
    ap.add_argument("--artifacts", default="",
                    help="also serve these deploy artifacts of each run (ltk-eval --quantize P, its accuracy "
                         "check on data.valid), e.g. bf16,int8; Flask keeps the float32 model")
    ap.add_argument("--out", default="bench_serve",
                    help="docs/OUT.json; any other name than bench_serve writes docs/OUT.md instead of the "
                         "serving section of docs/benchmarks.md")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-serve.")
    texts = texts_of(a.test)
    single = os.path.join(tmp, "single.jsonl")
    batched = os.path.join(tmp, "batched.jsonl")
    write_bodies(single, texts, 1)
    write_bodies(batched, texts, 32)
    first_body = open(single).readline()
    result = {"machine": {"cores": os.cpu_count(), "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                                               if l.startswith("model name")), "")},
              "seconds": a.seconds, "texts": len(texts), "rows": [], "batched": [], "rss": None}
    conns = [int(c) for c in a.connections.split(",")]
    port = a.port
    served_artifacts = []
    for spec in a.models.split(","):
        name, run = spec.split("=")
        run = os.path.join(ROOT, run)
        export = os.path.join(tmp, "export-" + name)
        subprocess.run([os.path.join(BIN, "ltk-eval"), "--run", run, "--export", export], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers = [("ltk", 1, run, "ltk-serve --max-batch 1"), ("ltk", 8, run, "ltk-serve --max-batch 8"),
                   ("ltk", 64, run, "ltk-serve (dynamic batching, 64 / 5 ms)")]
        for precision in filter(None, a.artifacts.split(",")):
            artifact = os.path.join(tmp, f"{name}-{precision}")
            made = subprocess.run([os.path.join(BIN, "ltk-eval"), "--run", run, "--quantize", precision, "--out",
                                   artifact, "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
            if made.returncode != 0:
                print(f"bench_serve: no {precision} artifact of {run}: {made.stderr.strip()}", file=sys.stderr)
                continue
            servers.append(("ltk", 64, artifact, f"ltk-serve, {precision} artifact (dynamic batching, 64 / 5 ms)"))
            served_artifacts.append(precision)
        servers.append(("flask", 0, run, "Flask + gunicorn (%d sync workers)" % (2 * os.cpu_count() + 1)))
        for kind, max_batch, served, label in servers:
            port += 1
            s = Server(kind, served, export, port, max_batch, tmp, a.workers)
            try:
                wait_ready(port, s.proc, first_body)
                for c in conns:
                    wrk(port, c, 2, single)  # warm-up
                    busy0 = s.model_busy_seconds()
                    r = wrk(port, c, a.seconds, single)
                    busy1 = s.model_busy_seconds()
                    r.update(model=name, server=label, connections=c)
                    if busy0 is not None:
                        r["model_busy_share"] = (busy1 - busy0) / r["seconds"]
                    result["rows"].append(r)
                    print(json.dumps(r), file=sys.stderr)
                if max_batch != 1:
                    r = wrk(port, 8, a.seconds, batched)
                    r.update(model=name, server=label, connections=8, texts_per_request=32, texts_per_s=r["rps"] * 32)
                    result["batched"].append(r)
                    print(json.dumps(r), file=sys.stderr)
            finally:
                s.stop()
        # ltk-predict reading a file of the same texts (50 copies), one thread: texts/s, the whole
        # process (loading the run is about 1 s of it)
        path = os.path.join(tmp, "texts.txt")
        with open(path, "w", encoding="utf-8") as f:
            for _ in range(a.copies):
                f.write("\n".join(texts) + "\n")
        t0 = time.perf_counter()
        subprocess.run([os.path.join(BIN, "ltk-predict"), "--run", run, "--input", path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
        result.setdefault("predict_file", {})[name] = a.copies * len(texts) / (time.perf_counter() - t0)
        result["copies"] = a.copies
    # Memory: ltk-serve (the first model, dynamic batching) before and after rss_requests requests.
    name, run = a.models.split(",")[0].split("=")
    port += 1
    s = Server("ltk", os.path.join(ROOT, run), "", port, 64, tmp, a.workers)
    try:
        wait_ready(port, s.proc, first_body)
        wrk(port, 8, 2, single)
        before = rss_mb(s.proc.pid)
        done, rounds, after = 0, [], []
        while done < a.rss_requests:
            r = wrk(port, 64, 5, single)
            done += r["requests"]
            rounds.append(done)
            after.append(rss_mb(s.proc.pid))
        result["rss"] = {"model": name, "requests": done, "before_mb": before, "after_mb": after[-1],
                         "after_each_round_mb": after, "requests_after_each_round": rounds}
        print(json.dumps(result["rss"]), file=sys.stderr)
    finally:
        s.stop()
    result["ltk_workers"] = a.workers
    result["artifacts"] = ",".join(served_artifacts)  # those made and served
    json.dump(result, open(os.path.join(ROOT, "docs", a.out + ".json"), "w"), indent=1)
    write_markdown(result, a.out)
    print(json.dumps(result))


def write_markdown(r, out="bench_serve"):
    lines = [MARK, "", "## Serving: ltk-serve against Flask + gunicorn", "",
             f"Made by `scripts/{out}.sh` on {time.strftime('%Y-%m-%d')}: {r['machine']['cpu']}, "
             f"{r['machine']['cores']} cores, everything on this machine (wrk with one thread, the server, loopback). "
             f"One text per request, the {r['texts']} test texts of fortunes_en in turn; {r['seconds']} s per row after "
             "a 2 s warm-up. The same model on both sides: Flask loads `ltk-eval --export`'s weights into "
             "bench/ltk_torch.py's module and answers with the same JSON. One LibTorch/PyTorch thread per model "
             f"(ltk-serve: {r.get('ltk_workers', 1)} model worker(s) of one thread; gunicorn: one per worker)."
             + (" The artifact rows serve `ltk-eval --quantize`'s artifact of the same run (accepted by its accuracy "
                "check on the run's validation split); Flask serves the float32 model in every row."
                if r.get("artifacts") else ""), "",
             "| model | server | connections | requests/s | vs Flask | p50 ms | p99 ms | errors | model thread busy |",
             "|---|---|---|---|---|---|---|---|---|"]
    flask = {(x["model"], x["connections"]): x["rps"] for x in r["rows"] if x["server"].startswith("Flask")}
    for x in r["rows"]:
        busy = f"{100 * x['model_busy_share']:.0f}%" if "model_busy_share" in x else ""
        ref = flask.get((x["model"], x["connections"]))
        ratio = f"{x['rps'] / ref:.2f}x" if ref and not x["server"].startswith("Flask") else ""
        lines.append(f"| {x['model']} | {x['server']} | {x['connections']} | {x['rps']:.0f} | {ratio} | "
                     f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['errors']} | {busy} |")
    lines += ["", "32 texts per request, 8 connections, against `ltk-predict --input` on a file of the same texts "
              f"({r.get('copies', COPIES)} copies, one thread, the whole process, the float32 run):", "",
              "| model | server | texts/s | vs Flask | p50 ms | p99 ms | ltk-predict texts/s | share |",
              "|---|---|---|---|---|---|---|---|"]
    flask = {x["model"]: x["texts_per_s"] for x in r["batched"] if x["server"].startswith("Flask")}
    for x in r["batched"]:
        ref = r["predict_file"][x["model"]]
        vs = flask.get(x["model"])
        ratio = f"{x['texts_per_s'] / vs:.2f}x" if vs and not x["server"].startswith("Flask") else ""
        lines.append(f"| {x['model']} | {x['server']} | {x['texts_per_s']:.0f} | {ratio} | {x['p50_ms']:.2f} | "
                     f"{x['p99_ms']:.2f} | {ref:.0f} | {100 * x['texts_per_s'] / ref:.0f}% |")
    m = r["rss"]
    lines += ["", f"Memory: ltk-serve ({m['model']}, dynamic batching) RSS {m['before_mb']:.1f} MB after its warm-up, "
              f"{m['after_mb']:.1f} MB after {m['requests']} more requests at 64 connections (after each 5 s round: "
              + ", ".join(f"{v:.1f}" for v in m["after_each_round_mb"]) + " MB)."]
    if out != "bench_serve":
        lines[0] = f"<!-- made by bench/bench_serve.py --out {out} -->"
        open(os.path.join(ROOT, "docs", out + ".md"), "w").write("\n".join(lines) + "\n")
        return
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    old = open(path).read() if os.path.exists(path) else ""
    head = old.split(MARK)[0].rstrip("\n")
    open(path, "w").write((head + "\n\n" if head else "") + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
