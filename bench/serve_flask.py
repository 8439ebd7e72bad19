"""The Python anchor of scripts/bench_serve.sh: the model a Python team deploys, behind Flask under
gunicorn. It loads what `ltk-eval --export DIR` writes (weights.pt, model.json, vocab.txt,
labels.txt) into bench/ltk_torch.py's nn.Module (ltk's architecture, checked equal by the parity
tests), tokenises with the regular expression of bench/py_train.py, and answers POST /v1/predict
{"texts": [...]} with ltk-serve's JSON ({"predictions": [{"label", "score", "scores"}]}).

    LTK_EXPORT=DIR LTK_CONFIG=RUN/config.json gunicorn -w 5 -b 127.0.0.1:PORT --chdir bench serve_flask:app
"""
import json
import os
import re
import sys

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


def encode(text):
    ids = [stoi.get(t, 1) for t in TOKEN_RE.findall(text.lower() if lowercase else text)]
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
