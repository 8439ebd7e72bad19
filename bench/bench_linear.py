"""The tf-idf linear model: ltk (model.type "linear", optimizer.type "dual_cd") against what a user
would otherwise run, scikit-learn's TfidfVectorizer (word and char_wb n-grams as the config says) +
liblinear (LinearSVC for the squared hinge, LogisticRegression(solver="liblinear") for a binary
task's cross-entropy), on the same corpus, features and C (the config's, chosen on validation with
ltk-sweep), in one invocation.

Usage: /usr/bin/python3 bench/bench_linear.py CORPUS CONFIG [--binary LABEL,LABEL...]
(run from the source root, alone). With --binary the corpus becomes a binary task, "yes" for the
listed labels and "no" for the rest, solved as logistic regression on both sides.

Prints one JSON object. Whole process: ltk-train (reading, features, the solve, one checkpoint,
the validation, the test and report) and a Python process that imports scikit-learn, reads the
files, vectorises, fits and tests; each with its peak RSS. Fit alone: scikit-learn's fit_transform +
fit in that process, ltk's features + solve from its log. Prediction: ltk-predict's whole process
on the test texts and on 100,000 texts made by repeating them, against transform + predict of a
loaded model in Python (loop alone, the model already in memory)."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SKLEARN_SIDE = r'''
import json, sys, time, unicodedata
start = time.perf_counter()
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
config, files, positives, mode = json.loads(sys.argv[1])

def read(path):
    labels, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(("yes" if label in positives else "no") if positives else label)
            texts.append(text)
    return texts, labels

tok, model = config["data"]["tokenizer"], config["model"]
words, chars = tuple(model.get("ngram_range", [1, 2])), tuple(model.get("char_ngram_range", [0, 0]))
def prep(text):
    text = unicodedata.normalize("NFKC", text) if tok.get("nfkc", False) else text
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
        blocks.append(("words", TfidfVectorizer(token_pattern=r"\w+|[^\w\s]", ngram_range=words, **common)))
if chars[1] > 0:
    blocks.append(("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=chars, **common)))
vec = blocks[0][1] if len(blocks) == 1 else FeatureUnion(blocks)
(xtr, ytr), (xte, yte) = read(files[0]), read(files[1])
fit_start = time.perf_counter()
X = vec.fit_transform(xtr)
C = model.get("C", 1.0)
clf = LogisticRegression(solver="liblinear", C=C) if positives else LinearSVC(C=C)
clf.fit(X, ytr)
fit_seconds = time.perf_counter() - fit_start
pred = clf.predict(vec.transform(xte))
whole = time.perf_counter() - start
if mode == "predict":  # a second process: the fit's peak RSS is measured without this
    texts = (xte * (100000 // len(xte) + 1))[:100000]
    t = time.perf_counter()
    clf.predict(vec.transform(texts))
    print(json.dumps(dict(predict_100k_per_s=len(texts) / (time.perf_counter() - t))))
else:
    print(json.dumps(dict(test_accuracy=accuracy_score(yte, pred), test_macro_f1=f1_score(yte, pred, average="macro"),
                          fit_seconds=fit_seconds, whole_seconds=whole, features=X.shape[1])))
'''


def timed(cmd, env, stdout_path=None, **kw):
    """Runs cmd; returns (stdout, stderr, seconds, its peak RSS in MB, as /usr/bin/time measures it).
    With stdout_path, its stdout goes to that file, as a user's `> answers.jsonl` (not through this
    process, whose reading of the pipe would share the cores), and "" is returned for it."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        if stdout_path:
            with open(stdout_path, "w") as sink:
                out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], stdout=sink,
                                     stderr=subprocess.PIPE, text=True, env=env, check=True, **kw)
        else:
            out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], capture_output=True, text=True,
                                 env=env, check=True, **kw)
        seconds = time.perf_counter() - start
        return out.stdout or "", out.stderr, seconds, int(rss.read().split()[-1]) / 1024.0


def relabel(config, positives, work):
    if not positives:
        return config
    config = json.loads(json.dumps(config))
    for split in ("train", "valid", "test"):
        path = os.path.join(work, f"binary_{split}.tsv")
        with open(config["data"][split], encoding="utf-8") as f, open(path, "w", encoding="utf-8") as out:
            for line in f:
                label, text = line.split("\t", 1)
                out.write(("yes" if label in positives else "no") + "\t" + text)
        config["data"][split] = path
    config["task"] = {"type": "binary", "positive_label": "yes"}
    return config


