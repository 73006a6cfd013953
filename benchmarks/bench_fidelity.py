"""Fidelity benchmark: how close does one SSSE step land to retraining, on real data sets?

For every data set (``_fidelity_data.py``) a ``LogisticRegression(C=1.0, tol=1e-10,
max_iter=10000)`` (lbfgs) is wrapped in :class:`~sklearn_ssse.UnlearnableClassifier` and fitted
once per configuration of the unlearner (:data:`CONFIGS`).  Forget sets ``S``: a random 1 % and a
random 5 % of the training rows (``--n-repeats`` seeds each) and, for multiclass data, every
training row of the most frequent class (ties: the smallest label; one repeat).  For each ``S``:

* reference ``theta_ret``: a clone of the LogisticRegression retrained on ``D \\ S`` (tol=1e-10);
* exact leave-S-out Newton step, in numpy: ``theta_N = theta* - H_R^{-1} grad_R(theta*)`` for
  scikit-learn's objective ``C sum_{i in R} loss_i + ||W||^2 / 2`` (intercepts unpenalised) over
  the remaining rows ``R``, with its exact Hessian (softmax: ``sum_i (diag(p) - p p^T) (x)
  xa_i xa_i^T`` times ``C``, plus the identity on the weights; binary: the sigmoid's) and a ridge
  of ``1e-8`` on the intercepts (the softmax intercepts have a free constant shift).  The same
  step with the full-data Hessian ``H_D`` is reported as well.  :func:`self_check` compares the
  gradient and the Hessian with finite differences before anything runs;
* for each configuration, ``delta = clf.forget_direction(X_S, y_S)`` and the normalised parameter
  distance ``d(eps) = ||theta* + eps delta - theta_ret|| / ||theta* - theta_ret||`` at ``eps = 1``
  and at the best ``eps`` of the grid ``logspace(-2, 1, 31) U {1}``.  The best ``eps`` is taken on
  the curve averaged over the repeats (one ``eps`` per scenario, as a tuned ``epsilon`` would be),
  not per repeat.  Also the test-accuracy gap to the retrained model at ``eps = 1`` (percentage
  points, unlearned minus retrained) and the time of one ``forget_direction`` call.

Parameter comparison (softmax models): the softmax is invariant to adding one vector to every
class row ``[w_c, b_c]``, so each parameter column is centred across the classes (the mean over
classes of the rows is subtracted) before taking distances.  For random deletions this is a no-op
up to rounding (the L2 penalty centres the weights, and the intercepts' shift never moves from 0).
For class removal the retrained model has ``C - 1`` classes: only the rows of the remaining
classes of ``theta*``, ``theta* + eps delta`` and the Newton steps are compared with it, each set
of rows centred over the remaining classes.  Accuracy after class removal is measured on the test
rows of the remaining classes (a prediction of the removed class counts as an error).

Configurations whose construction, fit or ``forget_direction`` raise (e.g. a ``TypeError`` for a
keyword the library does not have yet) are reported as ``n/a (reason)`` and the run continues.
Every configuration gets ``random_state=0`` (the sub-sampled woodbury curvature is random).
Configurations whose curvature would obviously need more than ``--max-gb`` of memory are skipped
before they are fitted (logged); each fit also runs under a ``--fit-timeout`` alarm.

Run it with one BLAS thread so that timings on a shared machine mean something::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_fidelity.py [--quick] [--datasets cells tissue] [--n-repeats 3]

``--kinds`` compares the inverse kinds instead (dense, ekfac, block, woodbury and what ``auto``
picks at its default budget) on Fashion-MNIST (multinomial LR on the pixels, 7,850 parameters)
and on a random-features model of 50,010 parameters (:func:`random_features`), against
warm-started retraining (tol=1e-10, resp. 1e-8); results in ``results/fidelity_kinds.md``::

    env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/bench_fidelity.py --kinds --kinds-models linear --fmnist-n 20000 \\
        --n-repeats 2
    ... --kinds --kinds-models rf --rf-n 3000 --n-repeats 1 --skip-kinds block

The markdown report is printed on stdout and written to ``--out``; raw numbers go to ``--json``.
Progress lines go to stderr (``run_all.py`` takes a benchmark's stdout as its report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
from scipy.special import expit, logsumexp, softmax
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

try:  # run as a script (benchmarks/ on sys.path) or imported as benchmarks.bench_fidelity
    from _fidelity_data import DATASETS, load
except ImportError:  # pragma: no cover
    from ._fidelity_data import DATASETS, load

from sklearn_ssse import UnlearnableClassifier

HERE = Path(__file__).resolve().parent

#: unlearner configurations: name -> UnlearnableClassifier keyword arguments ("default" is
#: whatever the library's defaults are at the time of the run; the others spell out the curvature)
CONFIGS: dict[str, dict] = {
    "default": {},
    "ggn": {"curvature": "ggn"},
    "ggn-dense": {"curvature": "ggn", "inverse": "dense"},
    "ggn-block": {"curvature": "ggn", "inverse": "block"},
    "ggn-ekfac": {"curvature": "ggn", "inverse": "ekfac"},
    "ggn-woodbury": {"curvature": "ggn", "inverse": "woodbury"},
    "ef-dense": {"curvature": "empirical_fisher", "inverse": "dense"},
    "ggn-dense-full": {"curvature": "ggn", "inverse": "dense", "step": "full"},
    "ef-dense-full": {"curvature": "empirical_fisher", "inverse": "dense", "step": "full"},
}
#: passed to every configuration (the woodbury inverse draws its curvature samples at random)
FIXED_KWARGS = {"random_state": 0}
FULL_DATASETS = ["cells", "caravan", "tissue", "mnist5k"]
QUICK_DATASETS = ["cells", "tissue", "digits"]
EPS_GRID = np.unique(np.round(np.append(np.logspace(-2, 1, 31), 1.0), 12))
NEWTON_LOO = "exact Newton (leave-S-out)"
NEWTON_FULL = "exact Newton (full-data H)"
INTERCEPT_RIDGE = 1e-8
# library constants, for the memory guard only (read if present, else their current values)
AUTO_DENSE_MAX = 4096
WOODBURY_SAMPLES = 1024


def _as_numpy(t) -> np.ndarray:
    """A float64 array of a direction (``forget_direction`` returns an array, or a tensor in
    older versions)."""
    t = t.detach().cpu().numpy() if hasattr(t, "detach") else t
    return np.asarray(t, dtype=np.float64)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def base_estimator() -> LogisticRegression:
    return LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)


# ------------------------------------------------------------------------- exact objective
class ExactObjective:
    """scikit-learn's L2 logistic objective ``C sum_i loss_i + ||W||^2 / 2`` (intercepts not
    penalised) in the layout of the library's linear backend: one row ``[w_c, b_c]`` per class
    (softmax, ``C > 2`` classes) or a single sigmoid row (binary)."""

    def __init__(self, X, y, n_classes: int, C: float = 1.0, ridge: float = INTERCEPT_RIDGE):
        self.Xa = np.hstack([X, np.ones((len(X), 1))])
        self.C = float(C)
        self.softmax = n_classes > 2
        self.n_rows = n_classes if self.softmax else 1
        self.p1 = self.Xa.shape[1]
        self.T = np.eye(n_classes)[y] if self.softmax else (y == 1).astype(float)[:, None]
        per_row = np.ones(self.p1)
        per_row[-1] = 0.0
        self.pen = np.tile(per_row, self.n_rows)  # Hessian of the penalty (diagonal)
        self.ridge = np.where(self.pen > 0, 0.0, ridge)

    def _scores(self, theta, rows):
        return self.Xa[rows] @ theta.reshape(self.n_rows, self.p1).T

    def _probs(self, theta, rows):
        S = self._scores(theta, rows)
        return softmax(S, axis=1) if self.softmax else expit(S)

    def value(self, theta, rows=slice(None)):
        S, T = self._scores(theta, rows), self.T[rows]
        if self.softmax:
            loss = logsumexp(S, axis=1) - (S * T).sum(1)
        else:
            loss = np.logaddexp(0.0, S[:, 0]) - T[:, 0] * S[:, 0]
        return self.C * loss.sum() + 0.5 * float(self.pen @ theta**2)

    def data_grad(self, theta, rows=slice(None)):
        R = self._probs(theta, rows) - self.T[rows]
        return self.C * (R.T @ self.Xa[rows]).ravel()

    def grad(self, theta, rows=slice(None)):
        return self.data_grad(theta, rows) + self.pen * theta

    def data_hessian(self, theta, rows=slice(None)):
        """``C sum_i A_i (x) xa_i xa_i^T``, one weighted Gram matrix per pair of class rows."""
        Xa, P = self.Xa[rows], self._probs(theta, rows)
        p1, m = self.p1, self.n_rows
        H = np.empty((m * p1, m * p1))
        for c in range(m):
            for c2 in range(c, m):
                if self.softmax:
                    w = (P[:, c] if c == c2 else 0.0) - P[:, c] * P[:, c2]
                else:
                    w = P[:, 0] * (1.0 - P[:, 0])
                block = self.C * (Xa.T @ (w[:, None] * Xa))
                H[c * p1:(c + 1) * p1, c2 * p1:(c2 + 1) * p1] = block
                if c2 != c:
                    H[c2 * p1:(c2 + 1) * p1, c * p1:(c + 1) * p1] = block.T
        return H

    def penalty_diag(self):
        return self.pen + self.ridge

    def solve(self, H_data, g):
        """``(H_data + penalty + ridge)^{-1} g``; Cholesky, least squares if that fails."""
        H = H_data.copy()
        H[np.diag_indices_from(H)] += self.penalty_diag()
        try:
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, overwrite_a=True), g)
        except np.linalg.LinAlgError:
            H = H_data.copy()
            H[np.diag_indices_from(H)] += self.penalty_diag()
            return np.linalg.lstsq(H, g, rcond=None)[0]

    def predict(self, theta, X):
        S = X @ theta.reshape(self.n_rows, self.p1)[:, :-1].T + theta.reshape(
            self.n_rows, self.p1)[:, -1]
        return S.argmax(1) if self.softmax else (S[:, 0] > 0).astype(int)


def self_check(tol: float = 1e-6) -> str:
    """Gradient and Hessian of :class:`ExactObjective` against central finite differences on a
    small random problem (binary and 3 classes); raises ``AssertionError`` beyond ``tol``."""
    rng = np.random.default_rng(0)
    out = []
    for n_classes in (2, 3):
        X = rng.normal(size=(30, 4))
        y = rng.integers(0, n_classes, size=30)
        obj = ExactObjective(X, y, n_classes, C=0.7)
        theta = rng.normal(scale=0.5, size=obj.n_rows * obj.p1)
        h = 1e-5
        E = np.eye(theta.size)
        g_fd = np.array([(obj.value(theta + h * e) - obj.value(theta - h * e)) / (2 * h)
                         for e in E])
        H_fd = np.array([(obj.grad(theta + h * e) - obj.grad(theta - h * e)) / (2 * h)
                         for e in E])
        g, H = obj.grad(theta), obj.data_hessian(theta) + np.diag(obj.pen)
        err_g = np.linalg.norm(g - g_fd) / np.linalg.norm(g)
        err_h = np.linalg.norm(H - H_fd) / np.linalg.norm(H)
        assert err_g < tol and err_h < tol, (n_classes, err_g, err_h)
        # the rows-subset pieces add up
        a, b = np.arange(0, 12), np.arange(12, 30)
        assert np.allclose(obj.grad(theta), obj.data_grad(theta, a) + obj.grad(theta, b))
        assert np.allclose(obj.data_hessian(theta),
                           obj.data_hessian(theta, a) + obj.data_hessian(theta, b))
        out.append(f"{n_classes} classes: grad {err_g:.1e}, Hessian {err_h:.1e}")
    return "finite-difference self-check passed (relative errors " + "; ".join(out) + ")"


# ---------------------------------------------------------------------- parameter compare
def _rows_view(theta, n_rows, p1):
    return np.asarray(theta, dtype=np.float64).reshape(n_rows, p1)


def comparison_map(obj: ExactObjective, keep_classes=None):
    """Linear map ``T`` applied to a parameter vector of the original model before distances:
    the identity (binary), centring of the class rows (softmax), restricted to ``keep_classes``
    first for class removal."""
    def T(theta):
        if not obj.softmax:
            return np.asarray(theta, dtype=np.float64).ravel()
        W = _rows_view(theta, obj.n_rows, obj.p1)
        if keep_classes is not None:
            W = W[keep_classes]
        return (W - W.mean(0)).ravel()
    return T


def centred(theta, p1: int, softmax_target: bool):
    """Rows ``[w_c, b_c]`` of a (retrained) model's flat parameters, centred over its classes
    when compared with a softmax (a binary model becomes the rows ``[-w/2, w/2]``)."""
    W = np.asarray(theta, dtype=np.float64).reshape(-1, p1)
    if softmax_target and W.shape[0] == 1:
        W = np.vstack([-W / 2, W / 2])
    if softmax_target:
        W = W - W.mean(0)
    return W.ravel()


def flat(est):
    return np.hstack([est.coef_, est.intercept_[:, None]]).ravel()


def retrain_residual(X, y, keep_classes, ret):
    """One exact Newton step from the retrained parameters on their own objective: its length
    estimates how far lbfgs (stopped by its ``ftol``) is from the exact optimum of ``D - S``.
    Returns the step in the layout of ``centred``."""
    if keep_classes is not None:
        y = np.searchsorted(keep_classes, y)
    obj = ExactObjective(X, y, len(ret.classes_), C=ret.C)
    th = flat(ret)
    return -obj.solve(obj.data_hessian(th), obj.grad(th))


def distance_curve(a, b, norm=None):
    """``||a + eps b|| / norm`` on :data:`EPS_GRID` (``a = T(theta*) - T(theta_ret)``,
    ``b = T(delta)``, ``norm = ||a||`` unless given)."""
    aa, ab, bb = a @ a, a @ b, b @ b
    sq = aa + 2 * EPS_GRID * ab + EPS_GRID**2 * bb
    return np.sqrt(np.maximum(sq, 0.0)) / (np.sqrt(aa) if norm is None else norm)


# ------------------------------------------------------------------------------- guards
class FitTimeout(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise :class:`FitTimeout` after ``seconds`` (checked when control returns to Python)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise FitTimeout(f"over the {seconds:.0f} s fit timeout")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def estimated_bytes(kwargs: dict, n: int, p1: int, n_classes: int) -> tuple[float, str]:
    """Rough peak memory of the curvature of a configuration (before it is fitted)."""
    softmax_model = n_classes > 2
    n_rows = n_classes if softmax_model else 1
    d = n_rows * p1
    kind = kwargs.get("inverse", "auto")
    if kind == "auto":
        kind = "dense" if d <= AUTO_DENSE_MAX else ("block" if p1 <= AUTO_DENSE_MAX
                                                    else "woodbury")
    if kind == "dense":
        return 3 * 8.0 * d * d, kind
    if kind == "block":
        return 3 * 8.0 * n_rows * p1 * p1, kind
    if kind == "ekfac":
        return 8.0 * (3 * p1 * p1 + 512 * (2 * p1 + n_rows * n_rows)), kind
    if kind in ("woodbury", "sherman_morrison"):
        m = min(kwargs.get("fisher_max_samples") or WOODBURY_SAMPLES, n)
        q = n_classes if (kwargs.get("curvature") == "ggn" and softmax_model) else 1
        r = m * q
        return 8.0 * (2 * r * d + 2 * r * r), kind
    return 0.0, kind


def resolved(clf) -> str:
    """``curvature/inverse/step`` as the fitted unlearner resolved them (what it has of them)."""
    cfg = getattr(clf, "config_", None)
    parts = [getattr(cfg, "curvature", clf.curvature), getattr(cfg, "inverse", None)
             or getattr(clf, "inverse_", "?"), getattr(cfg, "step", None)]
    short = {"empirical_fisher": "ef"}
    return "/".join(short.get(str(x), str(x)) for x in parts if x is not None)


def short_reason(exc: BaseException, width: int = 70) -> str:
    msg = f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")
    return msg if len(msg) <= width else msg[: width - 3] + "..."


# ---------------------------------------------------------------------------- one data set
def forget_sets(y, n_repeats: int, multiclass: bool, class_names=None):
    """``[(scenario, label, repeat, indices)]``."""
    n = len(y)
    sets = []
    for frac in (0.01, 0.05):
        k = max(1, round(frac * n))
        for r in range(n_repeats):
            idx = np.sort(np.random.default_rng(1000 * r + round(100 * frac)).choice(
                n, k, replace=False))
            sets.append((f"random {frac:.0%}", f"random {frac:.0%} (k={k})", r, idx))
    if multiclass:
        cls = int(np.argmax(np.bincount(y)))
        idx = np.flatnonzero(y == cls)
        cname = cls if class_names is None else class_names[cls]
        sets.append(("class", f"class {cname} (k={len(idx)})", 0, idx))
    return sets


def fit_quiet(est, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X, y)
        dt = time.perf_counter() - t0
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return est, dt, converged


def run_dataset(name: str, configs: dict, n_repeats: int, args) -> dict:
    t_start = time.perf_counter()
    X, X_te, y, y_te = load(name, fmnist_n=args.fmnist_n)
    spec = DATASETS[name]
    n, p = X.shape
    n_classes = int(y.max()) + 1
    obj = ExactObjective(X, y, n_classes, C=1.0)
    d = obj.n_rows * obj.p1
    log(f"[{name}] n_train={n} n_test={len(X_te)} features={p} classes={n_classes} params={d}")

    base, t_fit, conv = fit_quiet(base_estimator(), X, y)
    theta = np.hstack([base.coef_, base.intercept_[:, None]]).ravel()
    g_full = obj.grad(theta)
    optimality = float(np.linalg.norm(g_full) / np.linalg.norm(obj.pen * theta))
    acc_base = float((base.predict(X_te) == y_te).mean())
    log(f"[{name}] base fit {t_fit:.2f} s (converged={conv}), test acc {acc_base:.4f}, "
        f"||grad J(theta*)|| / ||W*|| = {optimality:.1e}")

    t0 = time.perf_counter()
    H_full = obj.data_hessian(theta)
    t_hess = time.perf_counter() - t0
    log(f"[{name}] exact Hessian ({d}x{d}) {t_hess:.2f} s")

    sets = forget_sets(y, n_repeats, n_classes > 2, spec.classes)
    scenarios = list(dict.fromkeys(s[0] for s in sets))
    labels = {s[0]: s[1] for s in sets}
    refs = []  # one per forget set
    for scenario, label, rep, S in sets:
        keep = np.ones(n, dtype=bool)
        keep[S] = False
        R = np.flatnonzero(keep)
        ret, t_ret, conv_ret = fit_quiet(clone(base_estimator()), X[R], y[R])
        keep_classes = None
        test_rows = slice(None)
        if scenario == "class":
            removed = int(np.unique(y[S])[0])
            keep_classes = [c for c in range(n_classes) if c != removed]
            test_rows = y_te != removed
        T = comparison_map(obj, keep_classes)
        theta_ret = centred(flat(ret), obj.p1, obj.softmax)
        a = T(theta) - theta_ret
        t0 = time.perf_counter()
        residual = math.nan
        if not args.no_residual:
            step_ret = retrain_residual(X[R], y[R], keep_classes, ret)
            residual = float(np.linalg.norm(centred(step_ret, obj.p1, obj.softmax))
                             / np.linalg.norm(a))
        t_resid = time.perf_counter() - t0
        acc_ret = float((ret.predict(X_te[test_rows]) == y_te[test_rows]).mean())
        t0 = time.perf_counter()
        g_R = obj.grad(theta, R)
        H_S = obj.data_hessian(theta, S)
        step_loo = -obj.solve(H_full - H_S, g_R)
        t_newton = time.perf_counter() - t0
        step_full = -obj.solve(H_full, g_R)
        newton = {}
        for key, step, t in ((NEWTON_LOO, step_loo, t_newton), (NEWTON_FULL, step_full, None)):
            acc = float((obj.predict(theta + step, X_te[test_rows]) == y_te[test_rows]).mean())
            newton[key] = {"curve": distance_curve(a, T(step)), "acc_gap": acc - acc_ret,
                           "seconds": t}
        refs.append({"scenario": scenario, "label": label, "repeat": rep, "S": S, "T": T, "a": a,
                     "test_rows": test_rows, "acc_ret": acc_ret, "t_ret": t_ret,
                     "converged": conv_ret, "newton": newton, "residual": residual,
                     "ret_norm": float(np.linalg.norm(a))})
        log(f"[{name}] {label} rep {rep}: retrain {t_ret:.2f} s (converged={conv_ret}), "
            f"Newton {t_newton:.2f} s, d(Newton, eps=1) = "
            f"{newton[NEWTON_LOO]['curve'][EPS_GRID == 1.0][0]:.4f}, retrain residual "
            f"{residual:.1e} ({t_resid:.2f} s)")

    results = {}  # config -> {"status", "inverse", "fit_s", "per_set": [...]}
    for cname, kwargs in configs.items():
        need, kind = estimated_bytes(kwargs, n, obj.p1, n_classes)
        if need > args.max_gb * 2**30:
            reason = f"skipped: {kind} needs ~{need / 2**30:.1f} GB > --max-gb {args.max_gb}"
            log(f"[{name}] {cname}: {reason}")
            results[cname] = {"status": reason}
            continue
        t0 = time.perf_counter()
        try:
            with alarm(args.fit_timeout):
                clf = UnlearnableClassifier(base_estimator(), **{**FIXED_KWARGS, **kwargs})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(X, y)
        except (TypeError, ValueError, MemoryError, RuntimeError, ArithmeticError,
                FitTimeout) as exc:
            results[cname] = {"status": f"n/a ({short_reason(exc)})"}
            log(f"[{name}] {cname}: n/a ({short_reason(exc, 200)})")
            continue
        t_cfg = time.perf_counter() - t0
        theta_c = np.asarray(clf.get_parameters(), dtype=np.float64)
        drift = float(np.linalg.norm(theta_c - theta) / np.linalg.norm(theta))
        entry = {"status": "ok", "inverse": resolved(clf),
                 "fit_s": t_cfg, "theta_drift": drift, "per_set": []}
        try:
            for ref in refs:
                Xs, ys = X[ref["S"]], y[ref["S"]]
                t0 = time.perf_counter()
                delta = clf.forget_direction(Xs, ys)
                t_dir = time.perf_counter() - t0
                delta = _as_numpy(delta)
                if not np.all(np.isfinite(delta)):
                    raise ValueError("non-finite direction")
                rows = ref["test_rows"]
                acc = float((obj.predict(theta_c + delta, X_te[rows]) == y_te[rows]).mean())
                # the configuration's own theta* (equal to the base fit up to lbfgs rounding)
                a_c = ref["a"] + ref["T"](theta_c - theta)
                curve = distance_curve(a_c, ref["T"](delta), norm=ref["ret_norm"])
                entry["per_set"].append({"curve": curve,
                                         "acc_gap": acc - ref["acc_ret"], "seconds": t_dir})
        except (TypeError, ValueError, MemoryError, RuntimeError, ArithmeticError) as exc:
            results[cname] = {"status": f"n/a ({short_reason(exc)})"}
            log(f"[{name}] {cname}: forget_direction n/a ({short_reason(exc, 200)})")
            continue
        results[cname] = entry
        d1 = [float(e["curve"][EPS_GRID == 1.0][0]) for e in entry["per_set"]]
        log(f"[{name}] {cname}: {entry['inverse']} fit {t_cfg:.2f} s, "
            f"theta drift {drift:.1e}, d@1 per set {np.round(d1, 4).tolist()}")
    for key in (NEWTON_LOO, NEWTON_FULL):
        results[key] = {"status": "ok", "inverse": "numpy", "fit_s": t_hess,
                        "per_set": [r["newton"][key] for r in refs]}

    summary = summarise(results, refs, scenarios)
    wall = time.perf_counter() - t_start
    log(f"[{name}] done in {wall:.1f} s")
    return {"name": name, "description": spec.description, "note": spec.note, "n_train": n,
            "n_test": len(X_te), "n_features": p, "n_classes": n_classes, "n_params": d,
            "base_fit_s": t_fit, "base_converged": conv, "base_test_acc": acc_base,
            "optimality": optimality, "scenarios": scenarios, "labels": labels,
            "retrain": {sc: {"seconds": float(np.mean([r["t_ret"] for r in refs
                                                       if r["scenario"] == sc])),
                             "acc": float(np.mean([r["acc_ret"] for r in refs
                                                   if r["scenario"] == sc])),
                             "all_converged": all(r["converged"] for r in refs
                                                  if r["scenario"] == sc),
                             "residual": float(np.mean([r["residual"] for r in refs
                                                        if r["scenario"] == sc]))}
                        for sc in scenarios},
            "results": summary, "wall_s": wall}


def summarise(results: dict, refs: list, scenarios: list) -> dict:
    i1 = int(np.flatnonzero(EPS_GRID == 1.0)[0])
    out = {}
    for cname, entry in results.items():
        if entry["status"] != "ok":
            out[cname] = {"status": entry["status"]}
            continue
        per = {}
        for sc in scenarios:
            items = [e for e, r in zip(entry["per_set"], refs) if r["scenario"] == sc]
            curves = np.array([e["curve"] for e in items])
            mean_curve = curves.mean(0)
            ib = int(np.argmin(mean_curve))
            times = [e["seconds"] for e in items if e["seconds"] is not None]
            per[sc] = {"d_eps1": float(mean_curve[i1]), "d_best": float(mean_curve[ib]),
                       "eps_best": float(EPS_GRID[ib]),
                       "d_eps1_each": curves[:, i1].tolist(),
                       "d_best_each": curves.min(1).tolist(),
                       "eps_best_each": EPS_GRID[curves.argmin(1)].tolist(),
                       "acc_gap": float(np.mean([e["acc_gap"] for e in items])),
                       "seconds": float(np.mean(times)) if times else None}
        out[cname] = {"status": "ok", "inverse": entry["inverse"], "fit_s": entry["fit_s"],
                      "theta_drift": entry.get("theta_drift"), "scenarios": per}
    return out


# ------------------------------------------------------------------------------- report
def _fmt_ms(s):
    return "-" if s is None else (f"{1000 * s:.1f} ms" if s < 1 else f"{s:.2f} s")


def markdown(res: dict) -> str:
    scs, labels = res["scenarios"], res["labels"]
    head = [f"### {res['name']}: {res['description']}", "",
            f"{res['note']}. n_train={res['n_train']}, n_test={res['n_test']}, "
            f"{res['n_features']} features, {res['n_classes']} classes, {res['n_params']} "
            f"parameters; base test accuracy {res['base_test_acc']:.4f}; "
            f"||grad J(theta*)|| / ||W*|| = {res['optimality']:.1e}; "
            f"wall time {res['wall_s']:.0f} s.", ""]
    ret_line = "Retrained reference (mean): " + "; ".join(
        f"{labels[sc]}: {_fmt_ms(v['seconds'])}, test acc {v['acc']:.4f}"
        + ("" if v["all_converged"] else " (NOT converged)")
        for sc, v in res["retrain"].items())
    t1 = ["Normalised parameter distance to retraining, `d@eps=1 / d@best (eps_best)` "
          "(mean over repeats; 0 = retrained, 1 = as far as the original):", "",
          "| config | curvature/inverse/step | " + " | ".join(labels[sc] for sc in scs) + " |",
          "| --- | --- |" + " --- |" * len(scs)]
    t2 = ["Test-accuracy gap to retrained at eps=1 (percentage points) and time of one "
          "`forget_direction` call (Newton rows: numpy solve time):", "",
          "| config | fit | " + " | ".join(labels[sc] for sc in scs) + " |",
          "| --- | --- |" + " --- |" * len(scs)]
    for cname, v in res["results"].items():
        if v["status"] != "ok":
            t1.append(f"| {cname} | {v['status']} |" + " |" * len(scs))
            t2.append(f"| {cname} | n/a |" + " |" * len(scs))
            continue
        cells1 = [f"{v['scenarios'][sc]['d_eps1']:.4f} / {v['scenarios'][sc]['d_best']:.4f} "
                  f"({v['scenarios'][sc]['eps_best']:.3g})" for sc in scs]
        cells2 = [f"{100 * v['scenarios'][sc]['acc_gap']:+.2f} pp, "
                  f"{_fmt_ms(v['scenarios'][sc]['seconds'])}" for sc in scs]
        fit = (f"H {_fmt_ms(v['fit_s'])}" if v["inverse"] == "numpy"
               else _fmt_ms(v["fit_s"]))
        t1.append(f"| {cname} | {v['inverse']} | " + " | ".join(cells1) + " |")
        t2.append(f"| {cname} | {fit} | " + " | ".join(cells2) + " |")
    if not any(math.isnan(res["retrain"][sc]["residual"]) for sc in scs):
        t1.append("| retrain residual (lbfgs vs exact optimum) | - | "
                  + " | ".join(f"{res['retrain'][sc]['residual']:.1e}" for sc in scs) + " |")
    return "\n".join(head + t1 + ["", ret_line, ""] + t2) + "\n"


def thread_note() -> str:
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if env["OMP_NUM_THREADS"] != "1" or env["OPENBLAS_NUM_THREADS"] != "1":
        log("warning: run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for comparable timings")
    return ", ".join(f"{k}={v}" for k, v in env.items())


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --------------------------------------------------------------- per inverse kind (issue 10.2)
#: ``--kinds`` mode: the inverse kinds compared, as UnlearnableClassifier keyword arguments.
#: ``ekfac`` is reached through ``inverse="auto"`` with a budget below the dense factor (the kind
#: ``auto`` takes there); every run records the resolved kind.
KIND_CONFIGS: dict[str, dict] = {
    "dense": {"inverse": "dense", "memory_budget": "64GiB"},
    "ekfac": {"inverse": "auto", "memory_budget": "ekfac"},
    "block": {"inverse": "block", "memory_budget": "64GiB"},
    "woodbury": {"inverse": "woodbury", "memory_budget": "64GiB"},
    "auto (2GiB)": {"inverse": "auto"},
}
#: random-features width of the >= 50,000-parameter model (10 classes x 5,001)
RF_WIDTH = 5000


def _ekfac_budget(p1: int, n_classes: int, chunk: int = 512) -> int:
    """A memory budget that admits the EK-FAC but not the dense factor (nor the blocks)."""
    need = (3 * p1 * p1 + 2 * n_classes**2 + 3 * n_classes * p1
            + chunk * (2 * p1 + n_classes**2 + n_classes)) * 8
    return need + 1024


def random_features(X_tr, X_te, width: int = RF_WIDTH, seed: int = 0):
    """A fixed random ReLU expansion ``max(X W + b, 0)`` (``W ~ N(0, 1/d)``, ``b ~ U(-.5, .5)``)
    of the pixels, standardised on the training rows (far fewer lbfgs iterations): a linear
    model on it has ``width + 1`` parameters per class."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(X_tr.shape[1], width)) / np.sqrt(X_tr.shape[1])
    b = rng.uniform(-0.5, 0.5, size=width)
    F_tr, F_te = np.maximum(X_tr @ W + b, 0), np.maximum(X_te @ W + b, 0)
    mu, sd = F_tr.mean(0), F_tr.std(0) + 1e-3
    return (np.ascontiguousarray((F_tr - mu) / sd), np.ascontiguousarray((F_te - mu) / sd))


