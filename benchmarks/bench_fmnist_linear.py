"""Fashion-MNIST benchmark of the linear backend (issue 5).

Multinomial ``LogisticRegression(C=0.1)`` on Fashion-MNIST (60,000 x 784, 10 classes, 7,850
parameters), printed as markdown tables and saved to ``benchmarks/results/fmnist_linear.md``:

1. curvature setup (``UnlearnableClassifier.from_fitted``: gradients / GGN factors and the
   inverse) per inverse choice and curvature: dense, block per class (the default, ``"auto"``),
   woodbury with ``m`` = 1k / 4k samples, and the paper's literal Sherman-Morrison loop, timed on
   a subset of rows and extrapolated to all of them; wall time, peak extra memory (resident set
   high-water mark) and the memory the operator keeps;
2. forget latency for k = 1, 60, 600, 6000 (a real ``forget`` call) against one retrain from
   scratch (``LogisticRegression.fit`` on the remaining rows, same settings);
3. fidelity of the empirical Fisher and GGN steps against the retrained model: normalized
   parameter distance, similarity ratio (macro ROC AUC on the forget set) and the test-accuracy
   gap, at ``epsilon=1`` and at the best epsilon (closed form: the distance is quadratic in
   epsilon).

Targets: forget >= 1000x faster than retraining; curvature setup of the default inverse no slower
than one retrain; dense build >= 10x faster than the literal Sherman-Morrison loop.

Protocol: the model is trained with lbfgs (timed: that is what a retrain costs) and then polished
with a few preconditioned Newton-CG steps to a gradient norm of ``--gtol``; the retrained
references for the fidelity table are the exact optima on the remaining rows (Newton-CG warm
started at the original parameters). Without that, the optimizer's own error (lbfgs stops at
``tol=1e-4``) would be of the size of the step being measured. The machine's load average is
printed with the results: the box is shared, so timings are indicative.

Run: ``python benchmarks/bench_fmnist_linear.py [--n-samples 60000] [--quick] [--out FILE]
[--data-dir DIR]``
(about 10 minutes on 2 idle cores at full size; ``--quick`` uses 6,000 samples).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._curvature import build_operator, sherman_morrison_inverse
from sklearn_ssse.datasets import load_fashion_mnist
from sklearn_ssse.metrics import normalized_parameter_distance, similarity_ratio

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "fmnist_linear.md"
CURVATURES = {"ef": "empirical_fisher", "ggn": "ggn"}


# ------------------------------------------------------------------------------ measurement
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(key + r":\s+(\d+) kB", f.read())
    return int(m.group(1)) * 1024 if m else 0


class Meter:
    """Wall time and peak extra resident memory of a block (Linux: VmHWM reset via
    ``/proc/self/clear_refs``; elsewhere the memory column is empty)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.rss0 = _status("VmRSS")
        except OSError:
            self.rss0 = None
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.peak = _status("VmHWM") - self.rss0 if self.rss0 is not None else None
        return False


