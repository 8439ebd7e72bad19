"""The tf-idf linear baseline: ltk (model.type "linear", LibTorch) against scikit-learn's
TfidfVectorizer + LinearSVC, the baseline people trust, on the same corpus, the same n-grams and
tokens, C chosen the same way (the best validation accuracy over one grid), in one invocation.
Usage: /usr/bin/python3 bench/bench_linear.py CORPUS CONFIG [C ...]   (run from the source root,
alone). Prints one JSON object: for each side its chosen C, test accuracy and macro-F1, training
seconds and prediction texts/s."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

TOKEN_RE = r"\w+|[^\w\s]"  # ltk's basic tokenizer on these corpora


def read(path):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(label)
            texts.append(text)
    return texts, labels


def vectorizer(config):
    tok = config["data"]["tokenizer"]
    model = config["model"]
    words = tuple(model.get("ngram_range", [1, 2]))
    chars = tuple(model.get("char_ngram_range", [0, 0]))
    nfkc = tok.get("nfkc", False)

    def prep(text):
        text = unicodedata.normalize("NFKC", text) if nfkc else text
        return text.lower() if tok.get("lowercase", True) else text

    common = dict(sublinear_tf=True, min_df=model.get("min_df", 1), dtype=np.float64, preprocessor=prep)
    blocks = []
    if words[1] > 0:
        if tok["type"] == "jieba":
            import jieba  # python3-jieba: the dictionary ltk's jieba tokenizer reads
            jieba.setLogLevel(60)
            cut = lambda t: [w for w in jieba.lcut(t) if w.strip()]
            blocks.append(("words", TfidfVectorizer(tokenizer=cut, token_pattern=None, ngram_range=words, **common)))
        else:
            blocks.append(("words", TfidfVectorizer(token_pattern=TOKEN_RE, ngram_range=words, **common)))
    if chars[1] > 0:
        blocks.append(("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=chars, **common)))
    return blocks[0][1] if len(blocks) == 1 else FeatureUnion(blocks)


def per_second(fn, texts, at_least=2.0):
    n, start = 0, time.perf_counter()
    while True:
        fn(texts)
        n += len(texts)
        if time.perf_counter() - start >= at_least:
            return n / (time.perf_counter() - start)


def sklearn_side(config, split, grid):
    (xtr, ytr), (xva, yva), (xte, yte) = split
    best = None
    for C in grid:
        start = time.perf_counter()
        vec = vectorizer(config)
        X = vec.fit_transform(xtr)
        clf = LinearSVC(C=C).fit(X, ytr)
        seconds = time.perf_counter() - start
        valid = accuracy_score(yva, clf.predict(vec.transform(xva)))
        if best is None or valid > best["valid_accuracy"]:
            pred = clf.predict(vec.transform(xte))
            best = dict(C=C, valid_accuracy=valid, test_accuracy=accuracy_score(yte, pred),
                        test_macro_f1=f1_score(yte, pred, average="macro"), train_seconds=seconds,
                        features=X.shape[1],
                        predict_texts_per_s=per_second(lambda t: clf.predict(vec.transform(t)), xte))
    return best


def ltk_side(config_path, split, grid, work, extra=(), name="ltk"):
    bin_dir = "build/bin"
    best = None
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for C in grid:
        run = os.path.join(work, f"{name}_C{C}")
        start = time.perf_counter()
        out = subprocess.run([f"{bin_dir}/ltk-train", "--config", config_path, "--overwrite", "--json",
                              "--set", f"output_dir={run}", "--set", f"model.C={C}", "--set", "threads=1",
                              *extra],
                             capture_output=True, text=True, env=env, check=True).stdout
        wall = time.perf_counter() - start
        s = json.loads(out)
        valid = max(json.loads(l)["accuracy"] for l in open(os.path.join(run, "metrics.jsonl"))
                    if '"valid"' in l)
        if best is None or valid > best["valid_accuracy"]:
            best = dict(C=C, valid_accuracy=valid, test_accuracy=s["test"]["accuracy"],
                        test_macro_f1=s["test"]["macro_f1"], train_seconds=wall, train_loop_seconds=s["seconds"],
                        epochs=s["epochs"], run=run)
    # Prediction: ltk-predict reading the test texts (ten copies, so loading the run is amortised).
    texts = os.path.join(work, f"{name}_texts.txt")
    with open(texts, "w", encoding="utf-8") as f:
        for _ in range(10):
            f.writelines(t.replace("\n", " ") + "\n" for t in split[2][0])
    start = time.perf_counter()
    subprocess.run([f"{bin_dir}/ltk-predict", "--run", best["run"], "--input", texts], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env, check=True)
    best["predict_texts_per_s"] = 10 * len(split[2][0]) / (time.perf_counter() - start)
    best["valid_accuracy"] = round(best["valid_accuracy"], 4)
    del best["run"]
    return best


def main():
    corpus, config_path = sys.argv[1], sys.argv[2]
    grid = [float(c) for c in sys.argv[3:]] or [0.3, 1.0, 3.0]
    config = json.load(open(config_path))
    split = [read(config["data"][k]) for k in ("train", "valid", "test")]
    with tempfile.TemporaryDirectory() as work:
        result = {"corpus": corpus, "config": config_path, "grid": grid,
                  "sklearn": sklearn_side(config, split, grid), "ltk": ltk_side(config_path, split, grid, work),
                  # The exact solver: LinearSVC's problem solved by dual coordinate descent, as liblinear.
                  "ltk_dual_cd": ltk_side(config_path, split, grid, work,
                                          ("--set", "optimizer.type=dual_cd", "--set", "task.loss=squared_hinge"),
                                          "ltk_dual_cd")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
