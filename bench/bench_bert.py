"""The Python side of scripts/bench_bert.sh: fine-tuning steps of the same BERT (bench/ltk_torch.py's
BertRef: nn.TransformerEncoderLayer, post-LN, exactly ltk's computation) on the same TSV, in the
same batch order (no shuffling, no length bucketing on either side), and an inference pass.
Prints one JSON line: samples/s, tokens/s, peak RSS.
Usage: python3 bench_bert.py DATA.tsv VOCAB.txt MAX_LEN BATCH THREADS"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import ltk_torch  # noqa: E402


def main():
    data, vocab_path, max_len, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(13)
    vocab = {t: i for i, t in enumerate(open(vocab_path, encoding="utf-8").read().split("\n")) if t}
    labels, samples = {}, []
    for line in open(data, encoding="utf-8"):
        label, text = line.rstrip("\n").split("\t", 1)
        ids = [vocab["[CLS]"]] + [vocab.get(w, vocab["[UNK]"]) for w in text.split()][: max_len - 2] + [vocab["[SEP]"]]
        samples.append((labels.setdefault(label, len(labels)), ids))
    model = ltk_torch.BertRef(len(vocab), len(labels), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                              intermediate_size=1024, max_position_embeddings=max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def batches():
        for s in range(0, len(samples), batch):
            part = samples[s:s + batch]
            T = max(len(ids) for _, ids in part)
            x = torch.zeros(len(part), T, dtype=torch.long)
            for b, (_, ids) in enumerate(part):
                x[b, :len(ids)] = torch.tensor(ids)
            lengths = torch.tensor([len(ids) for _, ids in part])
            mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
            yield x, lengths, mask, torch.tensor([y for y, _ in part])

    tokens = sum(len(ids) for _, ids in samples)
    model.train()
    t0 = time.perf_counter()
    for x, lengths, mask, y in batches():
        loss = F.cross_entropy(model(x, lengths, mask), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, lengths, mask, y in batches():
            model(x, lengths, mask).softmax(-1)
    infer_s = time.perf_counter() - t0
    print(json.dumps({"samples": len(samples), "tokens": tokens, "train_s": train_s,
                      "train_samples_per_s": len(samples) / train_s, "train_tokens_per_s": tokens / train_s,
                      "infer_samples_per_s": len(samples) / infer_s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
