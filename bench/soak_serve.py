#!/usr/bin/python3
"""The driver of scripts/soak_serve.sh: ltk-serve beside hostile connections, on loopback only.

One server (the fortunes_en bow run). Legitimate load: wrk from 127.0.0.1 at a steady rate (each
connection waits between its requests). Hostile load, from 127.0.0.2 and up (so that the server's
per-client cap applies to it and not to wrk): IDLE connections that connect and send nothing, and
SLOW ones that trickle a request head a line a second and never finish it (slowloris); each one the
server cuts is opened again at once, so the count stays up. A reload every few seconds. Sampled
every second: the server's RSS and open descriptors, the connections it holds (/metrics). Then
SIGTERM, and its exit code. Then --rounds short rounds of: start, storm, SIGTERM during the storm or
just after it, each with clients that check every answer they get is whole.
Prints one JSON object; writes docs/soak_serve.json and docs/soak_serve.md.
"""
import argparse
import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_serve as bs  # noqa: E402

ROOT = bs.ROOT


class Storm:
    """IDLE silent and SLOW slowloris connections, PER_ADDRESS from each of 127.0.0.2, .3, ..."""

    def __init__(self, port, idle, slow, per_address):
        self.port, self.per_address = port, per_address
        self.kinds = ["idle"] * idle + ["slow"] * slow
        self.socks = [None] * len(self.kinds)
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def open(self, i):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + i // self.per_address}", 0))
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return
        self.socks[i] = s
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)

    def drop(self, i):
        s = self.socks[i]
        if s is not None:
            self.sel.unregister(s)
            s.close()
            self.socks[i] = None

    def loop(self):
        for i in range(len(self.kinds)):
            self.open(i)
        started = set()
        line = 0
        next_line = time.time()
        while not self.stop.is_set():
            for key, ev in self.sel.select(timeout=0.1):
                i, s = key.data, key.fileobj
                if ev & selectors.EVENT_WRITE:  # connected: a slow one starts its head
                    self.sel.modify(s, selectors.EVENT_READ, i)
                    if self.kinds[i] == "slow" and i not in started:
                        started.add(i)
                        try:
                            s.send(b"POST /v1/predict HTTP/1.1\r\nHost: soak\r\n")
                        except OSError:
                            pass
                if ev & selectors.EVENT_READ:  # the server answered (408, 503) or closed it: open again
                    try:
                        s.recv(65536)
                    except OSError:
                        pass
                    self.drop(i)
                    started.discard(i)
                    self.reopened += 1
                    self.open(i)
            if time.time() >= next_line:
                line += 1
                next_line += 1
                for i, s in enumerate(self.socks):
                    if s is not None and self.kinds[i] == "slow" and i in started:
                        try:
                            s.send(f"X-Slow-{line}: 1\r\n".encode())
                        except OSError:
                            pass
        for i in range(len(self.socks)):
            self.drop(i)

    def start(self):
        self.thread.start()
        return self

    def end(self):
        self.stop.set()
        self.thread.join()


def proc_figures(pid):
    rss = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def metric(port, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", bs.get(port, "/metrics"), re.M)
    return float(m.group(1)) if m else None


def start_server(run, port, tmp, tag):
    log = open(os.path.join(tmp, f"serve-{tag}.log"), "w")
    proc = subprocess.Popen([os.path.join(bs.BIN, "ltk-serve"), "--run", run, "--port", str(port), "--threads", "1"],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL, stderr=log)
    return proc, log


def wrk_steady(port, connections, seconds, delay_ms, bodies):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
                          os.path.join(ROOT, "bench", "wrk_predict.lua"), f"http://127.0.0.1:{port}", "--", bodies],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, WRK_DELAY_MS=str(delay_ms))).stdout
    r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    r["rps"] = r["requests"] / r["seconds"]
    r["errors"] = sum(r[k] for k in ("errors_status", "errors_connect", "errors_read", "errors_write", "errors_timeout"))
    return r


