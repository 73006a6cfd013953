"""Tuning epsilon (issue 3): fits counted and wall times of GridSearchCV with / without memory=.

Runs the issue's snippet::

    GridSearchCV(UnlearnableClassifier(LogisticRegression(), keep_training_data=True,
                                       memory=cachedir),
                 {"epsilon": np.logspace(-2, 1, 13)},
                 scoring={"sim": similarity_ratio_scorer, "conf": confusion_distance_scorer},
                 refit="sim", cv=ForgetSplit(n_splits=3, forget_size=0.05, random_state=0))

without ``memory``, with a cold cache, with a warm cache (a second search), and the closed-form
``epsilon_sweep``; counts every ``LogisticRegression.fit`` (the models GridSearchCV fits plus the
retrained references of the scorers) and prints a markdown table.

Run: ``python benchmarks/bench_grid_search.py [--dataset cancer|digits|both] [--threads 1]``.
``--threads`` caps the BLAS threads (default 1: these problems are tiny, and on a busy machine
extra BLAS threads only add contention; 0 leaves the default).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from joblib import Memory
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import scale
from threadpoolctl import threadpool_limits

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse.metrics import (
    clear_reference_cache,
    confusion_distance_scorer,
    reference_cache_info,
    similarity_ratio_scorer,
)
from sklearn_ssse.model_selection import ForgetSplit, epsilon_sweep

EPSILONS = np.logspace(-2, 1, 13)


class CountingLR(LogisticRegression):
    """LogisticRegression that counts its fits (class-level counter)."""

    n_fits = 0

    def fit(self, X, y, sample_weight=None):
        type(self).n_fits += 1
        return super().fit(X, y, sample_weight=sample_weight)


def _data(name: str):
    if name == "cancer":
        X, y = load_breast_cancer(return_X_y=True)
        return "breast cancer (569 x 30, binary)", scale(X), y
    X, y = load_digits(return_X_y=True)
    return "digits (1797 x 64, 10 classes)", X / 16.0, y


def _run(label: str, make, X, y) -> dict:
    clear_reference_cache()
    CountingLR.n_fits = 0
    start = time.perf_counter()
    best = make().fit(X, y) if label != "sweep" else make()
    wall = time.perf_counter() - start
    refs = reference_cache_info()["fits"]
    eps = best.best_params_["epsilon"] if hasattr(best, "best_params_") else best.best_epsilon
    return {"fits": CountingLR.n_fits, "refs": refs, "wall": wall, "best": float(eps)}


def bench(name: str) -> list[str]:
    title, X, y = _data(name)
    cv = ForgetSplit(n_splits=3, forget_size=0.05, random_state=0)
    scoring = {"sim": similarity_ratio_scorer, "conf": confusion_distance_scorer}

    def search(memory):
        return GridSearchCV(
            UnlearnableClassifier(CountingLR(max_iter=1000), keep_training_data=True,
                                  memory=memory),
            {"epsilon": EPSILONS}, scoring=scoring, refit="sim", cv=cv, error_score="raise")

    rows = []
    with tempfile.TemporaryDirectory() as cachedir:
        rows.append(("GridSearchCV, memory=None", _run("plain", lambda: search(None), X, y)))
        rows.append(("GridSearchCV, memory cold", _run(
            "cold", lambda: search(Memory(cachedir, verbose=0)), X, y)))
        rows.append(("GridSearchCV, memory warm (2nd search)", _run(
            "warm", lambda: search(Memory(cachedir, verbose=0)), X, y)))
    rows.append(("epsilon_sweep (closed form)", _run("sweep", lambda: epsilon_sweep(
        UnlearnableClassifier(CountingLR(max_iter=1000), keep_training_data=True), X, y,
        epsilons=EPSILONS, scoring=scoring, refit="sim", cv=cv), X, y)))

    lines = [f"## {title}: 13 epsilons x 3 ForgetSplit splits (+ refit)", "",
             "| run | LogisticRegression fits (of which references) | wall s | best epsilon |",
             "| --- | --- | --- | --- |"]
    for label, r in rows:
        lines.append(f"| {label} | {r['fits']} ({r['refs']}) | {r['wall']:.2f} | "
                     f"{r['best']:.4g} |")
    agree = len({r["best"] for _, r in rows}) == 1
    lines += ["", f"best epsilon identical across runs: {agree}", ""]
    return lines


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["cancer", "digits", "both"], default="both")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (0: library default)")
    args = parser.parse_args(argv)
    names = ["cancer", "digits"] if args.dataset == "both" else [args.dataset]
    lines = []
    limits = threadpool_limits(args.threads) if args.threads > 0 else None
    try:
        for name in names:
            lines += bench(name)
    finally:
        if limits is not None:
            limits.unregister()
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
