"""
How far from retraining? The certificate against the true distance (digits)
===========================================================================

After a deletion, :meth:`~sklearn_ssse.UnlearnableClassifier.certify` tells how far the
parameters are from the model retrained without the forgotten rows, **without retraining**: one
pass over the remaining rows gives the gradient of the model's own objective there, and strong
convexity with modulus ``mu`` turns its norm into a distance,
``||theta - theta_retrained|| <= ||gradient|| / mu``.

For a logistic regression on scikit-learn's bundled digits data, a random 5 % of the training
set is forgotten with one SSSE step for step sizes epsilon between 0 (the original model) and 2,
each on a copy of the fitted model, and the certificate of every copy is compared with the true
distance to a model retrained exactly (``newton-cholesky``, ``tol=1e-14``). Two models:

* ``fit_intercept=False``: every parameter is penalised, ``mu`` is the penalty weight and the
  certificate is a guaranteed upper bound (``kind="bound"``);
* with an (unpenalised) intercept, scikit-learn's default: ``mu`` is estimated from the cached
  curvature and the certificate is an estimate (``kind="estimate"``).

Both curves have their minimum at the Newton step, epsilon = 1 (the GGN curvature is the exact
Hessian of the logistic loss); the certificate follows the true distance within a roughly
constant factor, so it can choose epsilon without retraining. The stars mark
:meth:`~sklearn_ssse.UnlearnableClassifier.refine`, which continues from the epsilon = 1 step with
Newton steps (the cached curvature, one gradient pass each) until the certificate is below
``1e-8``: the retrained model, at the cost of a few passes over the data.

Run: ``python examples/plot_certificate.py [--quick] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse._certificate import invariant_directions  # noqa: E402
from sklearn_ssse.datasets import load_digits_split  # noqa: E402

FIGURE = "certificate.png"
EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}


def true_distance(clf, theta, theta_re) -> float:
    """``||theta - theta_re||`` orthogonally to the softmax intercept shift (the objective and
    the predictions do not depend on it, so the retrained optimum is defined up to it)."""
    U = invariant_directions(clf)
    d = np.asarray(theta, dtype=np.float64) - theta_re
    return float(np.linalg.norm(d - U @ (U.T @ d)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and epsilons (CI)")
    parser.add_argument("--output", default=".", help="folder of the PNG (default: .)")
    args = parser.parse_args(argv)

    X, _, y, _ = load_digits_split()
    if args.quick:
        X, y = X[:600], y[:600]
    epsilons = np.linspace(0.0, 2.0, 11 if args.quick else 21)
    rng = np.random.default_rng(0)
    S = np.sort(rng.choice(len(X), size=int(0.05 * len(X)), replace=False))
    keep = np.setdiff1d(np.arange(len(X)), S)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True, sharey=True)
    results = {}
    for ax, (label, params) in zip(axes, (("no intercept", {"fit_intercept": False}),
                                          ("with intercept", {}))):
        clf = UnlearnableClassifier(LogisticRegression(**EXACT, **params),
                                    keep_training_data=True).fit(X, y)
        retrained = UnlearnableClassifier(LogisticRegression(**EXACT, **params)).fit(
            X[keep], y[keep])
        theta_re = np.asarray(retrained.get_parameters())
        bounds, trues, kind = [], [], None
        for eps in epsilons:
            unlearned = copy.deepcopy(clf).forget(X[S], y[S], epsilon=eps)
            cert = unlearned.certify()
            kind = cert.kind
            bounds.append(cert.distance)
            trues.append(true_distance(clf, unlearned.get_parameters(), theta_re))
        bounds, trues = np.array(bounds), np.array(trues)

        refined = copy.deepcopy(clf).forget(X[S], y[S]).refine(tol=1e-8)
        entry = refined.erasure_log_[-1]
        ref_cert = entry["certificate_after"]["distance"]
        ref_true = true_distance(clf, refined.get_parameters(), theta_re)

        ax.plot(epsilons, bounds, "o-", ms=3, color="C0",
                label=f"certificate ({kind}): certify().distance")
        ax.plot(epsilons, trues, "s-", ms=3, color="C1",
                label="true distance to the retrained model")
        ax.plot(1.0, ref_cert, "*", ms=15, color="C0", mec="k",
                label="after refine(tol=1e-8): certificate")
        ax.plot(1.0, max(ref_true, 1e-16), "*", ms=15, color="C1", mec="k",
                label="after refine(tol=1e-8): true distance")
        ax.annotate(f"refine: {entry['newton_steps']} Newton steps\nfrom the epsilon = 1 step",
                    xy=(1.0, ref_cert), xytext=(1.08, ref_cert * 30), fontsize=9)
        ax.annotate("", xy=(1.0, ref_cert * 3), xytext=(1.0, bounds[np.argmin(np.abs(
            epsilons - 1.0))] / 3), arrowprops=dict(arrowstyle="->", color="0.4"))
        ax.axvline(1.0, color="0.7", lw=1, zorder=0)
        ax.set(yscale="log", xlabel="epsilon (0 = original model, 1 = Newton step)",
               title=f"{label}: kind=\"{kind}\"")
        ax.grid(alpha=0.3, which="both")
        ratio = bounds / trues
        results[label] = {"kind": kind, "ratio_min": float(ratio.min()),
                          "ratio_max": float(ratio.max()),
                          "best_epsilon_certificate": float(epsilons[np.argmin(bounds)]),
                          "best_epsilon_true": float(epsilons[np.argmin(trues)]),
                          "refined_certificate": float(ref_cert),
                          "refined_true_distance": ref_true,
                          "newton_steps": int(entry["newton_steps"])}
        print(f"{label} ({kind}): certificate / true distance {ratio.min():.2f}-"
              f"{ratio.max():.2f}; best epsilon by certificate "
              f"{results[label]['best_epsilon_certificate']:.2f}, by true distance "
              f"{results[label]['best_epsilon_true']:.2f}; refine: certificate {ref_cert:.1e}, "
              f"true distance {ref_true:.1e} after {entry['newton_steps']} Newton steps")
    axes[0].set_ylabel("distance to the retrained parameters")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [lab.replace("(bound)", "(bound / estimate)") for lab in labels],
               loc="outside lower center", ncol=2, fontsize=9)
    fig.suptitle(f"Digits, LogisticRegression (GGN curvature): forget 5% ({len(S)} of {len(X)}) "
                 "training samples with one step of size epsilon")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / FIGURE, dpi=100)
    plt.close(fig)
    print(f"figure written to {out / FIGURE}")
    return results


if __name__ == "__main__":
    main()