def _log(msg: str) -> None:
    """Progress on stderr (stdout is the markdown report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _mb(nbytes) -> str:
    return "" if nbytes is None else f"{nbytes / 2**20:,.0f} MB"


def _secs(s: float) -> str:
    if s >= 100:
        return f"{s:,.0f} s"
    if s >= 1:
        return f"{s:.1f} s"
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us"


# ------------------------------------------------------------------------------ exact optima
class _Objective:
    """sklearn's multinomial objective in sum form, ``sum_i -log p(y_i|x_i) + ||W||^2 / (2C)``
    (intercepts unpenalised), on parameters laid out like the linear backend (class rows
    ``[w_c, b_c]``)."""

    def __init__(self, X, y, C, n_classes):
        self.Xa = torch.from_numpy(np.hstack([X, np.ones((len(X), 1))]))
        self.Y = torch.nn.functional.one_hot(torch.from_numpy(y), n_classes).double()
        self.shape = (n_classes, self.Xa.shape[1])
        self.pen = torch.ones(self.shape, dtype=torch.float64) / C
        self.pen[:, -1] = 0.0

    def value_grad(self, theta):
        W = theta.reshape(self.shape)
        logp = torch.log_softmax(self.Xa @ W.T, 1)
        P = logp.exp()
        f = -(self.Y * logp).sum() + 0.5 * (self.pen * W * W).sum()
        G = (P - self.Y).T @ self.Xa + self.pen * W
        return float(f), G.reshape(-1), P

    def hvp(self, P, v):
        Z = self.Xa @ v.reshape(self.shape).T
        Q = P * Z - P * (P * Z).sum(1, keepdim=True)  # (diag(p) - p p^T) z per sample
        return (Q.T @ self.Xa + self.pen * v.reshape(self.shape)).reshape(-1)


def newton_polish(obj: _Objective, theta, precond, gtol: float, max_newton: int = 15):
    """Newton-CG, preconditioned by a curvature operator (``precond.solve_sum``); the free
    direction of the softmax intercepts (all equal) is projected out. Returns the optimum and
    the final gradient norm."""
    u = torch.zeros(obj.shape, dtype=torch.float64)
    u[:, -1] = 1.0
    u = u.reshape(-1) / math.sqrt(obj.shape[0])
    theta = theta.clone()
    f, g, P = obj.value_grad(theta)
    g_first = float(g.norm())
    for _ in range(max_newton):
        if float(g.norm()) < gtol:
            break
        forcing = min(0.1, math.sqrt(float(g.norm()) / g_first))  # inexact Newton (Eisenstat)
        # PCG on H d = -g
        d = torch.zeros_like(g)
        r = -g - (-g @ u) * u
        z = precond.solve_sum(r)
        z = z - (z @ u) * u
        p, rz = z.clone(), float(r @ z)
        r0 = float(r.norm())
        for _ in range(200):
            Hp = obj.hvp(P, p)
            alpha = rz / float(p @ Hp)
            d += alpha * p
            r -= alpha * Hp
            if float(r.norm()) < forcing * r0:
                break
            z = precond.solve_sum(r)
            z = z - (z @ u) * u
            rz, rz_old = float(r @ z), rz
            p = z + (rz / rz_old) * p
        step, slope = 1.0, float(g @ d)
        while True:  # backtracking (Armijo)
            f_new, g_new, P_new = obj.value_grad(theta + step * d)
            if f_new <= f + 1e-4 * step * slope or step < 1e-6:
                break
            step *= 0.5
        theta, f, g, P = theta + step * d, f_new, g_new, P_new
    return theta, float(g.norm())


# ------------------------------------------------------------------------------ the benchmark
def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=60000, help="training rows used")
    parser.add_argument("--data-dir", "--data-path", dest="data_path", default=None,
                        help="folder of the Fashion-MNIST IDX files (default: "
                        "$SKLEARN_SSSE_FASHION_MNIST or /usr/share/datasets/fashion-mnist); "
                        "without them the benchmark is skipped with a message")
    parser.add_argument("--C", type=float, default=0.1, help="LogisticRegression's C")
    parser.add_argument("--max-iter", type=int, default=1000, help="lbfgs iterations (retrain)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 60, 600, 6000],
                        help="forget-set sizes for the latency table")
    parser.add_argument("--fidelity-k", type=int, nargs="+", default=[60, 600, 6000],
                        help="forget-set sizes for the fidelity table")
    parser.add_argument("--woodbury-m", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--dense", nargs="*", default=["ggn", "ef"], choices=list(CURVATURES),
                        help="curvatures built with inverse='dense' (about 2 min each at 60k)")
    parser.add_argument("--sm-rows", type=int, default=24,
                        help="rows of the timed Sherman-Morrison subset")
    parser.add_argument("--gtol", type=float, default=1e-6,
                        help="gradient norm (sum form) of the polished optima")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each forget timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="6,000 samples, small k (a smoke run; writes no file by default)")
    parser.add_argument("--out", default=None,
                        help=f"markdown file to write (default {DEFAULT_OUT}, none with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_samples, args.k, args.fidelity_k = 6000, [1, 6, 60, 600], [60, 600]
        args.woodbury_m, args.sm_rows = [256, 1024], 8
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()

    try:
        X, y = load_fashion_mnist(args.data_path, kind="train", n_samples=args.n_samples)
        X_test, y_test = load_fashion_mnist(args.data_path, kind="test")
    except FileNotFoundError as exc:
        print(f"_skipped: this benchmark needs Fashion-MNIST: {exc}._")
        return ""
    n, n_classes = len(X), 10
    d = (X.shape[1] + 1) * n_classes
    base = LogisticRegression(C=args.C, max_iter=args.max_iter)
    lines = [
        f"## Fashion-MNIST, multinomial LogisticRegression(C={args.C}) — n={n:,}, "
        f"d={d:,} parameters",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); load average at start "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ]

    # ---- training (timed) and polishing -----------------------------------------------------
    _log(f"training on {n} rows")
    with Meter() as m_fit:
        lr = clone(base).fit(X, y)
    _log(f"trained in {m_fit.seconds:.1f} s; polishing")
    fit_iters = int(np.max(lr.n_iter_))
    pre = UnlearnableClassifier.from_fitted(lr, X, y, curvature="ggn", inverse="block")
    obj = _Objective(X, y, args.C, n_classes)
    theta_lbfgs = pre.backend_.get_parameters()
    g_lbfgs = float(obj.value_grad(theta_lbfgs)[1].norm())
    theta0, g0 = newton_polish(obj, theta_lbfgs, pre.curvature_, args.gtol)
    pre.backend_.set_parameters(theta0)  # lr now holds the exact optimum (copy=False below)
    lr = pre.estimator_
    acc0 = lr.score(X_test, y_test)

    # ---- 1. curvature setup -----------------------------------------------------------------
    setup_rows, setups = [], {}

    def build(label, curvature, inverse, **kw):
        _log(f"setup {label} {curvature}")
        with Meter() as m:
            clf = UnlearnableClassifier.from_fitted(lr, X, y, curvature=CURVATURES[curvature],
                                                    inverse=inverse, random_state=args.seed, **kw)
        setups[(label, curvature)] = clf
        setup_rows.append((label, curvature, m.seconds, m.peak, clf.curvature_.nbytes, ""))
        return clf

    for c in ("ef", "ggn"):
        clf = build("block per class (default)", c, "auto")
        assert clf.inverse_ == "block", clf.inverse_
    for c in args.dense:
        build("dense", c, "dense")
    for m_ in args.woodbury_m:
        for c in ("ef", "ggn"):
            q = 1 if c == "ef" else n_classes
            if m_ * q > d:
                setup_rows.append((f"woodbury m={m_:,}", c, None, None, None,
                                   f"n/a: rank m*{q} = {m_ * q:,} > d; use dense"))
                continue
            build(f"woodbury m={m_:,}", c, "woodbury", fisher_max_samples=m_)
    # the paper's literal loop: timed on a subset of rows, extrapolated to all n * q rows
    sm = {}
    backend = setups[("block per class (default)", "ggn")].backend_
    for c in ("ef", "ggn"):
        clf_c = setups[("block per class (default)", c)]
        lam = clf_c.damping_.clamp_min(float(clf_c.damping_.max()))  # the SM/woodbury floor
        R = backend.curvature_rows(X[: args.sm_rows], y[: args.sm_rows], CURVATURES[c])
        R = R.reshape(-1, d)[: args.sm_rows]
        _log(f"sherman-morrison {c} on {len(R)} rows")
        with Meter() as m:
            M_inv = sherman_morrison_inverse(R, n * lam)
        per_row = m.seconds / len(R)
        total_rows = n * (1 if c == "ef" else n_classes)
        V = torch.from_numpy(rng.normal(size=(d, 3)))
        check = build_operator("woodbury", R, n, lam).solve_sum(V)
        err = float((M_inv @ V - check).abs().max() / check.abs().max())
        sm[c] = per_row * total_rows
        setup_rows.append((f"sherman_morrison (literal loop, {len(R)} rows timed)", c,
                           sm[c], m.peak, d * d * 8,
                           f"extrapolated: {_secs(per_row)}/row x {total_rows:,} rows; "
                           f"matches woodbury on the subset to {err:.0e}"))
        del M_inv

    # ---- 2. forget latency ------------------------------------------------------------------
    k_retrain = min(600, n // 10)
    keep = np.setdiff1d(np.arange(n), rng.choice(n, size=k_retrain, replace=False))
    _log("retrain")
    with Meter() as m_retrain:
        retrained_once = clone(base).fit(X[keep], y[keep])
    t_retrain = m_retrain.seconds
    latency_models = {
        "block EF": setups[("block per class (default)", "ef")],
        "block GGN": setups[("block per class (default)", "ggn")],
    }
    if "ggn" in args.dense:
        latency_models["dense GGN"] = setups[("dense", "ggn")]
    upd = UnlearnableClassifier.from_fitted(lr, X, y, curvature="ggn", inverse="block",
                                            update_curvature=True)
    latency_models["block GGN + update_curvature"] = upd
    latency = {}
    _log("forget latency")
    for k in args.k:
        S = rng.choice(n, size=k, replace=False)
        for name, clf in latency_models.items():
            times = []
            for _ in range(args.repeat):  # median over fresh copies (the load is shared)
                work = copy.deepcopy(clf)
                t0 = time.perf_counter()
                work.forget(X[S], y[S])
                times.append(time.perf_counter() - t0)
                del work
            latency[(k, name)] = float(np.median(times))

    # ---- 3. fidelity ------------------------------------------------------------------------
    fidelity = []
    classes = lr.classes_
    for k in args.fidelity_k:
        S = np.sort(rng.choice(n, size=k, replace=False))
        keep = np.setdiff1d(np.arange(n), S)
        _log(f"fidelity k={k}")
        obj_k = _Objective(X[keep], y[keep], args.C, n_classes)
        # the dense Hessian at theta0 (when built) preconditions best: a few CG steps per Newton
        precond = (setups[("dense", "ggn")] if "ggn" in args.dense else pre).curvature_
        theta_ret, g_ret = newton_polish(obj_k, theta0, precond, args.gtol)
        ret = pre.backend_.with_parameters(theta_ret)
        acc_ret = ret.score(X_test, y_test)
        P_ret_S, P_orig_S = ret.predict_proba(X[S]), lr.predict_proba(X[S])
        cands = [("EF", "block per class (default)", "ef"),
                 ("GGN", "block per class (default)", "ggn")]
        if "ef" in args.dense:
            cands.append(("EF", "dense", "ef"))
        if "ggn" in args.dense:
            cands.append(("GGN", "dense", "ggn"))
        for cname, inv, c in cands:
            clf = setups[(inv, c)]
            delta = clf.forget_direction(X[S], y[S])
            best = float((theta_ret - theta0) @ delta / (delta @ delta))
            for eps_label, eps in (("1", 1.0), (f"best ({best:.2f})", best)):
                theta_hat = theta0 + eps * delta
                hat = clf.with_parameters(theta_hat)
                npd = normalized_parameter_distance(theta_hat, theta0, theta_ret)
                try:
                    gamma = similarity_ratio(y[S], hat.predict_proba(X[S]), P_orig_S, P_ret_S,
                                             labels=classes)
                except ValueError:  # a class absent from S: AUC undefined
                    gamma = float("nan")
                acc_hat = hat.score(X_test, y_test)
                fidelity.append((k, cname, inv.split(" ")[0], eps_label, npd, gamma,
                                 100 * (acc_hat - acc_ret), g_ret))
        fidelity.append((k, "original", "", "0", 1.0, 1.0, 100 * (acc0 - acc_ret), g_ret))

    # ---- report -----------------------------------------------------------------------------
    lines += [
        f"Training (lbfgs, tol=1e-4, from scratch): {_secs(m_fit.seconds)} ({fit_iters} "
        f"iterations), test accuracy {100 * acc0:.2f}%. Gradient norm (sum form) after lbfgs "
        f"{g_lbfgs:.1e}, after Newton-CG polishing {g0:.1e}. "
        f"Retrain from scratch on n - {k_retrain} rows: "
        f"**{_secs(t_retrain)}** ({int(np.max(retrained_once.n_iter_))} iterations).",
        "",
        "### 1. Curvature setup (from_fitted: factors + inverse)",
        "",
        "| inverse | curvature | setup time | peak extra memory | operator memory | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, c, secs, peak, held, note in setup_rows:
        t = "" if secs is None else _secs(secs)
        lines.append(f"| {label} | {c.upper()} | {t} | {_mb(peak)} | {_mb(held)} | {note} |")

    names = list(latency_models)
    lines += ["", "### 2. Forget latency (one `forget` call) vs one retrain", "",
              "| k | " + " | ".join(names) + " | retrain | speed-up (block GGN) |",
              "| --- " * (len(names) + 3) + "|"]
    for k in args.k:
        cells = [_secs(latency[(k, nm)]) for nm in names]
        lines.append(f"| {k:,} | " + " | ".join(cells) + f" | {_secs(t_retrain)} | "
                     f"{t_retrain / latency[(k, 'block GGN')]:,.0f}x |")

    lines += ["", "### 3. Fidelity to the retrained model (exact optimum on the remaining rows)",
              "",
              "Normalized parameter distance ||hat - re|| / ||orig - re|| (0 = retrained, "
              "1 = original), similarity ratio on the forget set (macro ROC AUC; 0 = like the "
              "retrained model, 1 = like the original), test-accuracy gap to the retrained model "
              "(percentage points). `best` is the epsilon minimising the parameter distance. "
              f"References polished to a gradient norm <= {max(f[-1] for f in fidelity):.1e}.",
              "",
              "| k | curvature | inverse | epsilon | param. distance | similarity ratio | "
              "test acc. gap (pp) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, cname, inv, eps_label, npd, gamma, gap, _ in fidelity:
        lines.append(f"| {k:,} | {cname} | {inv} | {eps_label} | {npd:.3f} | {gamma:.3f} | "
                     f"{gap:+.3f} |")

    # ---- targets ----------------------------------------------------------------------------
    worst_forget = max(latency[(k, "block GGN")] for k in args.k)
    setup_default = {c: next(r[2] for r in setup_rows if r[0].startswith("block") and r[1] == c)
                     for c in ("ef", "ggn")}
    lines += ["", "### Targets", "",
              "| target | measured | met |", "| --- | --- | --- |",
              f"| forget >= 1000x faster than retraining | slowest forget (block GGN, k="
              f"{max(args.k):,}) {_secs(worst_forget)} vs retrain {_secs(t_retrain)}: "
              f"{t_retrain / worst_forget:,.0f}x | "
              f"{'yes' if t_retrain / worst_forget >= 1000 else 'no'} |"]
    for c in ("ef", "ggn"):
        lines.append(f"| setup of the default inverse (block, {c.upper()}) <= one retrain | "
                     f"{_secs(setup_default[c])} vs {_secs(t_retrain)} | "
                     f"{'yes' if setup_default[c] <= t_retrain else 'no'} |")
    for c in args.dense:
        dense_t = next(r[2] for r in setup_rows if r[0] == "dense" and r[1] == c)
        lines.append(f"| dense build >= 10x faster than the literal Sherman-Morrison loop "
                     f"({c.upper()}) | {_secs(dense_t)} vs {_secs(sm[c])} (extrapolated): "
                     f"{sm[c] / dense_t:,.0f}x | {'yes' if sm[c] / dense_t >= 10 else 'no'} |")
    lines += ["", f"Total benchmark time {_secs(time.perf_counter() - t_start)}; load average at "
              f"the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}."]
    report = "\n".join(lines) + "\n"
    print(report)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report)
    return report


if __name__ == "__main__":
    main()
