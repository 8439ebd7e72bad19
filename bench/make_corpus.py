#!/usr/bin/env python3
"""Makes a large TSV corpus from real text by repeating and shuffling the lines of one or more
label<TAB>text files until the output reaches --mb megabytes (or --times copies). Seeded, so a
benchmark can be rerun on the same bytes. Standard library only."""
import argparse
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sources", nargs="+", help="label<TAB>text files")
    ap.add_argument("--out", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--mb", type=float, help="stop at this many megabytes (10^6 bytes)")
    g.add_argument("--times", type=int, help="this many shuffled copies of the sources")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    lines = []
    for path in a.sources:
        with open(path, encoding="utf-8") as f:
            lines += [l if l.endswith("\n") else l + "\n" for l in f if l.strip()]
    if not lines:
        sys.exit(f"make_corpus: no lines in {a.sources}")
    rng = random.Random(a.seed)
    size = sum(len(l.encode("utf-8")) for l in lines)
    copies = a.times if a.times else max(1, -(-int(a.mb * 1e6) // size))
    written = 0
    with open(a.out, "w", encoding="utf-8") as out:
        for _ in range(copies):
            rng.shuffle(lines)
            out.writelines(lines)
            written += size
    print(f"make_corpus: {a.out}: {copies} copies of {len(lines)} lines, {written / 1e6:.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
