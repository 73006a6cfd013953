"""Command line: ``python -m sklearn_ssse demo|evaluate|bench`` (also the ``sklearn-ssse`` script).

* ``demo``: bundled digits, no download, a few seconds: original / SSSE / retrained table.
* ``evaluate``: your data (CSV, NumPy ``.npy``/``.npz``, or a folder of Fashion-MNIST IDX files),
  a random share or one whole class forgotten, a grid of epsilons; prints a table and writes a
  PNG of the similarity ratio and the normalized parameter distance against epsilon.
* ``bench``: runs ``benchmarks/run_all.py`` of a source checkout.

The functions behind the commands (:func:`demo`, :func:`load_data`, :func:`evaluate`,
:func:`plot_evaluation`) return their results, so the examples and the tests use them directly.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from ._unlearnable import UnlearnableClassifier
from .datasets import load_digits_split, load_fashion_mnist
from .metrics import (
    membership_inference_auc,
    normalized_confusion_distance,
    normalized_parameter_distance,
    similarity_ratio,
)
from .model_selection import ForgetSplit

__all__ = ["demo", "evaluate", "load_data", "main", "parse_epsilons", "plot_evaluation"]

#: default epsilon grids of ``evaluate`` (random removal / single-class removal)
DEFAULT_GRID_RATE = "linspace:0:2:9"
DEFAULT_GRID_CLASS = "0,0.5,1,2,5,10,20,50,100"


# ================================================================================== helpers
@contextlib.contextmanager
def _threads(n: int | None):
    """Limit BLAS / OpenMP / torch threads to ``n`` inside the block (``None``: unchanged).

    Small problems (the digits demo) run much faster on one thread, and on a busy machine
    multi-threaded BLAS on tiny matrices can be 100x slower than one thread.
    """
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _fmt(c) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, (float, np.floating)) and not np.isfinite(c):
        return "n/a" if np.isnan(c) else "inf"
    return f"{c:.4g}"


def _table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """Align ``rows`` under ``header`` as a plain text or a markdown table."""
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join(" --- " for _ in header) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _logistic(C: float, max_iter: int, tol: float) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=max_iter, tol=tol)


def _fit_quietly(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _parameters_of(clf: UnlearnableClassifier, estimator) -> np.ndarray:
    """Flat parameters of another fitted estimator of the same family, in ``clf``'s layout."""
    backend = type(clf.backend_)(estimator, parameters=clf.parameters, dtype=clf.dtype)
    return backend.get_parameters().detach().cpu().numpy()


def parse_epsilons(spec: str) -> np.ndarray:
    """Parse an epsilon grid.

    Parameters
    ----------
    spec : str
        Comma-separated values (``"0,0.5,1,2"``), ``"linspace:START:STOP:NUM"`` or
        ``"logspace:START:STOP:NUM"`` (exponents of 10, as :func:`numpy.logspace`).

    Returns
    -------
    epsilons : ndarray of float
        Sorted, unique, all ``>= 0``.

    Raises
    ------
    ValueError
        If the string cannot be parsed or a value is negative or not finite.

    Examples
    --------
    >>> parse_epsilons("0,1,0.5").tolist()
    [0.0, 0.5, 1.0]
    >>> parse_epsilons("linspace:0:2:5").tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    >>> parse_epsilons("logspace:-1:1:3").tolist()
    [0.1, 1.0, 10.0]
    """
    spec = spec.strip()
    try:
        if spec.startswith(("linspace:", "logspace:")):
            kind, start, stop, num = spec.split(":")
            fn = np.linspace if kind == "linspace" else np.logspace
            eps = fn(float(start), float(stop), int(num))
        else:
            eps = np.array([float(v) for v in spec.split(",") if v.strip()])
    except ValueError as exc:
        raise ValueError(f"cannot parse the epsilon grid {spec!r}: use '0,0.5,1', "
                         "'linspace:0:2:9' or 'logspace:-2:1:13'") from exc
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"the epsilon grid {spec!r} must hold finite values >= 0")
    return np.unique(eps)


