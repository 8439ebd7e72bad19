"""Checks ltk's metrics against scikit-learn and SciPy on the random data the C++ test wrote.
Usage: /usr/bin/python3 check_sklearn.py cases.json   (exit 0 when every figure agrees to 1e-9)"""
import json
import sys

import numpy as np
from scipy import stats
from sklearn import metrics as M

cases = json.load(open(sys.argv[1]))
failures = 0


def check(name, ours, theirs, tol=1e-9):
    global failures
    ok = abs(ours - theirs) <= tol * max(1.0, abs(theirs))
    failures += not ok
    print(("ok      " if ok else "MISMATCH") + f" {name}: ltk {ours!r} sklearn {theirs!r}")


def ece(conf, correct, bins=10):
    conf, correct = np.asarray(conf), np.asarray(correct, dtype=float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += abs(correct[m].mean() - conf[m].mean()) * m.sum() / len(conf)
    return total


for i, c in enumerate(cases):
    kind = c["kind"]
    if kind == "binary":
        y, s = np.array(c["truth"]), np.array(c["scores"])
        check(f"{i} roc_auc", c["roc_auc"], M.roc_auc_score(y, s))
        check(f"{i} average_precision", c["pr_auc"], M.average_precision_score(y, s))
        p, r, t = M.precision_recall_curve(y, s)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)[:-1]
        check(f"{i} best f1", c["best_f1"], f1.max())
        check(f"{i} ece", c["ece"], ece(c["conf"], c["correct"]))
    elif kind == "multiclass":
        y, q, prob = np.array(c["gold"]), np.array(c["pred"]), np.array(c["probs"])
        labels = list(range(prob.shape[1]))
        check(f"{i} accuracy", c["accuracy"], M.accuracy_score(y, q))
        check(f"{i} macro_f1", c["macro_f1"], M.f1_score(y, q, average="macro"))
        check(f"{i} macro_precision", c["macro_precision"], M.precision_score(y, q, average="macro", zero_division=0))
        check(f"{i} macro_recall", c["macro_recall"], M.recall_score(y, q, average="macro", zero_division=0))
        check(f"{i} weighted_f1", c["weighted_f1"], M.f1_score(y, q, average="weighted"))
        check(f"{i} micro_f1", c["micro_f1"], M.f1_score(y, q, average="micro"))
        check(f"{i} top3_accuracy", c["top3_accuracy"], M.top_k_accuracy_score(y, prob, k=3, labels=labels))
        check(f"{i} ece", c["ece"], ece(prob.max(1), (prob.argmax(1) == y)))
    elif kind == "multilabel":
        y, q = np.array(c["gold"]), np.array(c["pred"])
        check(f"{i} subset_accuracy", c["subset_accuracy"], M.accuracy_score(y, q))
        check(f"{i} hamming_loss", c["hamming_loss"], M.hamming_loss(y, q))
        check(f"{i} micro_f1", c["micro_f1"], M.f1_score(y, q, average="micro"))
        check(f"{i} macro_f1", c["macro_f1"], M.f1_score(y, q, average="macro", zero_division=0))
    else:
        y, x = np.array(c["truth"]), np.array(c["pred"])
        check(f"{i} mae", c["mae"], M.mean_absolute_error(y, x), 1e-6)
        check(f"{i} rmse", c["rmse"], np.sqrt(M.mean_squared_error(y, x)), 1e-6)
        check(f"{i} r2", c["r2"], M.r2_score(y, x), 1e-6)
        check(f"{i} pearson", c["pearson"], stats.pearsonr(y, x)[0], 1e-6)
        check(f"{i} spearman", c["spearman"], stats.spearmanr(y, x)[0], 1e-6)
print(f"sklearn: {failures} mismatches")
sys.exit(1 if failures else 0)
