"""ltk's models, tasks and optimisers written in plain PyTorch (Python).

The same architectures, parameter names and computations as lib/ltk/models and lib/ltk/train:
the parity tests (tests/parity/check_parity.py) check that LibTorch-in-ltk and PyTorch-in-Python
agree on outputs, losses, gradients and one optimiser step, and the benchmarks (bench/) use
these modules as "the same pipeline as a PyTorch user writes it". A run's weights load with
    model.load_state_dict(torch.load("runs/NAME/checkpoints/best.pt"))
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

HASH_PRIME = 116049371


def hashed_ngrams(ids, mask, n, vocab_size, buckets):
    T = ids.size(1)
    if T < n:
        return ids[:, :0], mask[:, :0]
    h = ids[:, : T - n + 1].remainder(buckets)
    for k in range(1, n):
        h = (h * HASH_PRIME + ids[:, k : k + T - n + 1]).remainder(buckets)
    return h + vocab_size, mask[:, n - 1 :]


class Bow(nn.Module):
    def __init__(self, vocab_size, num_outputs, embed_dim=128, ngrams=1, buckets=100000, hidden_dim=0,
                 dropout=0.0, sparse=False, **_):
        super().__init__()
        self.vocab_size, self.ngrams, self.buckets = vocab_size, ngrams, buckets
        rows = vocab_size + (buckets if ngrams > 1 else 0)
        self.embedding = nn.EmbeddingBag(rows, embed_dim, mode="mean", sparse=sparse)
        self.hidden = nn.Linear(embed_dim, hidden_dim) if hidden_dim > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim if hidden_dim > 0 else embed_dim, num_outputs)

    def forward(self, ids, lengths, mask):
        all_ids, all_mask = [ids], [mask]
        for n in range(2, self.ngrams + 1):
            h, valid = hashed_ngrams(ids, mask, n, self.vocab_size, self.buckets)
            all_ids.append(h)
            all_mask.append(valid)
        ids, mask = torch.cat(all_ids, 1), torch.cat(all_mask, 1)
        counts = mask.sum(1)
        pooled = self.embedding(ids[mask], counts.cumsum(0) - counts)
        if self.hidden is not None:
            pooled = torch.relu(self.hidden(pooled))
        return self.output(self.dropout(pooled))


class TextCnn(nn.Module):
    def __init__(self, vocab_size, num_outputs, embed_dim=128, kernel_sizes=(3, 4, 5), channels=100, dropout=0.5, **_):
        super().__init__()
        self.kernel_sizes = list(kernel_sizes)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv1d(embed_dim, channels, k) for k in self.kernel_sizes])
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(channels * len(self.kernel_sizes), num_outputs)

    def forward(self, ids, lengths, mask):
        x = self.embedding(ids)
        x = x * mask.unsqueeze(2).to(x.dtype)
        kmax = max(self.kernel_sizes)
        if x.size(1) < kmax:
            x = F.pad(x, (0, 0, 0, kmax - x.size(1)))
        x = x.transpose(1, 2)
        pooled = []
        for conv, k in zip(self.convs, self.kernel_sizes):
            y = torch.relu(conv(x))
            valid = (lengths - k + 1).clamp(min=1)
            keep = torch.arange(y.size(2), device=y.device).unsqueeze(0) < valid.unsqueeze(1)
            pooled.append(y.masked_fill(~keep.unsqueeze(1), float("-inf")).max(2).values)
        return self.output(self.dropout(torch.cat(pooled, 1)))


class Rnn(nn.Module):
    def __init__(self, vocab_size, num_outputs, embed_dim=128, cell="lstm", hidden_dim=128, layers=1,
                 bidirectional=True, pooling="last", dropout=0.0, **_):
        super().__init__()
        self.pooling, self.layers, self.hidden_dim = pooling, layers, hidden_dim
        self.dirs = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        kind = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = kind(embed_dim, hidden_dim, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                        dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim * self.dirs, num_outputs)

    def forward(self, ids, lengths, mask):
        x = self.embedding(ids)
        lens = lengths.clamp(min=1).cpu()
        out, h = self.rnn(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
        if isinstance(h, tuple):
            h = h[0]
        B = ids.size(0)
        if self.pooling == "last":
            pooled = h.view(self.layers, self.dirs, B, self.hidden_dim)[-1].transpose(0, 1).reshape(B, -1)
        else:
            padded, _ = pad_packed_sequence(out, batch_first=True)
            real = (torch.arange(padded.size(1)).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(2).to(padded.device)
            if self.pooling == "max":
                pooled = padded.masked_fill(~real, float("-inf")).max(1).values
            else:
                pooled = (padded * real.to(padded.dtype)).sum(1) / lens.to(padded.device).unsqueeze(1).to(padded.dtype)
        return self.output(self.dropout(pooled))


class Transformer(nn.Module):
    def __init__(self, vocab_size, num_outputs, embed_dim=128, heads=4, layers=2, ff_dim=256, dropout=0.1,
                 norm="post", activation="relu", pooling="cls", max_positions=512, **_):
        super().__init__()
        self.use_cls = pooling == "cls"
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.positions = nn.Embedding(max_positions + (1 if self.use_cls else 0), embed_dim)
        if self.use_cls:
            self.cls = nn.Parameter(torch.empty(embed_dim).normal_(0, 0.02))
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(embed_dim, heads, ff_dim, dropout, activation=activation,
                                       norm_first=(norm == "pre")) for _ in range(layers)])
        self.norm = nn.LayerNorm(embed_dim) if norm == "pre" else None
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(embed_dim, num_outputs)

    def forward(self, ids, lengths, mask):
        B = ids.size(0)
        x, real = self.embedding(ids), mask
        if self.use_cls:
            x = torch.cat([self.cls.view(1, 1, -1).expand(B, 1, -1), x], 1)
            real = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], 1)
        T = x.size(1)
        x = self.dropout(x + self.positions(torch.arange(T, device=x.device)).unsqueeze(0))
        attendable = real.clone()
        attendable[:, 0] = True
        x = x.transpose(0, 1)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~attendable)
        if self.norm is not None:
            x = self.norm(x)
        x = x.transpose(0, 1)
        if self.use_cls:
            pooled = x[:, 0]
        else:
            w = real.unsqueeze(2).to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.output(self.dropout(pooled))


class BertRef(nn.Module):
    """BERT + Linear (Hugging Face's BertForSequenceClassification) from PyTorch's own layers:
    nn.Embedding, nn.LayerNorm and nn.TransformerEncoderLayer(norm_first=False). It loads and
    reports tensors under Hugging Face's names (hf_tensors), which are ltk's."""

    def __init__(self, vocab_size, num_outputs, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=1024, hidden_act="gelu", layer_norm_eps=1e-12, max_position_embeddings=512,
                 type_vocab_size=2, pad_token_id=0, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 classifier_dropout=-1, pooling="cls", mlm=False, **_):
        super().__init__()
        H = hidden_size
        self.pooling = pooling
        self.mlm = mlm
        self.act = hidden_act
        self.word = nn.Embedding(vocab_size, H, padding_idx=pad_token_id)
        self.position = nn.Embedding(max_position_embeddings, H)
        self.token_type = nn.Embedding(type_vocab_size, H)
        self.norm = nn.LayerNorm(H, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        act = {"gelu": "gelu", "relu": "relu",
               "gelu_new": lambda x: torch.nn.functional.gelu(x, approximate="tanh")}[hidden_act]
        # nn.TransformerEncoderLayer has one dropout probability; parity runs with both at 0.
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(H, num_attention_heads, intermediate_size, hidden_dropout_prob, activation=act,
                                       layer_norm_eps=layer_norm_eps, batch_first=True, norm_first=False)
            for _ in range(num_hidden_layers)])
        if mlm:  # BertForMaskedLM's head: transform, then the decoder tied to the word embeddings
            self.transform = nn.Linear(H, H)
            self.transform_norm = nn.LayerNorm(H, eps=layer_norm_eps)
            self.lm_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.pooler = nn.Linear(H, H)
            self.head_dropout = nn.Dropout(classifier_dropout if classifier_dropout >= 0 else hidden_dropout_prob)
            self.classifier = nn.Linear(H, num_outputs)

    def _map(self):
        """(Hugging Face name, tensor getter, setter) for every ltk tensor."""
        out = []

        def plain(name, t):
            out.append((name, lambda t=t: t, lambda v, t=t: t.copy_(v)))

        plain("bert.embeddings.word_embeddings.weight", self.word.weight)
        plain("bert.embeddings.position_embeddings.weight", self.position.weight)
        plain("bert.embeddings.token_type_embeddings.weight", self.token_type.weight)
        plain("bert.embeddings.LayerNorm.weight", self.norm.weight)
        plain("bert.embeddings.LayerNorm.bias", self.norm.bias)
        for i, l in enumerate(self.layers):
            p = f"bert.encoder.layer.{i}."
            H = l.self_attn.embed_dim
            for j, part in enumerate(["query", "key", "value"]):
                for kind, t in (("weight", l.self_attn.in_proj_weight), ("bias", l.self_attn.in_proj_bias)):
                    out.append((p + f"attention.self.{part}.{kind}", lambda t=t, j=j: t[j * H:(j + 1) * H],
                                lambda v, t=t, j=j: t[j * H:(j + 1) * H].copy_(v)))
            for name, mod in (("attention.output.dense", l.self_attn.out_proj), ("attention.output.LayerNorm", l.norm1),
                              ("intermediate.dense", l.linear1), ("output.dense", l.linear2),
                              ("output.LayerNorm", l.norm2)):
                plain(p + name + ".weight", mod.weight)
                plain(p + name + ".bias", mod.bias)
        heads = ((("cls.predictions.transform.dense", self.transform),
                  ("cls.predictions.transform.LayerNorm", self.transform_norm)) if self.mlm else
                 (("bert.pooler.dense", self.pooler), ("classifier", self.classifier)))
        for name, mod in heads:
            plain(name + ".weight", mod.weight)
            plain(name + ".bias", mod.bias)
        if self.mlm:
            plain("cls.predictions.bias", self.lm_bias)
        return out

    def load_state_dict(self, state, strict=True):
        names = set()
        with torch.no_grad():
            for name, _, put in self._map():
                put(state[name])
                names.add(name)
        extra = set(state) - names
        if strict and extra:
            raise KeyError(f"unexpected tensors {sorted(extra)}")

    def hf_tensors(self, grad=False):
        """Hugging Face name -> tensor (or its gradient slice)."""
        out = {}
        for name, get, _ in self._map():
            t = get()
            if grad:
                g = t.grad if t._base is None else t._base.grad
                if g is not None and t._base is not None:  # a slice of in_proj_*: that slice of its gradient
                    g = g.as_strided(t.size(), t.stride(), t.storage_offset())
                out[name] = g
            else:
                out[name] = t.detach()
        return out

    def forward(self, ids, lengths, mask, token_types=None, mlm_targets=None):
        B, T = ids.shape
        if token_types is None:
            token_types = torch.zeros_like(ids)
        x = self.word(ids) + self.token_type(token_types) + self.position(torch.arange(T, device=ids.device))
        x = self.dropout(self.norm(x))
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        if self.mlm:  # logits of the masked positions only
            h = x[mlm_targets != -100]
            act = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda t: F.gelu(t, approximate="tanh")}[self.act]
            h = self.transform_norm(act(self.transform(h)))
            return F.linear(h, self.word.weight, self.lm_bias)
        if self.pooling == "cls":
            pooled = torch.tanh(self.pooler(x[:, 0]))
        else:
            w = mask.unsqueeze(2).to(x.dtype)
            pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.classifier(self.head_dropout(pooled))


MODELS = {"bow": Bow, "textcnn": TextCnn, "rnn": Rnn, "transformer": Transformer, "bert": BertRef}


def build_model(options, vocab_size, num_outputs):
    """`options` is a resolved ltk model section (config.json's "model")."""
    return MODELS[options["type"]](vocab_size, num_outputs,
                                   **{k: v for k, v in options.items() if k not in ("type", "vocab_size")})


def task_loss(task, outputs, targets, class_weights=None):
    """ltk's task losses (task is a resolved config.json "task" section)."""
    r = task["reduction"]
    w = torch.tensor(class_weights, dtype=outputs.dtype) if class_weights else None
    kind = task["type"]
    if kind == "mlm":  # cross-entropy on the masked positions (targets -100 elsewhere)
        return F.cross_entropy(outputs, targets[targets != -100], reduction=r)
    if kind == "multiclass":
        return F.cross_entropy(outputs, targets, weight=w, label_smoothing=task["label_smoothing"], reduction=r)
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets, pos_weight=w, reduction=r)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(outputs, targets, pos_weight=w, reduction=r)
    out = outputs.squeeze(1)
    if task["loss"] == "l1":
        return F.l1_loss(out, targets, reduction=r)
    if task["loss"] == "huber":
        return F.huber_loss(out, targets, reduction=r, delta=task["huber_delta"])
    return F.mse_loss(out, targets, reduction=r)


def build_optimizer(model, o):
    """ltk's optimisers (o is a resolved config.json "optimizer" section)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if o["no_decay_bias_norm"]:
        groups = [{"params": [p for p in params if p.dim() > 1]},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": params}]
    t, lr, wd = o["type"], o["lr"], o["weight_decay"]
    if t == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=wd)
    if t == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=wd)
    if t == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(o["beta1"], o["beta2"]), eps=o["eps"], weight_decay=wd)
    if t == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, lr_decay=o["lr_decay"], eps=o["eps"], weight_decay=wd)
    raise ValueError(t)


def openblas_core():
    """The kernel family the OpenBLAS under this torch runs ("Haswell", ...), or "" without OpenBLAS."""
    import ctypes
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "blas" in os.path.basename(path) and path.startswith("/"):
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                return lib.openblas_get_corename().decode()
            except (OSError, AttributeError):
                continue
    return ""