# ================================================================================== demo
def demo(forget_rate: float = 0.05, C: float = 1.0, epsilon: float = 1.0,
         random_state: int = 0, threads: int | None = 1, markdown: bool = False) -> str:
    """Fit on digits, forget a random share of the training set, compare with retraining.

    A multinomial :class:`~sklearn.linear_model.LogisticRegression` is fitted on the bundled
    digits data (1347 training images), wrapped in :class:`~sklearn_ssse.UnlearnableClassifier`
    with each curvature; ``forget_rate`` of the training samples are erased with one SSSE step
    and the result is compared with the model retrained from scratch without them.

    Parameters
    ----------
    forget_rate : float, default=0.05
        Share of the training set to forget.
    C : float, default=1.0
        Inverse L2 strength of the logistic regression.
    epsilon : float, default=1.0
        SSSE step size.
    random_state : int, default=0
        Seed of the split and of the forget set.
    threads : int or None, default=1
        BLAS / torch threads (one is fastest on this small problem); ``None`` leaves them.
    markdown : bool, default=False
        Return a markdown table instead of plain text.

    Returns
    -------
    report : str
        A title line and the table: per model, log-loss and accuracy on the forgotten set ``S``,
        accuracy on the test set, similarity ratio on ``S`` (log-loss; 0 = behaves like the
        retrained model, 1 = like the original), normalized parameter distance to the retrained
        model (0 = equal, 1 = as far as the original) and wall time.

    Examples
    --------
    >>> report = demo(forget_rate=0.02)
    >>> [line.split(" | ")[0].strip() for line in report.splitlines()[4:]]
    ['original', 'SSSE empirical_fisher, eps=1', 'SSSE ggn, eps=1', 'retrained (reference)']
    """
    if not 0 < forget_rate < 1:
        raise ValueError(f"forget_rate must be in (0, 1), got {forget_rate}")
    X, X_test, y, y_test = load_digits_split(random_state=random_state)
    train, S = next(ForgetSplit(n_splits=1, forget_size=forget_rate,
                                random_state=random_state).split(X, y))
    keep = np.setdiff1d(train, S)
    # tol=1e-6 converges in ~170 L-BFGS iterations here (0.1 s): tight enough that the
    # retrained reference is a sharp target (the distances are within 0.003 of those with
    # tol=1e-10), loose enough for a demo that runs in seconds
    base = _logistic(C, max_iter=2000, tol=1e-6)
    with _threads(threads):
        t0 = time.perf_counter()
        retrained = _fit_quietly(clone(base), X[keep], y[keep])
        t_retrain = time.perf_counter() - t0

        rows, theta_re, theta_orig = [], None, None
        for curvature in ("empirical_fisher", "ggn"):
            t0 = time.perf_counter()
            clf = UnlearnableClassifier(base, curvature=curvature, epsilon=epsilon)
            clf = _fit_quietly(clf, X, y)
            t_fit = time.perf_counter() - t0
            if theta_re is None:
                theta_re = _parameters_of(clf, retrained)
                theta_orig = clf.get_parameters()
                original = clf.with_parameters(theta_orig)  # a copy: forget() won't move it
                rows.append(_demo_row("original", original, original, retrained, X[S], y[S],
                                      X_test, y_test, theta_orig, theta_orig, theta_re,
                                      f"fit + curvature {t_fit:.2f} s"))
            t0 = time.perf_counter()
            clf.forget(X[S], y[S])
            t_forget = time.perf_counter() - t0
            rows.append(_demo_row(
                f"SSSE {curvature}, eps={epsilon:g}", clf, original, retrained, X[S], y[S],
                X_test, y_test, clf.get_parameters(), theta_orig, theta_re,
                f"forget {1e3 * t_forget:.1f} ms ({t_retrain / t_forget:.0f}x faster)"))
        rows.append(_demo_row("retrained (reference)", retrained, original, retrained, X[S],
                              y[S], X_test, y_test, theta_re, theta_orig, theta_re,
                              f"retrain {t_retrain:.2f} s"))
    header = ["model", "log-loss S", "acc S", "acc test", "sim. ratio", "param dist",
              "wall time"]
    title = (f"digits: n={len(X)} training samples, forget k={len(S)} "
             f"({100 * forget_rate:g}%), LogisticRegression(C={C:g}); lower sim. ratio / param "
             "dist = closer to the retrained model (0 = equal, 1 = no closer than the original)")
    return title + "\n\n" + _table(header, rows, markdown=markdown)


def _log_loss_on(model, X, y) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, model.predict_proba(X), labels=model.classes_))