def _warm_retrain(est, X, y, rows):
    """The optimum on ``(X, y)`` from ``est``'s class rows ``rows`` (warm start: the same unique
    optimum of the strictly convex objective, in far fewer iterations)."""
    ret = clone(est).set_params(warm_start=True)
    ret.coef_, ret.intercept_ = est.coef_[rows].copy(), est.intercept_[rows].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ret.fit(X, y)
    return np.hstack([ret.coef_, ret.intercept_[:, None]]), ret.n_iter_


def run_kinds(name: str, X, y, est, kinds: dict, n_repeats: int, chunk_size: int = 512) -> dict:
    """Distance to retraining per inverse kind at eps=1 and at the tuned eps (one eps per
    scenario on the repeat-averaged curve), its setup time and memory."""
    W0 = np.hstack([est.coef_, est.intercept_[:, None]])
    K, p1 = W0.shape
    rng = np.random.default_rng(0)
    sets = [(f"{pct}% random", rng.choice(len(X), len(X) * pct // 100, replace=False))
            for pct in (1, 5) for _ in range(n_repeats)]
    big = int(np.bincount(y).argmax())
    sets.append(("one class", np.flatnonzero(y == big)))
    refs = []
    for label, S in sets:
        keep = np.setdiff1d(np.arange(len(X)), S)
        rows = np.unique(y[keep])
        t = time.perf_counter()
        Wr, it = _warm_retrain(est, X[keep], y[keep], rows)
        log(f"  {name} {label}: retrained in {time.perf_counter() - t:.1f} s ({it} iterations)")
        refs.append((label, S, rows, Wr))
    out = {"n_train": len(X), "n_params": K * p1, "kinds": {}}
    for kname, kw in kinds.items():
        kw = dict(kw)
        if kw.get("memory_budget") == "ekfac":
            kw["memory_budget"] = _ekfac_budget(p1, K, chunk_size)
        t = time.perf_counter()
        try:
            clf = UnlearnableClassifier.from_fitted(est, X, y, random_state=0,
                                                    chunk_size=chunk_size, **kw)
        except (ValueError, MemoryError) as exc:
            log(f"  {name} {kname}: n/a ({short_reason(exc)})")
            out["kinds"][kname] = {"error": short_reason(exc)}
            continue
        setup = time.perf_counter() - t
        curves, times = {}, []
        for label, S, rows, Wr in refs:
            t = time.perf_counter()
            delta = _as_numpy(clf.forget_direction(X[S], y[S])).reshape(K, p1)
            times.append(time.perf_counter() - t)

            def c(V):
                return V - V.mean(0)

            base = np.linalg.norm(c(W0[rows]) - c(Wr))
            curve = [np.linalg.norm(c(W0[rows] + e * delta[rows]) - c(Wr)) / base
                     for e in EPS_GRID]
            curves.setdefault(label, []).append(curve)
        res = {"resolved": clf.inverse_, "setup_s": setup,
               "forget_s": float(np.mean(times)), "held_bytes": clf.curvature_.nbytes,
               "estimated_bytes": clf.config_.estimated_memory, "scenarios": {}}
        i1 = int(np.flatnonzero(np.isclose(EPS_GRID, 1.0))[0])
        for label, cs in curves.items():
            cs = np.asarray(cs)
            mean = cs.mean(0)
            j = int(mean.argmin())
            res["scenarios"][label] = {"eps1": cs[:, i1].tolist(), "eps_best": float(EPS_GRID[j]),
                                       "best": cs[:, j].tolist()}
        log(f"  {name} {kname} -> {clf.inverse_}: setup {setup:.1f} s; " + "; ".join(
            f"{lb} {np.mean(v['eps1']):.3f} / {np.mean(v['best']):.3f}@{v['eps_best']:.3g}"
            for lb, v in res["scenarios"].items()))
        out["kinds"][kname] = res
        del clf
    return out


def _range(v):
    lo, hi = min(v), max(v)
    return f"{lo:.3f}" if abs(hi - lo) < 5e-4 else f"{lo:.3f}-{hi:.3f}"


def markdown_kinds(name: str, res: dict) -> str:
    labels = ["1% random", "5% random", "one class"]
    lines = [f"### {name}: {res['n_train']} training rows, {res['n_params']:,} parameters", "",
             "| kind (resolved) | " + " | ".join(f"{lb}: eps=1 / tuned (eps)" for lb in labels)
             + " | setup | forget | held | estimate |",
             "|---|" + "---|" * (len(labels) + 4)]
    for kname, r in res["kinds"].items():
        if "error" in r:
            lines.append(f"| {kname} | n/a: {r['error']} |" + " |" * (len(labels) + 3))
            continue
        cells = []
        for lb in labels:
            v = r["scenarios"].get(lb)
            cells.append("—" if v is None else
                         f"{_range(v['eps1'])} / {_range(v['best'])} ({v['eps_best']:.3g})")
        lines.append(f"| {kname} ({r['resolved']}) | " + " | ".join(cells)
                     + f" | {r['setup_s']:.1f} s | {_fmt_ms(r['forget_s'])} | "
                     f"{r['held_bytes'] / 2**20:.1f} MiB | "
                     f"{r['estimated_bytes'] / 2**20:.1f} MiB |")
    return "\n".join(lines) + "\n"


def main_kinds(args) -> str:
    """``--kinds``: every inverse kind on Fashion-MNIST (linear) and on the random-features
    model of at least 50,000 parameters."""
    threads = thread_note()
    sections = ["## Inverse kinds against retraining (issue 10, item 2)", "",
                f"Threads: {threads}. Fashion-MNIST: rows drawn from the 60,000 training "
                "images (see each heading), 80% used for training. Forget sets: random 1% and "
                "5% of the "
                f"training rows ({args.n_repeats} seed(s) each, ranges over the seeds) and every "
                "row of the most frequent class. Distances: centred class rows (remaining "
                "classes for the class removal) against the retrained optimum (warm-started "
                "lbfgs from the fitted model). `tuned` is at the eps minimising the "
                "seed-averaged distance on logspace(-2, 1, 31) U {1}. Setup: "
                "`UnlearnableClassifier.from_fitted` (curvature build); forget: one "
                "`forget_direction` (leave-out step); held: the operator's tensors; estimate: "
                "`estimate_memory` (what the budget is compared with).", ""]
    payload = {}
    X_tr, X_te, y_tr, _ = load("fmnist", fmnist_n=args.fmnist_n)
    models = []
    skip = set(args.skip_kinds)
    if "linear" in args.kinds_models:
        models.append((f"Fashion-MNIST ({args.fmnist_n} rows drawn), multinomial LR on pixels",
                       X_tr, y_tr, 1e-10, dict(KIND_CONFIGS)))
    if "rf" in args.kinds_models:
        Xr, Xr_te, yr, _ = load("fmnist", fmnist_n=args.rf_n)
        R_tr, _ = random_features(Xr, Xr_te)
        kinds = {k: v for k, v in KIND_CONFIGS.items() if k != "dense"}
        models.append((f"Fashion-MNIST ({args.rf_n} rows drawn), multinomial LR on {RF_WIDTH} "
                       "random ReLU features", R_tr, yr, 1e-8, kinds))
    for name, X, y_tr, tol, kinds in models:
        t = time.perf_counter()
        est = LogisticRegression(C=1.0, tol=tol, max_iter=20000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y_tr)
        fit_s = time.perf_counter() - t
        log(f"{name}: fitted in {fit_s:.1f} s ({est.n_iter_} iterations, tol={tol:g})")
        kinds = {k: v for k, v in kinds.items() if k not in skip}
        res = run_kinds(name, X, y_tr, est, kinds, args.n_repeats)
        res.update(fit_s=fit_s, tol=tol)
        payload[name] = res
        sections.append(markdown_kinds(name, res))
        sections.append(f"LogisticRegression(C=1.0, lbfgs, tol={tol:g}) fitted in {fit_s:.0f} s; "
                        f"retrained references to the same tol.\n")
    report = "\n".join(sections)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
        Path(args.out).with_suffix(".json").write_text(json.dumps(_jsonable(payload), indent=1))
        log(f"wrote {args.out}")
    return report


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=None, choices=sorted(DATASETS),
                        help=f"default: {' '.join(FULL_DATASETS)} (--quick: "
                        f"{' '.join(QUICK_DATASETS)})")
    parser.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                        help="default: all")
    parser.add_argument("--n-repeats", type=int, default=3, help="seeds per random forget size")
    parser.add_argument("--quick", action="store_true",
                        help="cells, tissue and digits with 1 repeat (about a minute)")
    parser.add_argument("--out", default=None,
                        help="markdown report path ('' to skip; default: benchmarks/results/"
                        "fidelity.md, fidelity_quick.md with --quick)")
    parser.add_argument("--json", default=None,
                        help="raw results path (default: --out with .json; '' to skip)")
    parser.add_argument("--fmnist-n", type=int, default=10_000,
                        help="Fashion-MNIST rows drawn before the 80/20 split")
    parser.add_argument("--max-gb", type=float, default=4.0,
                        help="skip configurations whose curvature needs more memory than this")
    parser.add_argument("--no-residual", action="store_true",
                        help="skip the retrain-residual diagnostic (an exact Newton step from "
                        "each retrained model: about 2 s per forget set per 1,000 parameters)")
    parser.add_argument("--fit-timeout", type=float, default=900.0,
                        help="seconds allowed per UnlearnableClassifier.fit (0: no limit)")
    parser.add_argument("--kinds", action="store_true",
                        help="compare the inverse kinds (dense, ekfac, block, woodbury, auto) "
                        "on Fashion-MNIST and a >= 50,000-parameter random-features model")
    parser.add_argument("--kinds-models", nargs="+", default=["linear", "rf"],
                        choices=["linear", "rf"], help="models of --kinds")
    parser.add_argument("--rf-n", type=int, default=6000,
                        help="Fashion-MNIST rows drawn for the random-features model of --kinds")
    parser.add_argument("--skip-kinds", nargs="*", default=[],
                        help="--kinds: kinds left out (names of KIND_CONFIGS)")
    args = parser.parse_args(argv)
    if args.kinds:
        if args.out is None:
            args.out = str(HERE / "results" / "fidelity_kinds.md")
        return main_kinds(args)
    if args.out is None:
        args.out = str(HERE / "results" / ("fidelity_quick.md" if args.quick else "fidelity.md"))
    datasets = args.datasets or (QUICK_DATASETS if args.quick else FULL_DATASETS)
    n_repeats = 1 if args.quick else args.n_repeats
    configs = {k: CONFIGS[k] for k in (args.configs or CONFIGS)}

    threads = thread_note()
    check = self_check()
    log(check)
    t0 = time.perf_counter()
    all_res = [run_dataset(name, configs, n_repeats, args) for name in datasets]
    total = time.perf_counter() - t0

    lines = ["## Fidelity of SSSE against retraining on real data sets", "",
             "LogisticRegression(C=1.0, tol=1e-10, max_iter=10000, lbfgs) in "
             "UnlearnableClassifier, one fit per configuration. Forget sets: random 1% and 5% "
             f"of the training rows ({n_repeats} seed(s) each) and, for multiclass data, the "
             "most frequent class (1 repeat). Softmax parameters are compared after centring "
             "the class rows; for class removal only the remaining classes are compared (see "
             "the docstring). `eps_best` minimises the mean distance over the grid "
             "logspace(-2, 1, 31) U {1}.", "",
             f"Threads: {threads}. Total {total:.0f} s. {check}.", ""]
    report = "\n".join(lines) + "\n".join(markdown(r) for r in all_res)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    json_path = args.json if args.json is not None else (
        str(Path(args.out).with_suffix(".json")) if args.out else "")
    if json_path:
        payload = {"configs": configs, "eps_grid": EPS_GRID, "n_repeats": n_repeats,
                   "threads": threads, "total_s": total, "datasets": all_res}
        Path(json_path).write_text(json.dumps(_jsonable(payload), indent=1))
        log(f"wrote {json_path}")
    return report


if __name__ == "__main__":
    main()
