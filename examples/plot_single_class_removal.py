"""
Single-class removal: confusion distance against epsilon (digits)
=================================================================

Every training sample of one digit is forgotten from a logistic regression with one SSSE step,
for a grid of step sizes. The model retrained from scratch without the class never predicts it,
so the question is how far epsilon must go for the unlearned model to *behave* like that:

* top left: the normalized confusion distance on the forgotten samples ``S``,
  ``CD(hat, re) / (CD(hat, orig) + CD(hat, re))`` (0 = confuses ``S`` exactly like the retrained
  model, 1 = like the original), for both curvatures;
* top right: accuracy of the GGN-unlearned model on the test images of the forgotten digit
  (the retrained model: 0) and on the other digits (the retrained model's level is the target);
* bottom: test-set confusion matrices of the original model, the SSSE model at the best epsilon
  and the retrained model.

Removing a whole class moves the model much further than removing a few random samples, so the
best epsilon is well above 1; too large a step starts to damage the other classes.

Run: ``python examples/plot_single_class_removal.py [--quick] [--output DIR] [--digit D]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from sklearn_ssse import ForgetSplit, UnlearnableClassifier  # noqa: E402
from sklearn_ssse.datasets import load_digits_split  # noqa: E402
from sklearn_ssse.metrics import normalized_confusion_distance  # noqa: E402

FIGURE = "single_class_removal.png"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and epsilons (CI)")
    parser.add_argument("--output", default=".", help="folder of the PNG (default: .)")
    parser.add_argument("--digit", type=int, default=8, help="the class to forget (default 8)")
    args = parser.parse_args(argv)

    X, X_test, y, y_test = load_digits_split()
    if args.quick:
        X, y = X[:700], y[:700]
    c = args.digit
    # the forget set: every training sample of class c
    _, S = next(ForgetSplit(n_splits=1, forget_size=1.0, strategy="class", forget_class=c,
                            random_state=0).split(X, y))
    keep = np.setdiff1d(np.arange(len(X)), S)
    labels = np.arange(10)
    base = LogisticRegression(C=1.0, tol=1e-6, max_iter=2000)
    retrained = LogisticRegression(C=1.0, tol=1e-6, max_iter=2000).fit(X[keep], y[keep])
    epsilons = np.r_[0, np.logspace(-0.5, 2, 11 if args.quick else 21)]
    in_c, not_c = y_test == c, y_test != c

    curves, results, models = {}, {}, {}
    for curvature in ("empirical_fisher", "ggn"):
        # the paper's step (curvature of all the data); the default step="leave_out" is
        # compared with it in benchmarks/results/fidelity.md
        clf = UnlearnableClassifier(base, curvature=curvature, step="full").fit(X, y)
        theta = clf.get_parameters()
        delta = clf.forget_direction(X[S], y[S])
        unlearned = [clf.with_parameters(theta + e * delta) for e in epsilons]
        cd = np.array([normalized_confusion_distance(y[S], m, clf.estimator_, retrained,
                                                     X=X[S], labels=labels)
                       for m in unlearned])
        acc_c = np.array([m.score(X_test[in_c], y_test[in_c]) for m in unlearned])
        acc_rest = np.array([m.score(X_test[not_c], y_test[not_c]) for m in unlearned])
        best = int(np.argmin(cd))
        curves[curvature] = (cd, acc_c, acc_rest)
        models[curvature] = (clf.estimator_, unlearned[best])
        results[curvature] = {"best_epsilon": float(epsilons[best]),
                              "confusion_distance_best": float(cd[best]),
                              "accuracy_forgotten_class_best": float(acc_c[best]),
                              "accuracy_other_classes_best": float(acc_rest[best])}
        print(f"{curvature}: best epsilon {epsilons[best]:.3g}, normalized confusion distance "
              f"{cd[best]:.3f}; test accuracy on digit {c}: {acc_c[0]:.3f} -> {acc_c[best]:.3f}, "
              f"on the other digits: {acc_rest[0]:.3f} -> {acc_rest[best]:.3f}")
    re_c = retrained.score(X_test[in_c], y_test[in_c])
    re_rest = retrained.score(X_test[not_c], y_test[not_c])
    results["retrained"] = {"accuracy_forgotten_class": float(re_c),
                            "accuracy_other_classes": float(re_rest)}
    print(f"retrained: test accuracy on digit {c}: {re_c:.3f}, on the other digits: "
          f"{re_rest:.3f}")

    fig = plt.figure(figsize=(11, 7.6), constrained_layout=True)
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1])
    ax_cd = fig.add_subplot(grid[0, :2])
    ax_acc = fig.add_subplot(grid[0, 2])
    x = np.where(epsilons == 0, epsilons[1] / 2, epsilons)  # show epsilon = 0 on the log axis
    for curvature, color in (("empirical_fisher", "C0"), ("ggn", "C1")):
        cd = curves[curvature][0]
        b = results[curvature]["best_epsilon"]
        ax_cd.plot(x, cd, "o-", ms=3, color=color, label=f"{curvature} (best epsilon {b:.3g})")
        ax_cd.plot(x[np.argmin(cd)], cd.min(), "*", ms=14, color=color, mec="k")
    ax_cd.axhline(1, color="#c44e52", ls=":", lw=1.5, label="original")
    ax_cd.axhline(0, color="#55a868", ls="--", lw=1.5, label="retrained")
    ax_cd.set(xscale="log", xlabel="epsilon (leftmost point: 0)", ylim=(-0.05, 1.1),
              ylabel="normalized confusion distance on S",
              title=f"forget every training image of digit {c} ({len(S)} of {len(X)})")
    ax_cd.legend(fontsize=8, loc="upper right")
    ax_cd.grid(alpha=0.3)
    _, acc_c, acc_rest = curves["ggn"]
    ax_acc.plot(x, acc_c, "o-", ms=3, color="C3", label=f"digit {c} (test)")
    ax_acc.plot(x, acc_rest, "o-", ms=3, color="C2", label="other digits (test)")
    ax_acc.axhline(re_c, color="C3", ls="--", lw=1, label=f"retrained, digit {c}")
    ax_acc.axhline(re_rest, color="C2", ls="--", lw=1, label="retrained, others")
    ax_acc.set(xscale="log", xlabel="epsilon", ylabel="accuracy", ylim=(-0.05, 1.05),
               title="GGN: test accuracy")
    ax_acc.legend(fontsize=7, loc="center left")
    ax_acc.grid(alpha=0.3)

    original, tuned = models["ggn"]
    for j, (model, title) in enumerate(((original, "original"),
                                        (tuned, f"SSSE ggn, epsilon="
                                                f"{results['ggn']['best_epsilon']:.3g}"),
                                        (retrained, "retrained without the digit"))):
        ax = fig.add_subplot(grid[1, j])
        C = confusion_matrix(y_test, model.predict(X_test), labels=labels)
        ax.imshow(C, cmap="Blues", vmin=0, vmax=C.max())
        ax.set(xticks=labels, yticks=labels, xlabel="predicted", title=title)
        if j == 0:
            ax.set_ylabel("true digit (test set)")
        ax.axhline(c, color="C3", lw=10, alpha=0.15)
        for (i, k), v in np.ndenumerate(C):
            if v and (i == c or k == c):
                ax.text(k, i, str(v), ha="center", va="center", fontsize=6,
                        color="w" if v > C.max() / 2 else "k")
    fig.suptitle("Single-class removal on digits: one SSSE step vs retraining")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / FIGURE, dpi=100)
    plt.close(fig)
    print(f"figure written to {out / FIGURE}")
    return results


if __name__ == "__main__":
    main()