def _demo_row(name, model, original, retrained, X_S, y_S, X_test, y_test, theta, theta_orig,
              theta_re, timing):
    ratio = similarity_ratio(y_S, model, original, retrained, X=X_S, metric="log_loss")
    return [name, _log_loss_on(model, X_S, y_S), model.score(X_S, y_S),
            model.score(X_test, y_test), ratio,
            normalized_parameter_distance(theta, theta_orig, theta_re), timing]


# ================================================================================== data
def _read_csv(path: Path, target: str | None):
    with open(path, newline="") as f:
        sample = f.read(65536)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path} holds no data")

    def numeric(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header = None
    if not all(numeric(c) for c in rows[0][:-1]) or (target is not None and target in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError(f"{path}: rows have different numbers of fields")
    if target is None:
        col = width - 1
    elif header is not None and target in header:
        col = header.index(target)
    else:
        try:
            col = int(target) % width
        except ValueError:
            raise ValueError(f"{path}: no column {target!r} (header: {header})") from None
    table = np.array(rows, dtype=object)
    y = np.array([c.strip() for c in table[:, col]])
    feats = np.delete(table, col, axis=1)
    try:
        X = feats.astype(np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: every column but the target must be numeric ({exc})") from None
    return X, _as_labels(y)


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels when every label is an integer, else strings."""
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    try:
        f = y.astype(np.float64)
    except ValueError:
        return y.astype(str)
    if np.all(f == np.round(f)):
        return f.astype(np.int64)
    raise ValueError("the target holds non-integer numbers: it must be class labels")


def load_data(path, *, target: str | None = None, labels=None, n_samples: int | None = None,
              random_state: int = 0) -> Bunch:
    """Load a classification data set for ``evaluate``.

    Parameters
    ----------
    path : str or path-like
        One of

        - a CSV / TSV file (``.csv``, ``.tsv``, ``.txt``): one sample per row, numeric features;
          the target is the last column unless ``target`` names another (an optional header row
          is detected);
        - a NumPy ``.npz`` archive with arrays ``X`` and ``y`` (and optionally ``X_test`` and
          ``y_test``);
        - a NumPy ``.npy`` matrix: the target is its last column, or the ``labels`` file;
        - a folder with Fashion-MNIST / MNIST IDX files
          (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``); the ``t10k`` files are the test
          set.
    target : str, default=None
        CSV: name (header) or index of the target column; ``.npy``: index of the target column.
    labels : str or path-like, default=None
        ``.npy`` only: a separate ``.npy`` (or text) file with the labels.
    n_samples : int, default=None
        Keep a random subset of this many training samples (stratified).
    random_state : int, default=0
        Seed of the subset.

    Returns
    -------
    data : Bunch
        ``X``, ``y`` (training data), ``X_test``, ``y_test`` (``None`` when the file has no
        test set) and ``name``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read as a classification data set.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    X_test = y_test = None
    suffix = path.suffix.lower()
    if path.is_dir():
        X, y = load_fashion_mnist(path, kind="train")
        try:
            X_test, y_test = load_fashion_mnist(path, kind="test")
        except FileNotFoundError:
            pass
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"X", "y"} <= keys:
                raise ValueError(f"{path} must hold arrays 'X' and 'y' (it holds {sorted(keys)})")
            X, y = z["X"], z["y"]
            if {"X_test", "y_test"} <= keys:
                X_test, y_test = z["X_test"], _as_labels(z["y_test"])
    elif suffix == ".npy":
        A = np.load(path, allow_pickle=False)
        if labels is not None:
            lab = Path(labels)
            y = np.load(lab, allow_pickle=False) if lab.suffix == ".npy" else np.loadtxt(
                lab, dtype=str)
            X = A
        else:
            if A.ndim != 2 or A.shape[1] < 2:
                raise ValueError(f"{path}: a 2-D array with the target as a column is needed "
                                 "(or pass --labels)")
            col = (A.shape[1] - 1) if target is None else int(target) % A.shape[1]
            X, y = np.delete(A, col, axis=1), A[:, col]
    elif suffix in (".csv", ".tsv", ".txt"):
        X, y = _read_csv(path, target)
    else:
        raise ValueError(f"{path}: unknown format {suffix!r} (use .csv, .tsv, .txt, .npy, .npz "
                         "or a folder of IDX files)")
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = _as_labels(np.asarray(y).reshape(-1))
    if len(X) != len(y):
        raise ValueError(f"{path}: {len(X)} samples but {len(y)} labels")
    if X_test is not None:
        X_test = np.asarray(X_test, dtype=np.float64).reshape(len(X_test), -1)
    if n_samples is not None and n_samples < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=n_samples, random_state=random_state,
                                      stratify=y if np.unique(y).size > 1 else None)
    return Bunch(X=X, y=y, X_test=X_test, y_test=y_test, name=path.name)


# ================================================================================== evaluate
def _mia(model, X_S, y_S, X_H, y_H) -> float:
    """Loss-attack membership-inference AUC, NaN where undefined (a model without the class)."""
    if len(y_H) == 0:
        return float("nan")
    try:
        return membership_inference_auc(model, X_S, y_S, X_H, y_H)
    except ValueError:
        return float("nan")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=False,
                file=sys.stderr)


