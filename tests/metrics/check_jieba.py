"""Compares ltk's jieba tokenizer with python3-jieba's jieba.lcut(text, HMM=False) (whitespace
tokens dropped, as ltk never makes them). Input: a file of lines "text<TAB>ltk tokens joined by
U+0001". Usage: /usr/bin/python3 check_jieba.py FILE    (exit 0 when every line agrees)"""
import logging
import sys

import jieba

jieba.setLogLevel(logging.ERROR)
bad = 0
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
n = 0
for line in lines:
    if not line:
        continue
    text, ours = line.split("\t", 1)
    ours = ours.split("\x01") if ours else []
    theirs = [w for w in jieba.lcut(text, HMM=False) if w.strip()]
    n += 1
    if ours != theirs:
        bad += 1
        if bad <= 5:
            print("MISMATCH", text, "\n  ltk:  ", ours, "\n  jieba:", theirs)
print(f"jieba: {n - bad} of {n} lines identical")
sys.exit(1 if bad or n == 0 else 0)
