#!/usr/bin/python3
"""Writes the shard fuzz target's seeds (tests/fuzz/seeds/shard/*): shards of a few texts as
`ltk-data encode` writes them (build/bin/ltk-data must be built), one per task, each packed as the
target reads it: the options byte, then [file number][u32 little-endian length][bytes] per file.
Standard library only."""
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def w(name, data):
    d = os.path.join(HERE, "seeds", "shard")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    exe = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "bin", "ltk-data")
    if not os.access(exe, os.X_OK):
        sys.exit("make_shard_seeds: build ltk-data first (scripts/build.sh)")
    names = ["manifest.json", "ids.bin", "offsets.bin", "lines.bin", "classes.bin", "class_offsets.bin",
             "values.bin", "vocab.txt", "labels.txt", "words.bin"]
    WP = {"tokenizer": {"type": "wordpiece", "dict": "WP"}, "vocab": {"source": "tokenizer"}, "special_tokens": True}
    cases = [  # (options byte, task, data keys, labels of the texts)
        (0x01, "multiclass", {}, ["sports", "politics", "sports", "arts"]),
        (0x02 | 0x20, "multiclass", {}, ["sports", "politics", "sports", "arts"]),
        (0x05 | 0x40, "multilabel", {}, ["a,b", "c", "a", "b"]),
        (0x07 | 0x08, "binary", {"tokenizer": {"type": "wordpiece", "dict": "WP"}, "vocab": {"source": "tokenizer"},
                                 "special_tokens": True}, ["yes", "no", "no", "yes"]),
        (0x0c, "regression", {}, ["0.5", "1", "-2", "3.25"]),
        # masked-LM with whole-word flags (words.bin): packed to max_len 8, and cut to 3 head+tail
        (0x1e, {"type": "mlm", "whole_word": True}, WP, ["", "", "", ""]),
        (0x14 | 0x40, {"type": "mlm", "whole_word": True}, WP, ["", "", "", ""]),
    ]
    texts = ["The match ended 2-1 after extra time", "Parliament votes today", "a", "中文 分词 caf\u00e9 and more words"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sel, task, extra, labels) in enumerate(cases):
            with open(os.path.join(tmp, "train.tsv"), "w", encoding="utf-8") as f:
                f.writelines(f"{l}\t{t}\n" for l, t in zip(labels, texts))
            data = {"train": os.path.join(tmp, "train.tsv")}
            data.update(json.loads(json.dumps(extra).replace('"WP"', json.dumps(os.path.join(tmp, "wp.txt")))))
            with open(os.path.join(tmp, "wp.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "match", "##es", "a", "votes",
                                   "today", "and", "more", "中", "文"]) + "\n")
            model = {"type": "bow"}
            if isinstance(task, dict):  # masked-LM pretrains a bert
                model = {"type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 16, "max_position_embeddings": 64}
                data["max_len"] = 64
            config = {"name": "seed", "data": data, "model": model,
                      "task": task if isinstance(task, dict) else {"type": task}}
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(config, f)
            out = os.path.join(tmp, f"shards{i}")
            r = subprocess.run([exe, "encode", "--config", os.path.join(tmp, "config.json"), "--out", out],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                sys.exit(f"make_shard_seeds: ltk-data encode failed for the {task} seed:\n{r.stderr}")
            packed = bytes([sel])
            for k, name in enumerate(names):
                path = os.path.join(out, "train", name)
                if os.path.exists(path):
                    body = open(path, "rb").read()
                    packed += bytes([k]) + struct.pack("<I", len(body)) + body
            w(f"seed{i}", packed)


if __name__ == "__main__":
    main()