def evaluate(X, y, X_test=None, y_test=None, *, forget_rate: float | None = 0.05,
             forget_class=None, epsilons=None, curvature: str = "ggn", inverse: str = "auto",
             damping="auto", C: float = 1.0, max_iter: int = 1000, tol: float = 1e-6,
             fisher_batch_size: int = 1, fisher_max_samples: int | None = None,
             metric: str = "auto", test_size: float = 0.25, standardize: bool = False,
             random_state: int = 0, progress: bool = False, threads: int | None = None) -> Bunch:
    """Forget part of a data set with SSSE over a grid of epsilons and compare with retraining.

    A :class:`~sklearn.linear_model.LogisticRegression` wrapped in
    :class:`~sklearn_ssse.UnlearnableClassifier` is fitted on the training data; the forget set
    ``S`` is a random share of it (``forget_rate``) or every training sample of one class
    (``forget_class``). The reference is retrained from scratch without ``S``. Every epsilon is
    evaluated in closed form from one erasure direction (``theta* + epsilon * delta``).

    Parameters
    ----------
    X, y : array-like
        Data. Without ``X_test`` a stratified ``test_size`` share is held out as test set.
    X_test, y_test : array-like, default=None
        Test set (held-out data; also the non-members of the membership-inference attack).
    forget_rate : float, default=0.05
        Share of the training samples to forget (ignored when ``forget_class`` is given).
    forget_class : object, default=None
        Forget every training sample of this class instead (single-class removal).
    epsilons : array-like of float, default=None
        The grid; ``None``: 0 to 2 in steps of 0.25 (random removal) or 0, 0.5, 1, 2, 5, 10, 20,
        50, 100 (class removal, which needs larger steps).
    curvature, inverse, damping, fisher_batch_size, fisher_max_samples
        Passed to :class:`~sklearn_ssse.UnlearnableClassifier`.
    C, max_iter, tol : float, int, float
        Of the :class:`~sklearn.linear_model.LogisticRegression`.
    metric : {"auto", "log_loss", "accuracy", "roc_auc"}, default="auto"
        Performance measure of the similarity ratio on ``S``. ``"auto"``: log-loss for random
        removal (the original and retrained models often both classify ``S`` perfectly, so
        accuracy and AUC cannot tell them apart), accuracy for class removal (the retrained model
        never predicts the class, so its log-loss on ``S`` is infinite).
    test_size : float, default=0.25
        Held-out share when no test set is given.
    standardize : bool, default=False
        Standardize the features (fitted on the training data, ``S`` included).
    random_state : int, default=0
        Seed of the split and of the forget set.
    progress : bool, default=False
        Show tqdm progress bars on stderr.
    threads : int or None, default=None
        Limit BLAS / torch threads.

    Returns
    -------
    result : Bunch
        ``table`` (text), ``markdown``, ``epsilons``, ``similarity_ratio``,
        ``parameter_distance`` (NaN for class removal: the retrained model has one class less),
        ``confusion_distance`` (normalized confusion distance on ``S``), ``accuracy_forget``,
        ``accuracy_test``, ``mia_auc`` (per epsilon, arrays), ``reference`` (the same numbers for
        the original and the retrained model, dict of dicts), ``best_epsilon``, ``mode``
        (``"rate"`` or ``"class"``), ``metric``, ``n_train``, ``n_forget``, ``timings`` (dict of
        seconds) and ``title``.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X_test is None:
        X, X_test, y, y_test = train_test_split(X, y, test_size=test_size,
                                                random_state=random_state, stratify=y)
    X_test, y_test = np.asarray(X_test, dtype=np.float64), np.asarray(y_test)
    mode = "rate" if forget_class is None else "class"
    if mode == "class":
        classes = np.unique(y)
        match = [c for c in classes.tolist() if str(c) == str(forget_class)]
        if not match:
            raise ValueError(f"forget_class={forget_class!r} is not a class of y "
                             f"({classes.tolist()})")
        forget_class = match[0]
        cv = ForgetSplit(n_splits=1, forget_size=1.0, strategy="class",
                         forget_class=forget_class, random_state=random_state)
    else:
        if forget_rate is None or not 0 < forget_rate < 1:
            raise ValueError(f"forget_rate must be in (0, 1), got {forget_rate}")
        cv = ForgetSplit(n_splits=1, forget_size=forget_rate, random_state=random_state)
    if metric == "auto":
        metric = "log_loss" if mode == "rate" else "accuracy"
    if epsilons is None:
        epsilons = parse_epsilons(DEFAULT_GRID_RATE if mode == "rate" else DEFAULT_GRID_CLASS)
    epsilons = np.unique(np.asarray(epsilons, dtype=float))
    if standardize:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(X)
        X, X_test = scaler.transform(X), scaler.transform(X_test)
    _, S = next(cv.split(X, y))
    keep = np.setdiff1d(np.arange(len(X)), S)
    X_S, y_S = X[S], y[S]
    base = _logistic(C, max_iter=max_iter, tol=tol)
    timings = {}
    bar = _progress(3 + len(epsilons), "evaluate", progress)
    with _threads(threads), bar:
        bar.set_description(f"fit + {curvature} curvature ({len(X)} samples)")
        t0 = time.perf_counter()
        clf = UnlearnableClassifier(base, curvature=curvature, inverse=inverse, damping=damping,
                                    fisher_batch_size=fisher_batch_size,
                                    fisher_max_samples=fisher_max_samples,
                                    random_state=random_state)
        clf = _fit_quietly(clf, X, y)
        timings["fit_curvature"] = time.perf_counter() - t0
        bar.update()
        bar.set_description(f"retrain without S ({len(keep)} samples)")
        t0 = time.perf_counter()
        retrained = _fit_quietly(clone(base), X[keep], y[keep])
        timings["retrain"] = time.perf_counter() - t0
        bar.update()
        bar.set_description(f"erasure direction (k={len(S)})")
        t0 = time.perf_counter()
        delta = clf.forget_direction(X_S, y_S).detach().cpu().numpy()
        timings["forget"] = time.perf_counter() - t0
        bar.update()
        theta = clf.get_parameters()
        original = clf.with_parameters(theta)
        same_layout = len(retrained.classes_) == len(clf.classes_)
        theta_re = _parameters_of(clf, retrained) if same_layout else None
        # membership-inference non-members: test samples (of the forgotten class, for a class)
        H = np.flatnonzero(y_test == forget_class) if mode == "class" else slice(None)
        X_H, y_H = X_test[H], y_test[H]

        def measures(model, params):
            return {
                "similarity_ratio": similarity_ratio(y_S, model, original, retrained, X=X_S,
                                                     metric=metric),
                "parameter_distance": (normalized_parameter_distance(params, theta, theta_re)
                                       if same_layout else float("nan")),
                "confusion_distance": normalized_confusion_distance(y_S, model, original,
                                                                    retrained, X=X_S),
                "accuracy_forget": float(model.score(X_S, y_S)),
                "accuracy_test": float(model.score(X_test, y_test)),
                "mia_auc": _mia(model, X_S, y_S, X_H, y_H),
            }

        per_eps = []
        bar.set_description(f"epsilon grid ({len(epsilons)} values)")
        for eps in epsilons:
            params = theta + eps * delta
            per_eps.append(measures(clf.with_parameters(params), params))
            bar.update()
        reference = {"original": measures(original, theta),
                     "retrained": measures(retrained, theta_re)}
    keys = list(per_eps[0])
    result = Bunch(epsilons=epsilons, **{k: np.array([m[k] for m in per_eps]) for k in keys})
    target = result.parameter_distance if same_layout else result.confusion_distance
    best = int(np.nanargmin(target))
    dist_name = "param dist" if same_layout else "conf. dist"
    dist_key = "parameter_distance" if same_layout else "confusion_distance"
    header = ["model", "epsilon", f"sim. ratio ({metric})", dist_name, "acc S", "acc test",
              "MIA AUC"]

    def row(name, eps, m):
        return [name, eps, m["similarity_ratio"], m[dist_key], m["accuracy_forget"],
                m["accuracy_test"], m["mia_auc"]]

    rows = [row("original", "-", reference["original"])]
    for i, (eps, m) in enumerate(zip(epsilons, per_eps)):
        rows.append(row("SSSE" + (" (best)" if i == best else ""), eps, m))
    rows.append(row("retrained", "-", reference["retrained"]))
    what = (f"class {forget_class!r}" if mode == "class"
            else f"{100 * forget_rate:g}% at random")
    title = (f"forget {what}: k={len(S)} of n={len(X)} training samples; "
             f"LogisticRegression(C={C:g}), curvature={curvature}, inverse={clf.inverse_}. "
             f"fit + curvature {timings['fit_curvature']:.2f} s, retrain "
             f"{timings['retrain']:.2f} s, SSSE step {1e3 * timings['forget']:.1f} ms")
    result.update(
        table=title + "\n\n" + _table(header, rows), markdown=_table(header, rows, True),
        reference=reference, best_epsilon=float(epsilons[best]), mode=mode, metric=metric,
        n_train=len(X), n_forget=len(S), timings=timings, title=title,
        forget_class=forget_class)
    return result


def plot_evaluation(result: Bunch, path=None, *, title: str | None = None):
    """Plot an :func:`evaluate` result: similarity ratio and distance against epsilon.

    Left panel: the similarity ratio on ``S`` (0 = like the retrained model, 1 = like the
    original). Right panel: the normalized parameter distance to the retrained model (random
    removal) or the normalized confusion distance on ``S`` (class removal). The best epsilon is
    marked.

    Parameters
    ----------
    result : Bunch
        Returned by :func:`evaluate`.
    path : str or path-like, default=None
        Write the figure there (PNG); ``None`` only returns it.
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib Figure
        The figure.
    """
    import matplotlib

    if path is not None and matplotlib.get_backend().lower() not in ("agg", "module://"
                                                                     "matplotlib_inline."
                                                                     "backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    eps = np.asarray(result.epsilons)
    class_mode = result.mode == "class"
    dist = result.confusion_distance if class_mode else result.parameter_distance
    dist_label = ("normalized confusion distance on S" if class_mode
                  else "normalized parameter distance")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    pos = eps[eps > 0]
    log_x = pos.size > 1 and pos.max() / pos.min() > 50
    for ax, values, label in ((axes[0], result.similarity_ratio,
                               f"similarity ratio on S ({result.metric})"),
                              (axes[1], dist, dist_label)):
        ax.plot(eps, values, "o-", color="C0", label="SSSE")
        ax.axhline(0, color="C2", lw=1, ls="--", label="retrained (target)")
        ax.axhline(1, color="C3", lw=1, ls=":", label="original")
        ax.axvline(result.best_epsilon, color="0.5", lw=1, ls="-.",
                   label=f"best epsilon = {result.best_epsilon:g}")
        if log_x:  # 0 then log-spaced values: linear up to the first positive epsilon
            ax.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.5)
            ax.set_xlim(0 if eps.min() == 0 else pos.min() / 1.5, eps.max() * 1.5)
            lo, hi = np.ceil(np.log10(pos.min())), np.floor(np.log10(pos.max()))
            ticks = ([0.0] if eps.min() == 0 else []) + [10.0 ** k for k in
                                                         np.arange(lo, hi + 1)]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("epsilon")
        ax.set_ylabel(label)
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        ax.set_ylim(-0.05, max(1.1, min(float(top) * 1.05, 5.0)))
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title or f"SSSE: forget {result.n_forget} of {result.n_train} samples "
                 f"({'one class' if class_mode else 'random'})")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ================================================================================== bench
def _run_all_path() -> Path:
    env = os.environ.get("SKLEARN_SSSE_BENCHMARKS")
    here = Path(env) if env else Path(__file__).resolve().parent.parent / "benchmarks"
    script = here / "run_all.py"
    if not script.exists():
        raise FileNotFoundError(
            f"{script} not found: `bench` runs the benchmarks of a source checkout (git clone "
            "the repository, or set SKLEARN_SSSE_BENCHMARKS to its benchmarks/ folder)")
    return script


def bench(argv: list[str]) -> int:
    """Run ``benchmarks/run_all.py`` of the source checkout with ``argv``."""
    import runpy

    script = _run_all_path()
    module = runpy.run_path(str(script), run_name="sklearn_ssse_bench")
    return int(module["main"](argv) or 0)


# ================================================================================== main
_EPILOG = """\
examples:
  sklearn-ssse demo
  sklearn-ssse evaluate data.csv --target label --forget-rate 0.05
  sklearn-ssse evaluate /usr/share/datasets/fashion-mnist --n-samples 10000 \\
      --forget-class 8 --epsilons 0,1,5,10,50 --output fmnist_class8.png
  sklearn-ssse bench --quick
