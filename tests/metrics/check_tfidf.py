"""Checks ltk's tf-idf features (model.type "linear") against scikit-learn's TfidfVectorizer on the
corpus and options the C++ test wrote.
Usage: /usr/bin/python3 check_tfidf.py cases.json   (exit 0 when every weight agrees to 1e-6)

ltk marks a character n-gram term with a leading space; its word tokens are split on whitespace
(data.tokenizer "whitespace"), which is token_pattern \\S+ here. With word and character n-grams
both on, each block is its own vectorizer, normalised on its own: scikit-learn's FeatureUnion. With
"buckets", each block is a HashingVectorizer (no alternating sign, no norm) into that many columns,
then a TfidfTransformer; ltk names column k "#k" (" #k" for character n-grams)."""
import json
import sys

from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.pipeline import make_pipeline

cases = json.load(open(sys.argv[1], encoding="utf-8"))
mismatches = 0
for ci, case in enumerate(cases):
    o = case["options"]
    docs = case["docs"]
    common = dict(lowercase=True, sublinear_tf=o["sublinear_tf"], min_df=o["min_df"], max_df=o["max_df"],
                  max_features=o["max_features"] or None, dtype=float)
    buckets = o.get("buckets", 0)

    def vectorizer(**kw):
        if not buckets:
            return TfidfVectorizer(**kw, **common)
        hashing = HashingVectorizer(**kw, n_features=buckets, alternate_sign=False, norm=None, lowercase=True)
        return make_pipeline(hashing, TfidfTransformer(sublinear_tf=o["sublinear_tf"]))

    blocks = []
    if o["ngram_range"][1] > 0:
        blocks.append(("", vectorizer(analyzer="word", token_pattern=r"\S+", ngram_range=tuple(o["ngram_range"]))))
    if o["char_ngram_range"][1] > 0:
        blocks.append((" ", vectorizer(analyzer="char_wb", ngram_range=tuple(o["char_ngram_range"]))))
    theirs = [dict() for _ in docs]
    for mark, v in blocks:
        X = v.fit_transform(docs).tocsr()
        names = [f"#{k}" for k in range(buckets)] if buckets else v.get_feature_names_out()
        for i in range(X.shape[0]):
            for j, w in zip(X.indices[X.indptr[i]:X.indptr[i + 1]], X.data[X.indptr[i]:X.indptr[i + 1]]):
                theirs[i][mark + names[j]] = w
    ours = case["ltk"]
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if set(a) != set(b):
            mismatches += 1
            print(f"MISMATCH case {ci} doc {i}: only ltk {sorted(set(a) - set(b))[:5]}, "
                  f"only sklearn {sorted(set(b) - set(a))[:5]} ({docs[i]!r})")
            continue
        for t in a:
            worst = max(worst, abs(a[t] - b[t]))
            if abs(a[t] - b[t]) > 1e-6:
                mismatches += 1
                print(f"MISMATCH case {ci} doc {i} term {t!r}: ltk {a[t]} sklearn {b[t]}")
    print(f"case {ci} {json.dumps(o)}: {len(docs)} docs, {sum(map(len, theirs))} nonzeros, largest difference {worst:.2e}")
print(f"tfidf: {mismatches} mismatches")
sys.exit(1 if mismatches else 0)
