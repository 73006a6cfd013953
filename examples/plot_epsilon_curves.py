"""
Similarity ratio and parameter distance against epsilon (digits, random removal)
================================================================================

For a logistic regression on scikit-learn's bundled digits data, a random 5 % of the training set
is forgotten with one SSSE step for a grid of step sizes epsilon, over several random forget sets
(:class:`~sklearn_ssse.model_selection.ForgetSplit`).
:func:`~sklearn_ssse.model_selection.epsilon_sweep` evaluates the whole grid in closed form
(one fit, one erasure direction and one retrained reference per forget set) and returns scores
in the format of :class:`~sklearn.model_selection.GridSearchCV`'s ``cv_results_``.

Two measures, both "0 = the retrained model, 1 = the original model":

* the similarity ratio on the forget set ``S`` (from the log-loss on ``S``),
* the normalized parameter distance ``||theta_eps - theta_re|| / ||theta* - theta_re||``,

for the two curvatures. With ``curvature="ggn"`` (the exact Hessian of the logistic loss) the
best epsilon is close to 1, the Newton step; the empirical Fisher has a different scale and its
best epsilon lies elsewhere, with a larger remaining distance.

Run: ``python examples/plot_epsilon_curves.py [--quick] [--output DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from sklearn_ssse import ForgetSplit, UnlearnableClassifier, epsilon_sweep  # noqa: E402
from sklearn_ssse.datasets import load_digits_split  # noqa: E402

FIGURE = "epsilon_curves.png"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and splits (CI)")
    parser.add_argument("--output", default=".", help="folder of the PNG (default: .)")
    args = parser.parse_args(argv)

    X, _, y, _ = load_digits_split()
    if args.quick:
        X, y = X[:600], y[:600]
    epsilons = np.logspace(-1.5, 1, 11 if args.quick else 21)
    cv = ForgetSplit(n_splits=2 if args.quick else 5, forget_size=0.05, random_state=0)
    base = LogisticRegression(C=1.0, tol=1e-6, max_iter=2000)

    sweeps = {}
    for curvature in ("empirical_fisher", "ggn"):
        clf = UnlearnableClassifier(base, curvature=curvature, keep_training_data=True)
        sweeps[curvature] = epsilon_sweep(clf, X, y, epsilons=epsilons, cv=cv,
                                          scoring=["similarity_ratio", "parameter_distance"],
                                          refit="parameter_distance")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    results = {}
    for curvature, color in (("empirical_fisher", "C0"), ("ggn", "C1")):
        cvr = sweeps[curvature].cv_results
        for ax, name in zip(axes, ("similarity_ratio", "parameter_distance")):
            mean = -cvr[f"mean_test_{name}"]  # scorers are "higher is better": negated
            std = cvr[f"std_test_{name}"]
            ax.plot(epsilons, mean, "o-", ms=3, color=color, label=curvature)
            ax.fill_between(epsilons, mean - std, mean + std, color=color, alpha=0.2)
            best = int(np.argmin(mean))
            ax.plot(epsilons[best], mean[best], "*", ms=14, color=color, mec="k")
        dist = -cvr["mean_test_parameter_distance"]
        ratio = -cvr["mean_test_similarity_ratio"]
        results[curvature] = {
            "best_epsilon": float(epsilons[np.argmin(dist)]),
            "best_parameter_distance": float(dist.min()),
            "best_similarity_ratio": float(ratio.min()),
            "n_fits": int(sweeps[curvature].n_fits)}
        print(f"{curvature}: best epsilon {epsilons[np.argmin(dist)]:.3g}, parameter distance "
              f"{dist.min():.3f}, similarity ratio {ratio.min():.3f} "
              f"({sweeps[curvature].n_fits} fit(s) for {len(epsilons)} epsilons x "
              f"{cv.get_n_splits()} forget sets)")
    for ax, label in zip(axes, ("similarity ratio on S (log-loss)",
                                "normalized parameter distance")):
        ax.axhline(1, color="#c44e52", ls=":", lw=1.5, label="original")
        ax.axhline(0, color="#55a868", ls="--", lw=1.5, label="retrained")
        ax.axvline(1, color="0.6", lw=1)
        ax.set(xscale="log", xlabel="epsilon", ylabel=label, ylim=(-0.05, 1.5))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Digits, LogisticRegression: forget 5% of {len(X)} training samples "
                 f"(mean +- std over {cv.get_n_splits()} forget sets; * = best epsilon)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / FIGURE, dpi=100)
    plt.close(fig)
    print(f"figure written to {out / FIGURE}")
    return results


if __name__ == "__main__":
    main()