def soak(a, run, bodies, body, tmp):
    proc, log = start_server(run, a.port, tmp, "soak")
    bs.wait_ready(a.port, proc, body)
    pid = proc.pid
    rss0, fds0 = proc_figures(pid)
    storm = Storm(a.port, a.idle, a.slow, a.per_address).start()
    samples, reloads = [], {"ok": 0, "failed": 0}
    stop = threading.Event()

    def watch():
        t0, next_reload = time.time(), time.time() + a.reload_every
        while not stop.is_set():
            rss, fds = proc_figures(pid)
            samples.append({"t": round(time.time() - t0, 1), "rss_mb": round(rss, 1), "fds": fds,
                            "connections": metric(a.port, "ltk_http_connections")})
            if time.time() >= next_reload:
                next_reload += a.reload_every
                req = urllib.request.Request(f"http://127.0.0.1:{a.port}/admin/reload", data=b"", method="POST")
                try:
                    urllib.request.urlopen(req, timeout=30).read()
                    reloads["ok"] += 1
                except OSError:
                    reloads["failed"] += 1
            stop.wait(1)

    watcher = threading.Thread(target=watch, daemon=True)
    time.sleep(3)  # the storm's connections open
    rss_storm, fds_storm = proc_figures(pid)
    held = metric(a.port, "ltk_http_connections")
    watcher.start()
    legit = wrk_steady(a.port, a.connections, a.seconds, a.delay_ms, bodies)
    stop.set()
    watcher.join()
    m = bs.get(a.port, "/metrics")
    counters = {k: float(v) for k, v in re.findall(r"^(ltk_http_\S+) (\S+)$", m, re.M)}
    storm.end()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    log.close()
    return {"legit": legit, "rss_before_mb": round(rss0, 1), "fds_before": fds0, "rss_storm_mb": round(rss_storm, 1),
            "fds_storm": fds_storm, "connections_storm": held, "samples": samples,
            "reloads": reloads, "storm_reopened": storm.reopened, "http_counters": counters, "exit_code": code}


def whole(r):
    head, sep, rest = r.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    return bool(sep) and m is not None and len(rest) == int(m.group(1)) and head.startswith(b"HTTP/1.1 200")


def exchange(port, request):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            return got
    except OSError:
        return b""


def sigterm_round(a, run, body, tmp, k):
    during = k % 2 == 0
    proc, log = start_server(run, a.port + 1, tmp, f"round{k}")
    bs.wait_ready(a.port + 1, proc, body)
    storm = Storm(a.port + 1, a.idle, a.slow, a.per_address).start()
    request = (f"POST /v1/predict HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nContent-Length: {len(body.encode())}"
               f"\r\n\r\n{body}").encode()
    counts = {"answered": 0, "broken": 0, "lost_before_signal": 0}
    signalled, stop = threading.Event(), threading.Event()

    def client():
        while not stop.is_set():
            before = not signalled.is_set()
            got = exchange(a.port + 1, request)
            if not got:
                if before and not signalled.is_set():
                    counts["lost_before_signal"] += 1
                time.sleep(0.02)
            elif whole(got):
                counts["answered"] += 1
            else:
                counts["broken"] += 1

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(2)
    if not during:
        storm.end()
        time.sleep(1)
    t0 = time.time()
    signalled.set()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed after 60 s"
    drain_s = time.time() - t0
    stop.set()
    for t in clients:
        t.join()
    if during:
        storm.end()
    log.close()
    return dict(counts, when="during" if during else "after", exit_code=code, drain_s=round(drain_s, 2))


