"""docs/stress.md from ltk-eval --stress --json lines (with a "run" key each) on stdin."""
import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]
names = [p["name"] for p in rows[0]["stress"]["perturbations"]]
print("# Stress tests of the shipped configs\n")
print("Made by `scripts/bench_stress.sh` (`ltk-eval --stress`, seed 13) on each run's test split, one")
print("thread. Each cell: accuracy under the perturbation and, in brackets, the share of all predictions")
print("that flip; `-`: the perturbation changes no text of that corpus.\n")
print("| run | clean | " + " | ".join(names) + " |")
print("|---|---|" + "---|" * len(names))
for r in rows:
    cells = []
    for p in r["stress"]["perturbations"]:
        cells.append("-" if p["changed"] == 0 else "%.3f (%.0f%%)" % (p["value"], 100 * p["flip_rate"]))
    print("| %s | %.3f | %s |" % (r["run"], r["accuracy"], " | ".join(cells)))
