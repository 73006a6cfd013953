"""Digits benchmark (issue 2): fit + curvature, forget latency, retraining, inverse builds.

Prints a markdown table. Run: ``python benchmarks/bench_digits.py [--repeat 5] [--out FILE]``.
Figures are wall-clock seconds on this machine (median of ``--repeat`` runs for the fast steps).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._curvature import build_operator


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the fast steps")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    n = len(X)
    base = LogisticRegression(C=1.0, max_iter=1000)
    lines = [f"## Digits (n={n}, d={(X.shape[1] + 1) * 10} parameters, multinomial "
             "LogisticRegression)", "", "| step | seconds |", "| --- | --- |"]

    t_retrain = _median_time(lambda: clone(base).fit(X, y), max(1, args.repeat // 2))
    lines.append(f"| retrain from scratch (LogisticRegression.fit) | {t_retrain:.3f} |")
    for curvature in ("empirical_fisher", "ggn"):
        t0 = time.perf_counter()
        clf = UnlearnableClassifier(base, curvature=curvature).fit(X, y)
        lines.append(f"| fit + {curvature} curvature (inverse={clf.inverse_}) | "
                     f"{time.perf_counter() - t0:.3f} |")
    rng = np.random.default_rng(0)
    for k in (1, round(0.01 * n), round(0.10 * n)):
        S = rng.choice(n, size=k, replace=False)
        t = _median_time(lambda S=S: clf.forget_direction(X[S], y[S]), args.repeat)
        lines.append(f"| forget k={k} (gradients + solve) | {t:.5f} ({t_retrain / t:.0f}x "
                     "faster than retraining) |")

    # inverse builds from the same per-sample gradient rows
    G = clf.backend_.per_sample_gradients(X, y)
    lam = clf.damping_.clamp_min(float(clf.damping_.max()))
    for kind in ("dense", "woodbury", "sherman_morrison"):
        t = _median_time(lambda kind=kind: build_operator(kind, G, n, lam), 1)
        lines.append(f"| build inverse={kind} from {n} gradient rows | {t:.3f} |")
    dense = build_operator("dense", G, n, lam).inverse()
    sm = build_operator("sherman_morrison", G, n, lam).inverse()
    err = float(torch.linalg.norm(dense - sm) / torch.linalg.norm(dense))
    lines.append(f"| relative difference dense vs Sherman-Morrison inverse | {err:.1e} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
