"""Checks ltk's dual coordinate descent (optimizer.type "dual_cd") against scikit-learn's LinearSVC
(liblinear, squared hinge, dual), or with "loss": "logistic" its LogisticRegression (liblinear,
binary), or with "loss": "svr" its LinearSVR (liblinear, squared epsilon-insensitive with epsilon 0:
ridge regression on "targets"), on the problem the C++ test wrote: the same sparse rows, C, class weights and intercept. Both solve to a tight tolerance; the objective is 1-strongly convex, so two
near-optimal solutions are each within sqrt(2 e) of the optimum, e their excess objective: ltk's is
at most its duality gap g, scikit-learn's at most g + |their objectives' difference|.
Usage: /usr/bin/python3 check_dual_cd.py case.json   (exit 0 when the weights agree)"""
import json
import math
import sys

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC, LinearSVR

case = json.load(open(sys.argv[1], encoding="utf-8"))
n_cols = case["num_cols"]  # the last column is ltk's intercept column (value intercept_scaling)
X = sp.csr_matrix((case["values"], case["cols"], case["offsets"]), shape=(len(case["offsets"]) - 1, n_cols))
s = case["intercept_scaling"]
y = np.array(case["labels"])
C = case["C"]
weights = {int(k): v for k, v in case["class_weight"].items()}
logistic = case.get("loss") == "logistic"
svr = case.get("loss") == "svr"
if svr:
    y = np.array(case["targets"])
    clf = LinearSVR(C=C, loss="squared_epsilon_insensitive", epsilon=0.0, dual=True, tol=1e-10,
                    max_iter=1_000_000, intercept_scaling=s)
elif logistic:  # one problem: class 1 against class 0
    clf = LogisticRegression(solver="liblinear", C=C, dual=True, tol=1e-10, max_iter=1_000_000,
                             intercept_scaling=s)
else:
    clf = LinearSVC(C=C, loss="squared_hinge", dual=True, tol=1e-10, max_iter=1_000_000, intercept_scaling=s,
                    class_weight=weights or None)
clf.fit(X[:, :-1], y)
coef, intercept = np.atleast_2d(clf.coef_), np.atleast_1d(clf.intercept_)
theirs = np.hstack([coef, (intercept / s)[:, None]])  # back to the intercept column's weight
ours = np.array(case["w"])


def objective(w, k):
    if svr:
        r = y - X @ w
        return 0.5 * w @ w + C * np.sum(r * r)
    if logistic:
        m = np.where(y == 1, 1.0, -1.0) * (X @ w)
        return 0.5 * w @ w + C * np.sum(np.logaddexp(0.0, -m))
    yk = np.where(y == k, 1.0, -1.0)
    cost = np.where(y == k, C * weights.get(k, 1.0), C)
    margin = np.maximum(0.0, 1.0 - yk * (X @ w))
    return 0.5 * w @ w + np.sum(cost * margin * margin)


bad = 0
for k in range(ours.shape[0]):
    a, b = objective(ours[k], k), objective(theirs[k], k)
    gap = max(0.0, case["gap"][k])
    bound = math.sqrt(2 * gap) + math.sqrt(2 * (gap + abs(a - b))) + 1e-9
    diff = np.max(np.abs(ours[k] - theirs[k]))
    ok = diff <= bound and abs(a - b) <= 1e-7 * max(a, b)
    bad += not ok
    print(f"class {k}: objective ltk {a:.10f} sklearn {b:.10f}, largest weight difference {diff:.2e} (bound {bound:.2e})"
          f"{'' if ok else '  MISMATCH'}")
print(f"dual_cd: {bad} mismatches")
sys.exit(1 if bad else 0)
