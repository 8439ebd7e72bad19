"""The Python anchor of scripts/bench_serve.sh: the model a Python team deploys, behind Flask under
gunicorn. It loads what `ltk-eval --export DIR` writes (weights.pt, model.json, vocab.txt,
labels.txt) into bench/ltk_torch.py's nn.Module (ltk's architecture, checked equal by the parity
tests), tokenises with the regular expression of bench/py_train.py (a BERT run: BERT's basic tokenisation
and greedy WordPiece over its vocabulary, [CLS]/[SEP] around), and answers POST /v1/predict
{"texts": [...]} with ltk-serve's JSON ({"predictions": [{"label", "score", "scores"}]}).

    LTK_EXPORT=DIR LTK_CONFIG=RUN/config.json gunicorn -w 5 -b 127.0.0.1:PORT --chdir bench serve_flask:app
"""
import json
import os
import re
import sys
import unicodedata

import torch
from flask import Flask, jsonify, request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ltk_torch  # noqa: E402

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
torch.set_num_threads(int(os.environ.get("LTK_TORCH_THREADS", "1")))

export = os.environ["LTK_EXPORT"]
spec = json.load(open(os.path.join(export, "model.json")))
itos = [line.rstrip("\n").split("\t")[0] for line in open(os.path.join(export, "vocab.txt"), encoding="utf-8")]
stoi = {t: i for i, t in enumerate(itos)}
labels = [line.rstrip("\n") for line in open(os.path.join(export, "labels.txt"), encoding="utf-8") if line.strip()]
# The run's data options (its config.json): lowercasing and truncation, as ltk applies them.
data = json.load(open(os.environ["LTK_CONFIG"]))["data"] if "LTK_CONFIG" in os.environ else {}
lowercase = data.get("tokenizer", {}).get("lowercase", True)
max_len = data.get("max_len", 0) or 0
model = ltk_torch.build_model(spec["model"], spec["vocab_size"], spec["num_outputs"])
model.load_state_dict(torch.load(os.path.join(export, "weights.pt")))
model.eval()

app = Flask(__name__)


def _is_punct(ch):
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def bert_words(text):
    """BERT's basic tokenisation: control characters dropped, CJK ideographs and punctuation split
    off, lowercased with accents stripped (when the run lowercases)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
            continue
        out.append(f" {ch} " if _is_cjk(cp) else " " if ch.isspace() else ch)
    words = []
    for w in "".join(out).split():
        if lowercase:
            w = "".join(c for c in unicodedata.normalize("NFD", w.lower()) if unicodedata.category(c) != "Mn")
        cur = ""
        for ch in w:
            if _is_punct(ch):
                if cur:
                    words.append(cur)
                words.append(ch)
                cur = ""
            else:
                cur += ch
        if cur:
            words.append(cur)
    return words


def wordpiece_ids(text):
    """Greedy longest-match WordPiece over the run's vocabulary ([UNK] for a word it cannot cover)."""
    ids = []
    for w in bert_words(text):
        if len(w) > 100:
            ids.append(unk)
            continue
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            while end > start and (("##" if start else "") + w[start:end]) not in stoi:
                end -= 1
            if end == start:
                pieces = [unk]
                break
            pieces.append(stoi[("##" if start else "") + w[start:end]])
            start = end
        ids.extend(pieces)
    return ids


wordpiece = data.get("tokenizer", {}).get("type") == "wordpiece"
specials = data.get("special_tokens", False)
unk = stoi.get("[UNK]", 1)


def encode(text):
    if wordpiece:
        ids = wordpiece_ids(text)
    else:
        ids = [stoi.get(t, 1) for t in TOKEN_RE.findall(text.lower() if lowercase else text)]
    if specials:  # [CLS] text [SEP], max_len counting them
        ids = [stoi["[CLS]"]] + (ids[:max_len - 2] if max_len > 0 else ids) + [stoi["[SEP]"]]
        return ids
    return ids[:max_len] if max_len > 0 else ids


@app.post("/v1/predict")
def predict():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("texts"), list):
        return jsonify(error="expected {\"texts\": [...]}"), 422
    seqs = [torch.tensor(encode(t) or [1], dtype=torch.long) for t in body["texts"]]
    lengths = torch.tensor([len(s) for s in seqs])
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=0)
    mask = torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    with torch.inference_mode():
        probs = model(ids, lengths, mask).softmax(-1)
    out = []
    for row in probs.tolist():
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"label": labels[best], "score": round(row[best], 6),
                    "scores": {labels[c]: round(p, 6) for c, p in enumerate(row)}})
    return jsonify(predictions=out)
