"""Command line: ``python -m sklearn_ssse demo`` (and the ``sklearn-ssse`` console script)."""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from ._unlearnable import UnlearnableClassifier
from .datasets import load_digits_split


def _table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[c if isinstance(c, str) else f"{c:.4g}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def demo(forget_rate: float = 0.05, C: float = 1.0, epsilon: float = 1.0,
         random_state: int = 0) -> str:
    """Fit on digits, forget a random share of the training set, compare with retraining.

    Returns the printed table (original / SSSE with both curvatures / retrained).
    """
    X, X_test, y, y_test = load_digits_split(random_state=random_state)
    rng = np.random.default_rng(random_state)
    k = max(1, round(forget_rate * len(X)))
    S = rng.choice(len(X), size=k, replace=False)
    keep = np.setdiff1d(np.arange(len(X)), S)
    base = LogisticRegression(C=C, max_iter=5000, tol=1e-8)

    t0 = time.perf_counter()
    retrained = clone(base).fit(X[keep], y[keep])
    t_retrain = time.perf_counter() - t0

    rows, theta_ret = [], None
    for curvature in ("empirical_fisher", "ggn"):
        t0 = time.perf_counter()
        clf = UnlearnableClassifier(base, curvature=curvature, epsilon=epsilon).fit(X, y)
        t_fit = time.perf_counter() - t0
        if theta_ret is None:
            theta_ret = clf.backend_.__class__(retrained).get_parameters().numpy()
            theta_orig = clf.get_parameters()
            rows.append(["original", clf.score(X[S], y[S]), clf.score(X_test, y_test), 1.0,
                         f"fit+curvature {t_fit:.3f}s"])
        t0 = time.perf_counter()
        clf.forget(X[S], y[S])
        t_forget = time.perf_counter() - t0
        dist = np.linalg.norm(clf.get_parameters() - theta_ret) / np.linalg.norm(
            theta_orig - theta_ret)
        rows.append([f"SSSE {curvature} eps={epsilon:g}", clf.score(X[S], y[S]),
                     clf.score(X_test, y_test), dist,
                     f"forget {1e3 * t_forget:.2f}ms ({t_retrain / t_forget:.0f}x faster)"])
    rows.append(["retrained", retrained.score(X[S], y[S]), retrained.score(X_test, y_test), 0.0,
                 f"retrain {t_retrain:.3f}s"])
    header = ["model", "acc on S", "acc on test", "param dist", "wall time"]
    title = (f"digits: n={len(X)} training samples, forget k={k} ({100 * forget_rate:g}%), "
             f"LogisticRegression(C={C:g}); param dist = ||theta - theta_retrained|| / "
             "||theta_original - theta_retrained||")
    return title + "\n" + _table(header, rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sklearn_ssse``."""
    parser = argparse.ArgumentParser(prog="sklearn-ssse", description=(
        "Single-step sample erasure: forget training samples from fitted classifiers."))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="fit on the bundled digits data, forget a random share of "
                       "it, compare with retraining from scratch")
    p.add_argument("--forget-rate", type=float, default=0.05,
                   help="share of the training set to forget (default 0.05)")
    p.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength of the LogisticRegression (default 1.0)")
    p.add_argument("--epsilon", type=float, default=1.0, help="SSSE step size (default 1.0)")
    p.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        print(demo(args.forget_rate, args.C, args.epsilon, args.random_state))
    return 0
