"""The compute side of the data-parallel projection in docs/bench_dist.md: one training step
(forward, backward, AdamW) of a BERT-base-sized encoder (12 layers, 768 wide, 12 heads, 3072 feed
forward, 30522-token embedding: ~110M parameters) on this CPU, with Debian's PyTorch, at
--threads threads, batch --batch x --seq tokens. Prints seconds per step and the parameter count."""
import argparse
import time

import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--steps", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(30522, 768)
        self.pos = nn.Embedding(512, 768)
        layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.1, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 12)
        self.head = nn.Linear(768, 2)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.head(self.enc(x)[:, 0])


m = Bert()
n = sum(p.numel() for p in m.parameters())
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
ids = torch.randint(0, 30522, (a.batch, a.seq))
y = torch.randint(0, 2, (a.batch,))
times = []
for s in range(a.steps + 1):
    t = time.time()
    loss = nn.functional.cross_entropy(m(ids), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.time() - t)
print(f"params {n} step_s {min(times[1:]):.3f} batch {a.batch} seq {a.seq} threads {a.threads}")
