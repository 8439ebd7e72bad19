#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/seeds/TARGET/*): small valid and nearly valid
inputs of each format, each prefixed with the selector byte its target reads first. Run with Debian's
python3 (python3-torch writes the weights and state.pt seeds as torch.save does)."""
import io
import json
import os
import struct

import torch

R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def w(target, name, data):
    d = os.path.join(R, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


tsv = "sports\tThe match ended 2-1.\npolitics\tParliament votes today\r\n\nsports\t中文 分词 caf\u00e9\n"
tsvh = "label\ttext\tpair\nsports\tA goal\tanother\nneg\tbad\tworse\n"
for i, (sel, body) in enumerate([(0, tsv), (1, tsvh), (2, tsv + "broken line\n"), (4, "\tno label\n"), (9, tsvh),
                                 (17, tsvh), (32, "a|b\tmulti label\n"), (0, "\ufeffpos\tbom first\n")]):
    w("reader_tsv", f"seed{i}", bytes([sel]) + body.encode())
csv = 'label,text\nsports,"The match, ended ""2-1"""\npolitics,"multi\nline"\n'
for i, (sel, body) in enumerate([(1, csv), (0, 'sports,plain text\nneg,"q"\n'), (3, csv + 'x,"unterminated\n'),
                                 (17, "text,label\nhi,pos\n"), (9, "label,text,pair\na,b,c\n")]):
    w("reader_csv", f"seed{i}", bytes([sel]) + body.encode())
jl = '{"text": "A goal", "label": "sports"}\n{"text": "votes", "label": 3}\n{"text": "m", "label": ["a", "b"]}\n'
for i, (sel, body) in enumerate([(0, jl), (2, jl + '{"text": 5}\nnot json\n'), (8, '{"text":"a","pair":"b","label":true}\n'),
                                 (16, '{"text":"a","labels":[1,2.5]}\n'), (4, '{"text":"\\u00e9\\ud83d\\ude42"}\n')]):
    w("reader_jsonl", f"seed{i}", bytes([sel]) + body.encode())

configs = [
    {"name": "x", "data": {"train": "t.tsv", "valid": "v.tsv", "tokenizer": {"type": "basic"}},
     "model": {"type": "bow", "embed_dim": 16}, "trainer": {"epochs": 2, "batch_size": 8},
     "optimizer": {"type": "adam", "lr": 0.01}},
    {"data": {"train": "t.jsonl", "max_len": 64}, "model": {"type": "textcnn"}, "task": {"type": "multilabel"}},
    {"data": {"train": "t.tsv"}, "model": {"type": "transformer", "layers": 1}, "trainer": {"eval_every": 10}},
    {"data": {"train": "t.tsv"}, "model": {"type": "rnn"}},
    {"data": {"train": "t.tsv"}, "model": {"type": "linear"}},
]
for i, c in enumerate(configs):
    w("config", f"seed{i}", json.dumps(c, indent=1) + ("\n--\nmodel.embed_dim=32\ntrainer.epochs=3\n" if i % 2 == 0 else ""))

texts = ["The match ended 2-1.", "中文分词 北京", "caf\u00e9 NA\u00cfVE \uff21\uff22", "\U0001F642 emoji",
         "playing the games, a.b", "tab\there\u00a0nbsp\u3000ideographic", "\x00\x07control"]
for i, t in enumerate(texts):
    for k in range(6):  # each tokenizer type, with varied normaliser flags
        sel = k * 8 + (i % 8)
        w("tokenize", f"seed{i}_{sel}", bytes([sel]) + t.encode())

w("vocab", "seed0", b"\x00<pad>\t0\n<unk>\t0\nthe\t10\nmatch\t3\n")
w("vocab", "seed1", b"\x01[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n")
w("vocab", "seed2", b"\x02neg\npos\nsports\n")
w("jieba_dict", "seed0", "中文 100 n\n分词 50 v\n北京 30 ns\n学习 20\n我们 40 r\n")
w("jieba_dict", "seed1", "ok 3\n1 2 m\n中 10\n")

sd = {"emb.weight": torch.randn(5, 3), "fc.weight": torch.randn(2, 3), "fc.bias": torch.randn(2)}
b = io.BytesIO()
torch.save(sd, b)
w("weights", "seed0", b"\x01" + b.getvalue())
sd["fc.bias"] = torch.randn(3)
b = io.BytesIO()
torch.save(sd, b)
w("weights", "seed1", b"\x00" + b.getvalue())
# The LibTorch-free reader (raw_weights): a linear model's tensors, views among them, and the two above.
for name in ("seed0", "seed1"):
    with open(os.path.join(R, "weights", name), "rb") as f:
        w("raw_weights", name, f.read()[1:])
m = torch.randn(6, 3)
lin = {"weight.weight": m, "bias": torch.randn(3), "idf": torch.rand(6, dtype=torch.float64) + 1,
       "block": torch.tensor([0, 0, 1, 1, 0, 1]), "view": m.t(), "slice": torch.arange(10)[3:7], "empty": torch.zeros(0, 2)}
b = io.BytesIO()
torch.save(lin, b)
w("raw_weights", "seed2", b.getvalue())


def safetensors(tensors, meta=None):
    header, offset, blob = {}, 0, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


w("safetensors", "seed0", safetensors({"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                                       "b": ("I64", [1], struct.pack("<q", 7))}, {"format": "pt"}))
w("safetensors", "seed1", safetensors({"h": ("F16", [3], struct.pack("<3e", 1, 2, 3)), "bf": ("BF16", [1], b"\x80\x3f"),
                                       "d": ("F64", [], struct.pack("<d", 1.5)), "u": ("U8", [2, 0], b"")}))
w("safetensors", "seed2", safetensors({"x": ("BOOL", [2], b"\x01\x00"), "i8": ("I8", [1], b"\xff"),
                                       "i16": ("I16", [1], b"\x01\x00"), "i32": ("I32", [1], b"\x01\x00\x00\x00")}))

w("checkpoint_state", "seed0", b'\x00{"dir":"step-1","epoch":1,"step":1}\n')
state = {"epoch": 2, "batch_pos": 0, "step": 368, "samples_seen": 11754, "window_loss": 0.5, "window_steps": 3,
         "epoch_loss": 101.2, "epoch_steps": 184, "plateau_scale": 1.0, "bad_evals": 0, "has_best": True,
         "best_value": 0.47, "best_step": 368, "best_epoch": 2, "kept": [[0.47, 368], [0.45, 184]],
         "nonfinite_skipped": 0, "early_stopped": False, "epoch_closed": True, "last_epoch_loss": 0.55,
         "metrics_bytes": 1234, "validation_pending": False, "world": 1}
w("checkpoint_state", "seed1", b"\x01" + json.dumps({"step": 368, "epoch": 2, "state": state}, indent=2).encode())
b = io.BytesIO()
torch.save({"rng_cpu": torch.get_rng_state()}, b)
w("checkpoint_state", "seed2", b"\x02" + b.getvalue())

hf = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
      "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
      "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
      "position_embedding_type": "absolute"}
w("hf_config", "seed0", json.dumps(hf, indent=2))
w("hf_config", "seed1", json.dumps({"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4,
                                    "intermediate_size": 128, "num_hidden_layers": 2, "vocab_size": 100}))
