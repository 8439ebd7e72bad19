#!/usr/bin/env python3
"""Test fixtures from Hugging Face transformers itself, for tests/test_io.cpp ("hf fixtures").

Needs torch and transformers (the GPU machine has both; this machine has neither transformers nor
a route to PyPI). Two modes:

  make_hf_fixtures.py make OUT
      A tiny random BertForSequenceClassification (2 layers, hidden 32, 3 labels) over a small
      vocab.txt with English words, "##" pieces, accented and CJK characters, saved with
      save_pretrained as model.safetensors (OUT/st) and as pytorch_model.bin (OUT/bin), with
      the tokenizer's files; OUT/fixtures.json records, for ~20 texts (English, Chinese, accents,
      pairs, one longer than max_len), BertTokenizerFast's input_ids and token_type_ids and the
      model's logits and last hidden states (eval mode, float32). A few hundred KB in all.

  make_hf_fixtures.py check-export DIR TEXTS_FILE
      Loads an `ltk-eval --export-hf` directory with AutoModelForSequenceClassification and
      AutoTokenizer (missing or unexpected keys fail) and prints one JSON line of logits per text.
"""
import json
import os
import sys

import torch

MAX_LEN = 16

TEXTS = [
    ("Hello, world! The match was unbelievable.", None),
    ("the kernel compiler has a bug", None),
    ("Café naïve résumé", None),
    ("ÜBER straße", None),
    ("我爱北京天安门", None),
    ("中文文本分类，很好用！", None),
    ("mixed 中文 and english words", None),
    ("unknownword qqq zzz", None),
    ("a", None),
    ("", None),
    ("this sentence is much longer than the maximum length of sixteen pieces so it is truncated at the end", None),
    ("is it good?", "yes it is good"),
    ("北京", "天安门"),
    ("the team scored a goal in the match", "the coach was happy"),
    ("short", "this second text is very long and will be truncated first by longest first"),
    ("this first text is very long and will be truncated first by longest first", "short"),
    ("equal length one two", "three four five six"),
    ("Café", "naïve"),
    ("bug", "kernel compiler memory cpu linux"),
    ("中文", "english"),
]

WORDS = ("the a is it good yes hello world match was team scored goal in coach happy kernel compiler has bug "
         "cafe naive resume uber strasse mixed and english words short this first second text very long will be "
         "truncated by longest equal length one two three four five six sentence much than maximum of sixteen "
         "pieces so at end linux memory cpu unbelievable").split()
PIECES = ["##s", "##ed", "##ing", "##able", "##ly", "un", "##believ", "##e", "##ress"]
CJK = list("我爱北京天安门中文本分类很好用")


def make(out):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    os.makedirs(out, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(",.!?，！") + WORDS + PIECES + CJK
    vocab_path = os.path.join(out, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3,
                        id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    model = BertForSequenceClassification(config).eval()
    # The fast tokenizer is what AutoTokenizer loads (and its longest_first pair truncation is the
    # one ltk follows; the slow BertTokenizer gives the odd piece to the first text at a tie).
    tokenizer = BertTokenizerFast(vocab_path, do_lower_case=True)
    for sub, safe in (("st", True), ("bin", False)):
        model.save_pretrained(os.path.join(out, sub), safe_serialization=safe)
        tokenizer.save_pretrained(os.path.join(out, sub))
    cases = []
    with torch.no_grad():
        for text, pair in TEXTS:
            enc = tokenizer(text, pair, truncation="longest_first", max_length=MAX_LEN, return_tensors="pt")
            res = model(**enc, output_hidden_states=True)
            cases.append({"text": text, "text_pair": pair, "input_ids": enc["input_ids"][0].tolist(),
                          "token_type_ids": enc["token_type_ids"][0].tolist(),
                          "logits": res.logits[0].tolist(),
                          "hidden": [[round(v, 7) for v in row] for row in res.hidden_states[-1][0].tolist()]})
    import transformers
    with open(os.path.join(out, "fixtures.json"), "w", encoding="utf-8") as f:
        json.dump({"max_len": MAX_LEN, "transformers": transformers.__version__, "torch": torch.__version__,
                   "cases": cases}, f, ensure_ascii=False)
    os.remove(vocab_path)
    print(f"wrote {out}: {len(cases)} cases")


def check_export(directory, texts_file):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model, info = AutoModelForSequenceClassification.from_pretrained(directory, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        sys.exit(f"{directory}: {bad}")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model.eval()
    with torch.no_grad():
        for line in open(texts_file, encoding="utf-8"):
            enc = tokenizer(line.rstrip("\n"), truncation=True, max_length=tokenizer.model_max_length,
                            return_tensors="pt")
            print(json.dumps({"ids": enc["input_ids"][0].tolist(), "logits": model(**enc).logits[0].tolist()}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check-export":
        check_export(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