"""


def _wrap(*paragraphs: str) -> str:
    import textwrap

    return "\n\n".join(textwrap.fill(p, 79, break_on_hyphens=False) for p in paragraphs)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sklearn-ssse", epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Single-step sample erasure (SSSE): forget training samples from a fitted "
                    "classifier with one preconditioned step instead of retraining it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="bundled digits: original / SSSE / retrained table (a few seconds)",
        description="Fit a LogisticRegression on scikit-learn's bundled digits data (no "
                    "download), forget a random share of the training set with one SSSE step "
                    "(empirical Fisher and GGN curvature) and compare with the model retrained "
                    "from scratch without those samples.")
    p.add_argument("--forget-rate", type=float, default=0.05, metavar="R",
                   help="share of the training set to forget (default: 0.05)")
    p.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength of the LogisticRegression (default: 1.0)")
    p.add_argument("--epsilon", type=float, default=1.0,
                   help="SSSE step size; 1 is the Newton step with --curvature ggn (default: 1)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the split and of the forget set (default: 0)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS / torch threads; one is fastest on this small problem (default: 1)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")

    e = sub.add_parser(
        "evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="your data: forget a share or a class over an epsilon grid, table + PNG",
        description=_wrap(
            "Fit a LogisticRegression wrapped in UnlearnableClassifier on a data set, forget a "
            "random share of the training samples or a whole class, evaluate every epsilon of "
            "a grid in closed form, compare with the model retrained from scratch, print a "
            "table and write a PNG of the similarity ratio and the normalized parameter "
            "distance against epsilon.",
            "Columns: sim. ratio = d(SSSE, retrained) / (d(SSSE, original) + d(SSSE, "
            "retrained)) with d the difference of the performance on S (0 = behaves like the "
            "retrained model, 1 = like the original); param dist = ||theta_SSSE - "
            "theta_retrained|| / ||theta_original - theta_retrained|| (class removal: the "
            "normalized confusion distance on S instead); MIA AUC = loss-based "
            "membership-inference attack, S against the test set (class removal: the test "
            "samples of the class); about 0.5 = S looks unseen."))
    e.add_argument("data", help="a .csv/.tsv/.txt file (target: last column or --target), a "
                   ".npz with arrays X, y (optional X_test, y_test), a .npy matrix (target: last "
                   "column or --labels), or a folder of Fashion-MNIST IDX .gz files")
    g = e.add_argument_group("data")
    g.add_argument("--target", default=None, metavar="COL",
                   help="CSV: name or index of the target column; .npy: its index "
                   "(default: the last column)")
    g.add_argument("--labels", default=None, metavar="FILE",
                   help=".npy data only: a separate .npy / text file of labels")
    g.add_argument("--n-samples", type=int, default=None, metavar="N",
                   help="use a random stratified subset of N training samples (default: all)")
    g.add_argument("--test-size", type=float, default=0.25, metavar="F",
                   help="held-out share when the data has no test set (default: 0.25)")
    g.add_argument("--standardize", action="store_true",
                   help="standardize the features (fitted on all training data)")
    g = e.add_argument_group("what to forget (one of)")
    mx = g.add_mutually_exclusive_group()
    mx.add_argument("--forget-rate", type=float, default=0.05, metavar="R",
                    help="forget this share of the training samples, at random (default: 0.05)")
    mx.add_argument("--forget-class", default=None, metavar="LABEL",
                    help="forget every training sample of this class (single-class removal)")
    g = e.add_argument_group("SSSE and model")
    g.add_argument("--epsilons", default=None, metavar="GRID",
                   help="epsilon grid: '0,0.5,1,2', 'linspace:0:2:9' or 'logspace:-2:1:13' "
                   f"(default: {DEFAULT_GRID_RATE} for --forget-rate, "
                   f"{DEFAULT_GRID_CLASS} for --forget-class)")
    g.add_argument("--curvature", choices=["ggn", "empirical_fisher"], default="ggn",
                   help="ggn: the exact Hessian for logistic regression (default); "
                   "empirical_fisher: the paper's mean outer product of gradients")
    g.add_argument("--inverse", default="auto",
                   choices=["auto", "dense", "block", "woodbury", "sherman_morrison"],
                   help="how F^-1 is held (default: auto = dense up to 4096 parameters per "
                   "block, else block-diagonal, else low-rank woodbury)")
    g.add_argument("--damping", default="auto", metavar="LAMBDA",
                   help="'auto' (the model's own L2 penalty 1/(C n)) or a number (default: auto)")
    g.add_argument("--fisher-batch-size", type=int, default=1, metavar="B",
                   help="mini-batch Fisher: average gradients over B samples (default: 1)")
    g.add_argument("--fisher-max-samples", type=int, default=None, metavar="M",
                   help="build the curvature from M random samples (default: all)")
    g.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength of the LogisticRegression (default: 1.0)")
    g.add_argument("--max-iter", type=int, default=1000, metavar="N",
                   help="L-BFGS iterations of the LogisticRegression (default: 1000)")
    g.add_argument("--tol", type=float, default=1e-6,
                   help="L-BFGS tolerance; the retrained reference must be well converged for "
                   "the distances to mean something (default: 1e-6)")
    g.add_argument("--metric", default="auto", choices=["auto", "log_loss", "accuracy",
                                                        "roc_auc"],
                   help="performance measure of the similarity ratio (default: auto = log_loss "
                   "for --forget-rate, accuracy for --forget-class)")
    g = e.add_argument_group("output")
    g.add_argument("--output", "-o", default="ssse_evaluate.png", metavar="PNG",
                   help="figure to write (default: ssse_evaluate.png); '' writes none")
    g.add_argument("--markdown", action="store_true", help="print a markdown table")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    g.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the split, subset and forget set (default: 0)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="limit BLAS / torch threads (default: library defaults)")

    b = sub.add_parser(
        "bench", help="run every benchmark (benchmarks/run_all.py of a source checkout)",
        description="Run the benchmark scripts of benchmarks/ and write their markdown tables "
                    "and figures to benchmarks/results/ (needs a source checkout). Options are "
                    "those of benchmarks/run_all.py.")
    b.add_argument("--quick", action="store_true", help="small sizes (minutes, not hours)")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default: benchmarks/results)")
    b.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run only these benchmarks (e.g. digits fmnist_linear)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sklearn_ssse`` and of the ``sklearn-ssse`` script.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments (``None``: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a bad input (with a message on stderr).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        print(demo(args.forget_rate, args.C, args.epsilon, args.random_state,
                   threads=args.threads, markdown=args.markdown))
        return 0
    if args.command == "bench":
        forward = (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
        if args.only:
            forward += ["--only", *args.only]
        try:
            return bench(forward)
        except FileNotFoundError as exc:
            parser.exit(2, f"sklearn-ssse bench: {exc}\n")
    try:
        data = load_data(args.data, target=args.target, labels=args.labels,
                         n_samples=args.n_samples, random_state=args.random_state)
        epsilons = None if args.epsilons is None else parse_epsilons(args.epsilons)
        damping = args.damping if args.damping == "auto" else float(args.damping)
        result = evaluate(
            data.X, data.y, data.X_test, data.y_test,
            forget_rate=None if args.forget_class is not None else args.forget_rate,
            forget_class=args.forget_class, epsilons=epsilons, curvature=args.curvature,
            inverse=args.inverse, damping=damping, C=args.C, max_iter=args.max_iter,
            tol=args.tol, fisher_batch_size=args.fisher_batch_size,
            fisher_max_samples=args.fisher_max_samples, metric=args.metric,
            test_size=args.test_size, standardize=args.standardize,
            random_state=args.random_state, progress=not args.quiet, threads=args.threads)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"sklearn-ssse evaluate: error: {exc}\n")
    print(f"{data.name}: " + (result.title + "\n\n" + result.markdown if args.markdown
                              else result.table))
    print(f"\nbest epsilon: {result.best_epsilon:g} (lowest "
          f"{'normalized confusion distance' if result.mode == 'class' else 'parameter distance'}"
          " to the retrained model)")
    if args.output:
        plot_evaluation(result, args.output,
                        title=f"{data.name}: SSSE over epsilon ({result.n_forget} of "
                              f"{result.n_train} samples forgotten)")
        print(f"figure written to {args.output}")
    return 0
