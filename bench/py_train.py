#!/usr/bin/python3
"""The PyTorch-in-Python side of scripts/bench.sh: the same job as `ltk-train --config F`,
written the way a PyTorch user writes it. A Dataset of LongTensors, a DataLoader whose
collate_fn pads with pad_sequence, the nn.Module from bench/ltk_torch.py (ltk's architectures,
checked equal by the parity tests), the five-step loop, evaluation under torch.no_grad.

    /usr/bin/python3 bench/py_train.py RESOLVED_CONFIG.json [--threads N]

RESOLVED_CONFIG is `ltk-train --config F --dump-config` output, so both sides read the same
data, tokenizer options, vocabulary limits, model, optimiser, schedule, batch size and epochs.
Tokenisation is a regular expression (words or single punctuation marks, lowercased), the
Python equivalent of ltk's basic tokenizer; it differs only on rare Unicode characters.
Prints one JSON object: throughput, the validation curve, test accuracy, peak RSS."""
import argparse
import collections
import copy
import json
import os
import re
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ltk_torch  # noqa: E402

# Words (letters, digits, underscore) or a single non-space, non-word character: the usual
# stand-in for a basic tokenizer in Python code.
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def read_tsv(path):
    labels, texts = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, _, text = line.partition("\t")
            labels.append(label.strip())
            texts.append(text.strip())
    return labels, texts


class TextDataset(Dataset):
    def __init__(self, texts, labels, stoi, label_ids, max_len, lowercase):
        self.samples = []
        for text, label in zip(texts, labels):
            tokens = TOKEN_RE.findall(text.lower() if lowercase else text)
            ids = [stoi.get(t, 1) for t in tokens]
            if max_len > 0:
                ids = ids[:max_len]
            self.samples.append((torch.tensor(ids, dtype=torch.long), label_ids[label]))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def collate(batch):
    seqs = [ids for ids, _ in batch]
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = pad_sequence(seqs, batch_first=True, padding_value=0)
    if ids.size(1) == 0:
        ids = torch.zeros(len(seqs), 1, dtype=torch.long)
    mask = torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    return ids, lengths, mask, torch.tensor([y for _, y in batch], dtype=torch.long)


def evaluate(model, loader):
    model.eval()
    correct = seen = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for ids, lengths, mask, labels in loader:
            correct += (model(ids, lengths, mask).argmax(1) == labels).sum().item()
            seen += len(labels)
    seconds = time.perf_counter() - t0
    model.train()
    return correct / max(seen, 1), seen / seconds


def lr_at(step, base, sched, total):
    warmup = sched.get("warmup_steps", 0)
    if step < warmup:
        return base * (step + 1) / warmup
    after, span = step - warmup, max(total - warmup, 1)
    if sched["type"] == "linear":
        return base * min(max((span - after) / span, 0.0), 1.0)
    if sched["type"] == "constant":
        return base
    raise SystemExit(f"py_train.py: scheduler {sched['type']} is not in the benchmark")


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return -1.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    c = json.load(open(a.config))
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(c["seed"])
    d, tr = c["data"], c["trainer"]
    if d.get("truncation", "head") != "head" or c["task"]["type"] != "multiclass":
        raise SystemExit("py_train.py: the benchmark covers multiclass tasks with head truncation")
    t_start = time.perf_counter()

    # Data: the vocabulary and labels from the training split.
    train_labels, train_texts = read_tsv(d["train"])
    lower = d["tokenizer"].get("lowercase", True)
    counter = collections.Counter()
    for text in train_texts:
        counter.update(TOKEN_RE.findall(text.lower() if lower else text))
    words = sorted((w for w, n in counter.items() if n >= d["vocab"]["min_freq"]), key=lambda w: (-counter[w], w))
    max_size = d["vocab"]["max_size"]
    itos = ["<pad>", "<unk>"] + (words[: max_size - 2] if max_size > 0 else words)
    stoi = {w: i for i, w in enumerate(itos)}
    label_ids = {l: i for i, l in enumerate(sorted(set(train_labels)))}
    max_len = d.get("max_len", 0)
    train = TextDataset(train_texts, train_labels, stoi, label_ids, max_len, lower)
    valid = TextDataset(*reversed(read_tsv(d["valid"])), stoi, label_ids, max_len, lower)
    test = TextDataset(*reversed(read_tsv(d["test"])), stoi, label_ids, max_len, lower)
    del train_texts, train_labels
    gen = torch.Generator().manual_seed(c["seed"])
    train_loader = DataLoader(train, batch_size=tr["batch_size"], shuffle=True, collate_fn=collate, generator=gen,
                              drop_last=tr.get("drop_last", False))
    valid_loader = DataLoader(valid, batch_size=tr["eval_batch_size"], collate_fn=collate)
    test_loader = DataLoader(test, batch_size=tr["eval_batch_size"], collate_fn=collate)
    data_seconds = time.perf_counter() - t_start

    model = ltk_torch.build_model(c["model"], len(itos), len(label_ids))
    optimizer = ltk_torch.build_optimizer(model, c["optimizer"])
    total_steps = len(train_loader) * tr["epochs"]
    clip = tr.get("clip_norm", 0.0)
    curve, eval_rates = [], []
    best_acc, best_state, step, samples = -1.0, None, 0, 0
    train_seconds = 0.0
    loop_start = time.perf_counter()
    model.train()
    for epoch in range(1, tr["epochs"] + 1):
        t_epoch = time.perf_counter()
        for ids, lengths, mask, labels in train_loader:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, c["optimizer"]["lr"], c["scheduler"], total_steps)
            loss = F.cross_entropy(model(ids, lengths, mask), labels,
                                   label_smoothing=c["task"].get("label_smoothing", 0.0))  # 1. forward, 2. loss
            optimizer.zero_grad()  # 3.
            loss.backward()  # 4.
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()  # 5.
            step += 1
            samples += len(labels)
        train_seconds += time.perf_counter() - t_epoch
        acc, rate = evaluate(model, valid_loader)
        eval_rates.append(rate)
        curve.append([time.perf_counter() - loop_start, acc])
        if acc > best_acc:
            best_acc, best_state = acc, copy.deepcopy(model.state_dict())
        print(f"[python] epoch {epoch} valid accuracy {acc:.4f}", file=sys.stderr)
    loop_seconds = time.perf_counter() - loop_start
    model.load_state_dict(best_state)
    test_acc, test_rate = evaluate(model, test_loader)
    # Warm evaluation throughput: the best of three passes over the validation split.
    warm_eval = max(evaluate(model, valid_loader)[1] for _ in range(3))
    print(json.dumps({
        "impl": "python", "threads": torch.get_num_threads(), "vocab": len(itos), "steps": step,
        "data_seconds": data_seconds, "loop_seconds": loop_seconds, "train_seconds": train_seconds,
        "train_samples_per_s": samples / train_seconds, "eval_samples_per_s": warm_eval,
        "eval_samples_per_s_epochs": eval_rates,
        "test_eval_samples_per_s": test_rate, "curve": curve, "best_valid_accuracy": best_acc,
        "test_accuracy": test_acc, "peak_rss_mb": peak_rss_mb(),
        "wall_seconds": time.perf_counter() - t_start, "blas_core": ltk_torch.openblas_core(),
    }))


if __name__ == "__main__":
    main()
