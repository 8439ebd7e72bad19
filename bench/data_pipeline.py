#!/usr/bin/python3
"""The data path of issue #3 (item 8) as a PyTorch user writes it in plain Python: read the
label<TAB>text file, lowercase, split words and punctuation with a regular expression, count,
build a vocabulary, map each sample to a LongTensor of ids. Prints one JSON object like
ltk-data-bench's (bench/data_bench.cpp). Run by /usr/bin/python3 (python3-torch)."""
import collections
import json
import os
import sys
import time

import torch

torch.set_num_threads(1)

# The regular expression and the RSS reading of bench/py_train.py (the training benchmark).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_train import TOKEN_RE, peak_rss_mb  # noqa: E402


def main():
    path = sys.argv[1]
    max_size = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    t0 = time.perf_counter()
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, _, text = line.rstrip("\n").partition("\t")
            labels.append(label)
            texts.append(text)
    t1 = time.perf_counter()
    counter = collections.Counter()
    for text in texts:
        counter.update(TOKEN_RE.findall(text.lower()))
    itos = ["<pad>", "<unk>"] + [w for w, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))][: max_size - 2]
    stoi = {w: i for i, w in enumerate(itos)}
    label_ids = {l: i for i, l in enumerate(sorted(set(labels)))}
    t2 = time.perf_counter()
    samples = []
    tokens = 0
    for text, label in zip(texts, labels):
        ids = [stoi.get(w, 1) for w in TOKEN_RE.findall(text.lower())]
        tokens += len(ids)
        samples.append((torch.tensor(ids, dtype=torch.long), label_ids[label]))
    t3 = time.perf_counter()
    nbytes = sum(len(t.encode("utf-8")) + len(l.encode("utf-8")) + 2 for t, l in zip(texts, labels))
    stored = sum(t.element_size() * t.nelement() for t, _ in samples)
    print(json.dumps({
        "impl": "python", "tokenizer": "re", "samples": len(samples), "tokens": tokens, "bytes": nbytes,
        "vocab": len(itos), "read_s": t1 - t0, "count_s": t2 - t1, "encode_s": t3 - t2,
        "total_s": t3 - t0, "mb_per_s": nbytes / 1e6 / (t3 - t0), "stored_bytes": stored,
        "id_bytes_per_token": stored / max(tokens, 1), "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