def write_docs(r):
    s = r["soak"]
    rss = [x["rss_mb"] for x in s["samples"]]
    fds = [x["fds"] for x in s["samples"]]
    conns = [x["connections"] for x in s["samples"] if x["connections"] is not None]
    l = s["legit"]
    rounds = r["rounds"]
    ok_rounds = sum(1 for x in rounds if x["exit_code"] == 0 and x["broken"] == 0 and x["lost_before_signal"] == 0)
    lines = [
        "# ltk-serve under hostile load (scripts/soak_serve.sh)",
        "",
        f"Made by `scripts/soak_serve.sh` on {r['date']}: {r['machine']}, loopback only. The fortunes_en bow run, "
        f"`ltk-serve` with its defaults and `--threads 1` (so a model worker per core). Legitimate clients: wrk from 127.0.0.1, {r['args']['connections']} "
        f"connections each waiting {r['args']['delay_ms']} ms between requests (one text each), for {r['args']['seconds']} s. "
        f"Beside them, from 127.0.0.2 and up ({r['args']['per_address']} per address): {r['args']['idle']} idle connections "
        f"and {r['args']['slow']} slowloris ones (a header line a second, never finished), each reopened as soon as the "
        f"server cuts it; a reload every {r['args']['reload_every']} s.",
        "",
        "| legitimate requests | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        f"| {l['requests']} | {l['rps']:.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | {l['errors']} |",
        "",
        f"Connections held by the server (sampled each second): {min(conns):.0f} to {max(conns):.0f}. "
        f"RSS {s['rss_before_mb']} MB before the storm, {s['rss_storm_mb']} MB once its {s['connections_storm']:.0f} "
        f"connections were open (**{s['rss_storm_mb'] - s['rss_before_mb']:+.1f} MB** for them), {min(rss)} to "
        f"{max(rss)} MB over the soak with its reloads (each loads a model next to the one served), {rss[-1]} MB "
        f"at the end; open descriptors {s['fds_before']} before, {min(fds)} to {max(fds)} during. "
        f"Reloads: {s['reloads']['ok']} ok, {s['reloads']['failed']} failed. "
        f"Connections the storm had to reopen (cut by the server): {s['storm_reopened']}. "
        f"Exit code after SIGTERM: {s['exit_code']}.",
        "",
        "The server's own counters at the end: " + ", ".join(f"`{k}` {v:.0f}" for k, v in s["http_counters"].items()) + ".",
        "",
        f"SIGTERM rounds (a fresh server, the same storm, 4 clients checking that every answer is whole; "
        f"SIGTERM during the storm or 1 s after it): **{ok_rounds} of {len(rounds)}** exited 0 with no broken answer "
        f"and no request lost before the signal.",
        "",
        "| round | SIGTERM | exit | drain s | answered | broken | lost before the signal |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(rounds):
        lines.append(f"| {i + 1} | {x['when']} | {x['exit_code']} | {x['drain_s']} | {x['answered']} | {x['broken']} | "
                     f"{x['lost_before_signal']} |")
    lines += ["", "RSS and descriptors over time: `docs/soak_serve.json` (`soak.samples`)."]
    with open(os.path.join(ROOT, "docs", "soak_serve.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(ROOT, "docs", "soak_serve.json"), "w") as f:
        json.dump(r, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.path.join(ROOT, "runs", "fortunes_bow"))
    ap.add_argument("--seconds", type=int, default=180)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--delay-ms", type=int, default=10)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--per-address", type=int, default=200)
    ap.add_argument("--reload-every", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--port", type=int, default=18600)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="soak-serve.")
    texts = bs.texts_of(os.path.join(ROOT, "data", "fortunes_en", "test.tsv"))
    bodies = os.path.join(tmp, "single.jsonl")
    bs.write_bodies(bodies, texts, 1)
    body = json.dumps({"texts": texts[:2]})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    r = {"date": time.strftime("%Y-%m-%d"), "machine": f"{cpu}, {os.cpu_count()} cores", "args": vars(a)}
    r["soak"] = soak(a, a.run, bodies, body, tmp)
    print(json.dumps({k: v for k, v in r["soak"].items() if k != "samples"}), file=sys.stderr)
    r["rounds"] = []
    for k in range(a.rounds):
        r["rounds"].append(sigterm_round(a, a.run, body, tmp, k))
        print(json.dumps(r["rounds"][-1]), file=sys.stderr)
    write_docs(r)
    print(json.dumps({k: v for k, v in r.items() if k != "soak"} | {"soak": {k: v for k, v in r["soak"].items()
                                                                              if k != "samples"}}))


if __name__ == "__main__":
    main()