def ltk_side(config, work, env, threads):
    path = os.path.join(work, f"config_{threads}.json")
    run = os.path.join(work, f"run_{threads}")
    json.dump(dict(config, output_dir=run, threads=threads), open(path, "w"))
    out, err, seconds, rss = timed(["build/bin/ltk-train", "--config", path, "--overwrite", "--json"], env)
    s = json.loads(out)
    m = re.search(r"built in ([0-9.]+)s, solved in ([0-9.]+)s", err)
    return run, dict(threads=threads, whole_seconds=seconds, fit_seconds=float(m.group(1)) + float(m.group(2)),
                     peak_rss_mb=rss, test_accuracy=s["test"]["accuracy"], test_macro_f1=s["test"]["macro_f1"])


def predict_seconds(run, texts, n, env, threads, app="ltk-predict"):
    path = texts + f".{n}"
    lines = open(texts, encoding="utf-8").read().splitlines(True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines((lines * (n // len(lines) + 1))[:n])
    _, _, seconds, rss = timed([f"build/bin/{app}", "--run", run, "--input", path, "--threads", str(threads)],
                               env, stdout_path=path + ".answers", stdin=subprocess.DEVNULL)
    return seconds, rss


def predict_rates(run, texts, n_test, env, cores):
    """ltk-predict's texts/s, whole process, on the test texts and on 100,000; its start-up (one
    text: the run's config, vocabulary and weights), the least of three runs, and the 100,000 texts'
    rate without it (the loop alone). The same for ltk-predict-torch (the LibTorch build, which
    answered linear runs before ltk-predict did without LibTorch): its start-up and 100,000 texts."""
    start = min(predict_seconds(run, texts, 1, env, cores)[0] for _ in range(3))
    big = {t: predict_seconds(run, texts, 100000, env, t) for t in (cores, 1)}
    torch_start = min(predict_seconds(run, texts, 1, env, cores, "ltk-predict-torch")[0] for _ in range(3))
    torch_big, torch_rss = predict_seconds(run, texts, 100000, env, cores, "ltk-predict-torch")
    return dict(test_texts=n_test, test_per_s=n_test / predict_seconds(run, texts, n_test, env, cores)[0],
                per_s_100k=100000 / big[cores][0], per_s_100k_1_thread=100000 / big[1][0],
                startup_seconds=start, peak_rss_mb_100k=big[cores][1],
                per_s_100k_loop=100000 / max(big[cores][0] - start, 1e-9),
                per_s_100k_loop_1_thread=100000 / max(big[1][0] - start, 1e-9),
                libtorch_startup_seconds=torch_start, libtorch_per_s_100k=100000 / torch_big,
                libtorch_peak_rss_mb_100k=torch_rss)


def main():
    corpus, config_path = sys.argv[1], sys.argv[2]
    positives = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[3] == "--binary" else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as work:
        config = relabel(json.load(open(config_path)), positives, work)
        files = [config["data"]["train"], config["data"]["test"]]
        sklearn = lambda mode: timed(["/usr/bin/python3", "-c", SKLEARN_SIDE,
                                      json.dumps([config, files, positives and ["yes"], mode])], env)
        out, _, seconds, rss = sklearn("fit")
        sk = json.loads(out)
        sk.update(peak_rss_mb=rss, process_seconds=seconds)
        sk.update(json.loads(sklearn("predict")[0]))
        ltk = {}
        for threads in (cores, 1):
            run, ltk[threads] = ltk_side(config, work, env, threads)
        texts = os.path.join(work, "texts.txt")
        with open(config["data"]["test"], encoding="utf-8") as f, open(texts, "w", encoding="utf-8") as out:
            for line in f:
                out.write(line.rstrip("\n").split("\t", 1)[1] + "\n")
        n_test = sum(1 for _ in open(texts, encoding="utf-8"))
        predict = predict_rates(run, texts, n_test, env, cores)
    print(json.dumps(dict(corpus=corpus + (" (binary: " + ",".join(positives) + ")" if positives else ""),
                          config=config_path, C=config["model"].get("C", 1.0),
                          loss="logistic" if positives else "squared_hinge", cores=cores, sklearn=sk,
                          ltk=ltk[cores], ltk_1_thread=ltk[1], ltk_predict=predict)))


if __name__ == "__main__":
    main()
