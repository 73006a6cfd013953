"""Many deletions in a row (issue 7): 1,000 single-sample forgets on one fitted model.

After every ``--every`` deletions the unlearned model is compared with a model retrained from
scratch on the samples that remain (same hyper-parameters, solved to a tight tolerance):

* test accuracy of both (and the difference): the unlearned model should stay in the retrained
  model's range;
* accuracy on the samples forgotten so far (original model / unlearned / retrained);
* parameter norms ``||theta||`` and the normalised parameter distance
  ``||theta_hat - theta_retrained|| / ||theta_original - theta_retrained||``
  (0 = as retrained, 1 = as far as the original model, > 1 = drifted beyond it);
* the largest ``relative_update_norm`` in the erasure record over each window (a cheap signal
  available without retraining: it jumps several-fold in the windows where the model breaks
  down);
* that every parameter stays finite, and the cost per forget.

Configurations: the default empirical Fisher, the GGN (= Hessian here), each with and without
``update_curvature`` (leave-k-out curvature by Woodbury downdates).

Prints markdown. Run::

    python benchmarks/bench_many_deletions.py                     # digits, 1000 deletions
    python benchmarks/bench_many_deletions.py --dataset synthetic --n-train 5000
    python benchmarks/bench_many_deletions.py --dataset fmnist --n-train 6000
    python benchmarks/bench_many_deletions.py --quick             # 200 deletions
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from sklearn_ssse import UnlearnableClassifier

CONFIGS = {
    "empirical_fisher": {"curvature": "empirical_fisher", "update_curvature": False},
    "empirical_fisher + downdates": {"curvature": "empirical_fisher", "update_curvature": True},
    "ggn": {"curvature": "ggn", "update_curvature": False},
    "ggn + downdates": {"curvature": "ggn", "update_curvature": True},
}


def load(name: str, n_train: int | None, seed: int, data_dir=None):
    if name == "digits":
        from sklearn_ssse.datasets import load_digits_split

        X_train, X_test, y_train, y_test = load_digits_split(random_state=seed)
    elif name == "synthetic":
        n = (n_train or 5000) * 5 // 4
        X, y = make_classification(n_samples=n, n_features=20, n_informative=10,
                                   n_classes=5, n_clusters_per_class=2, flip_y=0.05,
                                   class_sep=1.0, random_state=seed)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2,
                                                            random_state=seed, stratify=y)
    elif name == "fmnist":
        from sklearn_ssse.datasets import load_fashion_mnist

        X_train, y_train = load_fashion_mnist(data_dir, kind="train", n_samples=n_train or 6000)
        X_test, y_test = load_fashion_mnist(data_dir, kind="test", n_samples=2000)
    else:
        raise ValueError(name)
    if n_train is not None and len(X_train) > n_train:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, X_test, y_train, y_test


def _theta(est) -> np.ndarray:
    return np.hstack([est.coef_, est.intercept_[:, None]]).ravel()


def run(X, y, X_test, y_test, base, order, checkpoints, params, original, retrained
        ) -> list[dict]:
    """One configuration: forget ``order`` one sample at a time, measure at ``checkpoints``.

    ``retrained`` caches the reference models by checkpoint (they do not depend on the
    configuration)."""
    clf = UnlearnableClassifier(base, **params).fit(X, y)
    theta0 = clf.get_parameters()
    acc0 = clf.score(X_test, y_test)
    rows = []
    done, seconds, finite, prev = 0, 0.0, True, 0
    for stop in checkpoints:
        t0 = time.perf_counter()
        for i in order[done:stop]:
            clf.forget(X[i:i + 1], y[i:i + 1])
        seconds += time.perf_counter() - t0
        done = stop
        theta = clf.get_parameters()
        finite &= bool(np.isfinite(theta).all())
        if stop not in retrained:
            keep = np.ones(len(X), dtype=bool)
            keep[order[:stop]] = False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = clone(base).fit(X[keep], y[keep])
            retrained[stop] = ref
        ref = retrained[stop]
        theta_re = _theta(ref)
        gone = order[:stop]
        rows.append({
            "deleted": stop,
            "acc": clf.score(X_test, y_test),
            "acc_retrained": ref.score(X_test, y_test),
            "acc_original": acc0,
            "acc_forgotten": clf.score(X[gone], y[gone]),
            "acc_forgotten_retrained": ref.score(X[gone], y[gone]),
            "acc_forgotten_original": float(np.mean(original.predict(X[gone]) == y[gone])),
            "norm": float(np.linalg.norm(theta)),
            "norm_retrained": float(np.linalg.norm(theta_re)),
            "norm_original": float(np.linalg.norm(theta0)),
            "distance": float(np.linalg.norm(theta - theta_re)
                              / np.linalg.norm(theta0 - theta_re)),
            "finite": finite,
            "ms_per_forget": 1000 * seconds / stop,
            # the erasure record sees the drift coming: largest relative step in the window
            "max_rel_step": max(e["relative_update_norm"] or 0.0
                                for e in clf.erasure_log_[prev:]),
        })
        prev = stop
    assert len(clf.erasure_log_) == checkpoints[-1]
    return rows


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["digits", "synthetic", "fmnist"],
                        default="digits")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training samples (default: all of digits' 1347, 5000 synthetic, "
                             "6000 Fashion-MNIST)")
    parser.add_argument("--deletions", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="deletions between checkpoints")
    parser.add_argument("--C", type=float, default=1.0, help="LogisticRegression's C")
    parser.add_argument("--epsilon", type=float, default=1.0, help="step size of every forget")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 deletions, 4 checkpoints")
    parser.add_argument("--figures", default=None, help="folder for a PNG of the drift")
    parser.add_argument("--data-dir", default=None,
                        help="--dataset fmnist: folder of the Fashion-MNIST IDX files (default: "
                        "$SKLEARN_SSSE_FASHION_MNIST or /usr/share/datasets/fashion-mnist); "
                        "without them the benchmark is skipped with a message")
    args = parser.parse_args(argv)
    if args.quick:
        args.deletions, args.every = 200, 50

    try:
        X, X_test, y, y_test = load(args.dataset, args.n_train, args.seed, args.data_dir)
    except FileNotFoundError as exc:
        print(f"_skipped: --dataset {args.dataset} needs Fashion-MNIST: {exc}._")
        return ""
    if args.deletions >= len(X):
        raise SystemExit(f"--deletions {args.deletions} >= {len(X)} training samples")
    base = LogisticRegression(C=args.C, max_iter=20000, tol=1e-10)
    order = np.random.default_rng(args.seed).permutation(len(X))[:args.deletions]
    checkpoints = list(range(args.every, args.deletions + 1, args.every))
    if checkpoints[-1] != args.deletions:
        checkpoints.append(args.deletions)
    retrained = {}
    original = clone(base).fit(X, y)

    n_params = (X.shape[1] + 1) * len(np.unique(y))
    out = [f"## {args.deletions} single-sample forgets in a row: {args.dataset} "
           f"(n={len(X)}, {n_params} parameters, LogisticRegression C={args.C}, "
           f"epsilon={args.epsilon:g})", "",
           f"Checkpoint every {args.every} deletions; the reference is LogisticRegression "
           "retrained from scratch on the remaining samples. `dist` = normalised parameter "
           "distance to the retrained model (0 = retrained, 1 = original). Accuracies on the "
           f"{len(X_test)}-sample test set unless noted.", ""]
    results = {}
    for name in args.configs:
        t0 = time.perf_counter()
        rows = run(X, y, X_test, y_test, base, order, checkpoints,
                   dict(CONFIGS[name], epsilon=args.epsilon), original, retrained)
        results[name] = rows
        out += [f"### {name} ({time.perf_counter() - t0:.1f} s including retrains)", "",
                "| deleted | test acc | retrained | diff | forgotten acc (orig / unlearned / "
                "retrained) | norm (unlearned / retrained) | dist | max rel. step | finite | "
                "ms / forget |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            out.append(
                f"| {r['deleted']} | {r['acc']:.4f} | {r['acc_retrained']:.4f} | "
                f"{r['acc'] - r['acc_retrained']:+.4f} | {r['acc_forgotten_original']:.3f} / "
                f"{r['acc_forgotten']:.3f} / {r['acc_forgotten_retrained']:.3f} | "
                f"{r['norm']:.3f} / {r['norm_retrained']:.3f} | {r['distance']:.3f} | "
                f"{r['max_rel_step']:.2e} | "
                f"{'yes' if r['finite'] else 'NO'} | {r['ms_per_forget']:.2f} |")
        out.append("")
    # summary: is the unlearned accuracy inside the range of the retrained accuracies?
    re_acc = [r["acc_retrained"] for r in next(iter(results.values()))]
    acc0 = original.score(X_test, y_test)
    lo, hi = min(re_acc), max(re_acc)
    out += ["### Summary", "",
            f"Retrained test accuracy over the checkpoints: {lo:.4f} .. {hi:.4f} "
            f"(original {acc0:.4f}).", "",
            "| configuration | max abs acc diff | unlearned acc range | inside retrained range "
            "(+-1 test sample) | final dist | final norm / retrained | all finite |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    tol = 1.0 / len(X_test)
    for name, rows in results.items():
        accs = [r["acc"] for r in rows]
        inside = all(lo - tol - 1e-12 <= a <= hi + tol + 1e-12 for a in accs)
        out.append(f"| {name} | {max(abs(r['acc'] - r['acc_retrained']) for r in rows):.4f} | "
                   f"{min(accs):.4f} .. {max(accs):.4f} | {'yes' if inside else 'no'} | "
                   f"{rows[-1]['distance']:.3f} | "
                   f"{rows[-1]['norm'] / rows[-1]['norm_retrained']:.3f} | "
                   f"{'yes' if all(r['finite'] for r in rows) else 'NO'} |")
    if args.figures:
        _figure(results, args)
    text = "\n".join(out)
    print(text)
    return text


def _figure(results, args) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        return
    from pathlib import Path

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    first = next(iter(results.values()))
    xs = [r["deleted"] for r in first]
    axes[0].plot(xs, [r["acc_retrained"] for r in first], "k--", label="retrained")
    for name, rows in results.items():
        axes[0].plot(xs, [r["acc"] for r in rows], marker=".", label=name)
        axes[1].plot(xs, [r["distance"] for r in rows], marker=".", label=name)
    axes[0].set(xlabel="samples deleted", ylabel="test accuracy")
    axes[1].set(xlabel="samples deleted", ylabel="normalised distance to retrained")
    axes[1].axhline(1.0, color="grey", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{args.deletions} single forgets, {args.dataset}")
    fig.tight_layout()
    folder = Path(args.figures)
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"many_deletions_{args.dataset}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
