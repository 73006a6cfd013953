"""Backend for scikit-learn's probabilistic linear classifiers.

Supported: :class:`~sklearn.linear_model.LogisticRegression` (binary and multinomial, with or
without intercept, any solver), :class:`~sklearn.linear_model.SGDClassifier` with
``loss="log_loss"`` (binary, and one-vs-rest for several classes), and
:class:`~sklearn.multioutput.MultiOutputClassifier` of those (one curvature block per output).

Parameter layout: for each output, the class rows of ``[coef_ | intercept_]`` one after the other,
i.e. class ``c`` owns the contiguous slice ``[w_c, b_c]`` (the intercept is left out when
``fit_intercept=False``).  Per-sample gradients and curvature factors have closed forms:

* softmax (multinomial): ``g = (p - e_y) (x) [x, 1]``; GGN factor rows
  ``sqrt(p_c) (p - e_c) (x) [x, 1]`` for ``c = 1..C``
  (their Gram is ``(diag(p) - p p^T) (x) x x^T``);
* sigmoid (binary, or each one-vs-rest class): ``g = (sigma - t) [x, 1]``; GGN factor
  ``sqrt(sigma (1 - sigma)) [x, 1]``.

Both curvatures are sums of Kronecker products ``sum_i A_i (x) xa_i xa_i^T`` with a small
``C x C`` output matrix ``A_i`` (``r r^T`` with ``r = p - e_y`` for the empirical Fisher,
``diag(p) - p p^T`` for the softmax GGN, ``diag(sigma (1 - sigma))`` for sigmoids).
:meth:`LinearBackend.curvature_gram` uses that closed form: block ``(c, c')`` of the Gram matrix
is one weighted product ``Xa^T diag(A_{:, c, c'}) Xa``, which costs ``C (C + 1) / 2`` GEMMs of the
feature dimension instead of a GEMM over ``n C`` factor rows of length ``C (p + 1)`` (about 20x
fewer flops for a dense 10-class model, 10x for its per-class blocks).

Class weights (``class_weight=`` of the wrapped model) are honoured in every per-sample term:
scikit-learn minimises ``sum_i w_i l_i`` plus the penalty, with ``w_i`` the weight of the
sample's class, so the gradient of a sample is ``w_i g_i``, its curvature term ``w_i H_i`` and
its factor rows ``sqrt(w_i)`` times the unweighted ones (a weight counts like repeating the
sample).  ``SGDClassifier`` trains each one-vs-rest row with weight ``w_c`` on the rows of class
``c`` and 1 on the rest, so there the weights are per sample *and* class row.  The weights are
those of the fit: ``"balanced"`` is resolved once from the training labels
(:meth:`LinearBackend.fit_indices`, the labels ``UnlearnableClassifier`` fits on) and kept on the
fitted estimator; forgetting does not recompute them from the remaining rows, whereas a model
retrained with ``"balanced"`` on the remaining rows would (its objective differs by those new
weights).  ``LogisticRegressionCV`` is the refit model at the selected ``C_``.

Sample weights (``fit(X, y, sample_weight=w)``) multiply the same terms (times the class
weight).  They are kept by row identity: :meth:`LinearBackend.weight_table` maps the salted
digest of each training row (its features and label codes) to its weight, and
:meth:`LinearBackend.sample_weights` looks the rows of any call up in it (a row that is not a
training row is refused), so that callers pass rows only.  Without a table nothing is looked
up.  (``inverse="ekfac"`` takes its eigenbasis from the unweighted input factor ``sum_i Xa_i
Xa_i^T``, as with class weights; its eigenvalues carry the weights.)
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import blas
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.utils.class_weight import compute_class_weight

from .._rows import new_salt, row_digests, sorted_lookup
from ._base import BaseBackend, draw_labels

_NO_PROBA = ("{name} does not model p(y|x) (no log-likelihood loss), so it cannot be unlearned "
             "with SSSE. Use LogisticRegression or SGDClassifier(loss='log_loss').")
_UNSUPPORTED = ("{name} is not supported by UnlearnableClassifier: wrap LogisticRegression, "
                "SGDClassifier(loss='log_loss'), a MultiOutputClassifier of those, or a skorch "
                "NeuralNetClassifier.")


#: attribute of a fitted estimator holding the class weights it was trained with (resolved from
#: the training labels when ``class_weight="balanced"``; see :meth:`LinearBackend.fit_indices`)
CLASS_WEIGHT_ATTR = "_ssse_class_weight"


def _lr_C(est) -> float:
    """The inverse penalty strength of a fitted LogisticRegression: ``C``, or for
    LogisticRegressionCV the selected ``C_`` (one per class, all equal: the refit is one
    multinomial problem)."""
    if isinstance(est, LogisticRegressionCV):
        if not hasattr(est, "C_"):
            raise ValueError("LogisticRegressionCV is not fitted: its penalty C_ is chosen by "
                             "fit")
        return float(np.ravel(est.C_)[0])
    return float(est.C)


def _lrcv_l1_ratio(est) -> float:
    """Largest L1 share a LogisticRegressionCV may select (before fit) or selected (after)."""
    if est.penalty == "l1":
        return 1.0
    if hasattr(est, "l1_ratio_"):
        ratios = list(np.ravel(est.l1_ratio_))
    elif isinstance(est.l1_ratios, str) or est.l1_ratios is None:  # "warn" / None: L2
        return 0.0
    else:
        ratios = list(np.ravel(est.l1_ratios))
    return float(max((r for r in ratios if r is not None), default=0.0))


def _lr_penalty(est) -> tuple[float, bool]:
    """``(l1_ratio, penalised)`` of a LogisticRegression, for the old and the new API
    (``penalty`` is deprecated in scikit-learn 1.8 in favour of ``l1_ratio`` and ``C=np.inf``).
    A LogisticRegressionCV's ``penalised`` is only known after fit (from ``C_``)."""
    penalty = getattr(est, "penalty", "deprecated")
    if isinstance(est, LogisticRegressionCV):
        penalised = not hasattr(est, "C_") or bool(np.isfinite(_lr_C(est)))
        return _lrcv_l1_ratio(est), penalised
    penalised = bool(np.isfinite(est.C)) and penalty is not None and penalty != "none"
    if penalty == "l1":
        return 1.0, penalised
    if penalty in ("elasticnet", "deprecated"):
        return float(est.l1_ratio or 0.0), penalised
    return 0.0, penalised


def _linear_without_proba() -> tuple[type, ...]:
    """scikit-learn's linear classifiers without a probabilistic loss (public classes)."""
    import sklearn.linear_model as lm
    import sklearn.svm as svm

    names = [(lm, "RidgeClassifier"), (lm, "RidgeClassifierCV"), (lm, "Perceptron"),
             (lm, "PassiveAggressiveClassifier"), (svm, "LinearSVC")]
    return tuple(getattr(m, n) for m, n in names if hasattr(m, n))


def _check_single(est) -> None:
    if isinstance(est, LogisticRegressionCV) and not est.refit:
        raise ValueError("LogisticRegressionCV(refit=False) averages the models of the folds, "
                         "which is the optimum of no objective on the training data: SSSE needs "
                         "the refit model (refit=True).")
    if isinstance(est, LogisticRegression):
        if _lr_penalty(est)[0] > 0:
            raise ValueError("SSSE needs a twice-differentiable objective: LogisticRegression with "
                             "an L1 / elastic-net penalty (l1_ratio > 0) is not supported.")
        return
    if isinstance(est, SGDClassifier):
        if est.loss != "log_loss":
            raise ValueError(_NO_PROBA.format(name=f"SGDClassifier(loss={est.loss!r})"))
        if est.penalty == "l1" or (est.penalty == "elasticnet" and est.l1_ratio > 0):
            raise ValueError("SSSE needs a twice-differentiable objective: SGDClassifier with an "
                             "L1 / elastic-net penalty is not supported.")
        return
    if isinstance(est, _linear_without_proba()):
        raise ValueError(_NO_PROBA.format(name=type(est).__name__))
    raise TypeError(_UNSUPPORTED.format(name=type(est).__name__))


def _fit_class_weight(est):
    """The class weights ``est`` was trained with, one per class of ``classes_``: ``None``
    when every weight is 1, the string ``"unresolved"`` for ``class_weight="balanced"`` of a
    LogisticRegression whose training labels were not seen yet (see
    :meth:`LinearBackend.fit_indices`)."""
    cw = getattr(est, "class_weight", None)
    if cw is None:
        return None
    if isinstance(est, SGDClassifier):  # scikit-learn keeps the weights it resolved at fit
        w = getattr(est, "_expanded_class_weight", None)
        if w is None:
            w = compute_class_weight(cw, classes=est.classes_, y=est.classes_)
    elif hasattr(est, CLASS_WEIGHT_ATTR):
        w = getattr(est, CLASS_WEIGHT_ATTR)
    elif isinstance(cw, dict):  # independent of the data
        w = compute_class_weight(cw, classes=est.classes_, y=est.classes_)
    else:  # "balanced": n / (n_classes * bincount(y)) over the training labels
        return "unresolved"
    w = np.asarray(w, dtype=np.float64)
    return None if np.all(w == 1.0) else w


def _outer_rows(R: np.ndarray, Xa) -> np.ndarray:
    """``R[:, :, None] * Xa[:, None, :]`` (shape ``(n, a, p)``) for dense or scipy sparse ``Xa``.

    The result (factor rows, per-sample gradients) is dense by nature; a sparse ``Xa`` itself is
    never densified: each of the ``a`` slices is a scaled copy of its sparsity pattern."""
    if not sp.issparse(Xa):
        return R[:, :, None] * Xa[:, None, :]
    out = np.zeros((R.shape[0], R.shape[1], Xa.shape[1]))
    for c in range(R.shape[1]):
        out[:, c, :] = Xa.multiply(R[:, c:c + 1]).toarray()
    return out


def _syrk(Z: torch.Tensor) -> torch.Tensor:
    """``Z^T Z`` with BLAS ``dsyrk`` (one triangle: half the flops of a GEMM)."""
    Zn = Z.numpy()
    upper = blas.dsyrk(1.0, Zn.T, trans=0, lower=0)  # Zn.T is Fortran-ordered: no copy
    return torch.from_numpy(np.triu(upper) + np.triu(upper, 1).T)


class _SingleLinear:
    """Maths for one fitted linear model (one output)."""

    def __init__(self, est):
        self.est = est
        self.classes = est.classes_
        self.n_classes = len(self.classes)
        self.fit_intercept = bool(est.fit_intercept)
        self.n_features = est.coef_.shape[1]
        self.p1 = self.n_features + self.fit_intercept  # params per class row
        # softmax only for multinomial LogisticRegression; binary and SGD OvR are sigmoids
        self.softmax = isinstance(est, LogisticRegression) and self.n_classes > 2
        self.n_rows = est.coef_.shape[0]  # 1 for binary
        self.n_params = self.n_rows * self.p1
        self.class_weight = _fit_class_weight(est)

    # parameters ---------------------------------------------------------------------------
    def get(self) -> np.ndarray:
        W = self.est.coef_
        if self.fit_intercept:
            W = np.hstack([W, np.reshape(self.est.intercept_, (-1, 1))])
        return np.asarray(W, dtype=np.float64).ravel()

    def split(self, theta: np.ndarray):
        W = np.reshape(theta, (self.n_rows, self.p1))
        coef = W[:, : self.n_features]
        intercept = W[:, self.n_features] if self.fit_intercept else None
        return coef, intercept

    def set(self, est, theta: np.ndarray, inplace: bool) -> None:
        coef, intercept = self.split(theta)
        if inplace:
            est.coef_[...] = coef
            if intercept is not None:
                est.intercept_[...] = intercept
        else:
            est.coef_ = coef.astype(est.coef_.dtype, copy=True)
            if intercept is not None:
                est.intercept_ = np.array(intercept, dtype=np.asarray(est.intercept_).dtype)

    # maths ---------------------------------------------------------------------------------
    def _augment(self, X):
        if not self.fit_intercept:
            return X
        if sp.issparse(X):  # the intercept column joins the sparse rows (stays sparse)
            return sp.hstack([X, np.ones((X.shape[0], 1))], format="csr")
        return np.hstack([X, np.ones((X.shape[0], 1))])

    def _scores(self, Xa):
        W = np.reshape(self.get(), (self.n_rows, self.p1))
        return np.asarray(Xa @ W.T)

    def _targets(self, y):
        """One-hot targets (softmax) or 0/1 targets per sigmoid row."""
        idx = np.searchsorted(self.classes, y)
        if self.n_rows == 1:
            return (idx == 1).astype(np.float64)[:, None]
        return np.eye(self.n_classes)[idx]

    def resolve_class_weight(self, y) -> None:
        """Resolve ``class_weight="balanced"`` from the training labels ``y`` (as the wrapped
        model did at fit) and keep the weights on the fitted estimator."""
        if not (isinstance(self.class_weight, str) and self.class_weight == "unresolved"):
            return
        w = compute_class_weight("balanced", classes=self.classes, y=np.asarray(y))
        setattr(self.est, CLASS_WEIGHT_ATTR, w)
        self.class_weight = _fit_class_weight(self.est)

    def weights(self, y, power: float = 1.0, sw=None) -> np.ndarray | None:
        """Per-sample weights (class weight times sample weight ``sw``) raised to ``power``,
        shape ``(n, rows)`` (one column per class row of the parameters), or ``None`` when the
        model is unweighted."""
        cw = self.class_weight
        if sw is not None:
            sw = np.asarray(sw, dtype=np.float64)
            sw = sw if power == 1.0 else np.sqrt(sw) if power == 0.5 else sw**power
            W = self.weights(y, power) if cw is not None else None
            if W is None:
                return np.repeat(sw[:, None], self.n_rows, axis=1)
            return W * sw[:, None]
        if cw is None:
            return None
        if isinstance(cw, str):
            raise ValueError(
                f"{type(self.est).__name__}(class_weight='balanced') weighs each class by its "
                "share of the training labels, which were not seen: build the model with fit "
                "or from_fitted(estimator, X, y) with the training data in memory, or pass the "
                "fitted weights as a dict (class_weight={label: weight}).")
        idx = np.searchsorted(self.classes, y)
        cw = cw**power
        if self.n_rows > 1 and not self.softmax:  # SGD one-vs-rest: the rest count 1
            W = np.ones((len(idx), self.n_rows))
            W[np.arange(len(idx)), idx] = cw[idx]
            return W
        return np.repeat(cw[idx][:, None], self.n_rows, axis=1)

    def _probs(self, Xa):
        S = self._scores(Xa)
        return softmax(S, axis=1) if self.softmax else expit(S)

    def grads(self, X, y, power: float = 1.0, sw=None) -> np.ndarray:
        """Per-sample gradients of the weighted loss ``w_i l_i`` (``power=1``), or the
        empirical Fisher's factor rows ``sqrt(w_i) grad l_i`` (``power=0.5``)."""
        Xa = self._augment(X)
        R = self._probs(Xa) - self._targets(y)  # (n, rows)
        W = self.weights(y, power, sw)
        if W is not None:
            R *= W
        return _outer_rows(R, Xa).reshape(X.shape[0], -1)

    def _sqrt_sample_weights(self, y, sw=None) -> np.ndarray | None:
        """``sqrt(w_i)`` per sample and class row, shape (n, rows), or ``None`` (unweighted)."""
        if self.class_weight is None:
            return None if sw is None else self.weights(None, 0.5, sw)
        if y is None:
            raise ValueError("the sampled GGN rows of a model trained with class weights need "
                             "the samples' labels (their weights), which this caller does not "
                             "pass: use curvature='empirical_fisher' or an inverse other than "
                             "'woodbury'")
        return self.weights(y, 0.5, sw)

    def ggn_rows(self, X, y=None, sw=None) -> np.ndarray:
        Xa = self._augment(X)
        P = self._probs(Xa)
        n = X.shape[0]
        W = self._sqrt_sample_weights(y, sw)
        if not self.softmax:  # independent sigmoids: one factor row per sample suffices
            w = np.sqrt(P * (1.0 - P))
            if W is not None:
                w *= W
            return _outer_rows(w, Xa).reshape(n, 1, -1)
        C = self.n_classes
        D = P[:, None, :] - np.eye(C)[None, :, :]  # D[i, c] = p_i - e_c
        D *= np.sqrt(P)[:, :, None]
        if W is not None:  # softmax: one weight per sample
            D *= W[:, :1, None]
        return _outer_rows(D.reshape(n, C * C), Xa).reshape(n, C, -1)

    def ggn_sample_rows(self, X, u, y=None, sw=None) -> np.ndarray:
        """One GGN factor row per sample: the gradient at a label drawn from ``p(.|x)`` at the
        uniforms ``u`` (softmax), or the exact single factor row (sigmoids), shape (n, 1, p);
        times ``sqrt(w_i)`` for a class-weighted model (which needs the true labels ``y``)."""
        if not self.softmax:
            return self.ggn_rows(X, y, sw)
        Xa = self._augment(X)
        P = self._probs(Xa)
        R = P - np.eye(self.n_classes)[draw_labels(P, u)]
        W = self._sqrt_sample_weights(y, sw)
        if W is not None:
            R *= W[:, :1]
        return _outer_rows(R, Xa).reshape(X.shape[0], 1, -1)

    def kron_factor_rows(self, X, y, curvature: str, u=None, sw=None):
        """``(Xa, R)``: the factor rows of the curvature are ``R[i, j] (x) Xa[i]`` (``R`` of
        shape ``(n, q, rows)``); ``u``: one GGN row per sample at a drawn label (softmax)."""
        Xa = self._augment(X)
        P = self._probs(Xa)
        if curvature == "empirical_fisher":
            R = P - self._targets(y)
            W = self.weights(y, 0.5, sw)
            if W is not None:
                R *= W
            return Xa, R[:, None, :]
        W = self._sqrt_sample_weights(y, sw)
        if not self.softmax:
            R = np.sqrt(P * (1.0 - P))
            if W is not None:
                R *= W
            return Xa, R[:, None, :]
        if u is not None:
            R = P - np.eye(self.n_classes)[draw_labels(P, u)]
            if W is not None:
                R *= W[:, :1]
            return Xa, R[:, None, :]
        D = P[:, None, :] - np.eye(self.n_classes)[None, :, :]
        D *= np.sqrt(P)[:, :, None]
        if W is not None:
            D *= W[:, :1, None]
        return Xa, D

    def diagonal(self, X, y, curvature: str, sw=None) -> np.ndarray:
        """Diagonal of the data term: ``sum_i A_i[r, r] * Xa_i^2`` for every class row ``r``."""
        Xa, A = self.output_weights(X, y, curvature, sw)
        diag = np.diagonal(A, axis1=1, axis2=2)
        if sp.issparse(Xa):
            return np.asarray(Xa.multiply(Xa).T @ diag).T.ravel()
        return (diag.T @ (Xa * Xa)).ravel()

    def grad_sum(self, X, y, sw=None) -> np.ndarray:
        """``sum_i g_i`` in closed form, ``(P - T)^T [X, 1]``, without the per-sample rows (nor
        a copy of ``X`` with a column of ones)."""
        W = np.reshape(self.get(), (self.n_rows, self.p1))
        S = X @ W[:, : self.n_features].T
        if self.fit_intercept:
            S += W[:, -1]
        R = (softmax(S, axis=1) if self.softmax else expit(S)) - self._targets(y)
        W = self.weights(y, 1.0, sw)
        if W is not None:
            R *= W
        G = np.asarray(X.T @ R).T  # (X^T R)^T: a sparse X stays sparse
        if self.fit_intercept:
            G = np.hstack([G, R.sum(0)[:, None]])
        return G.ravel()

    def output_weights(self, X, y, curvature: str, sw=None):
        """``(Xa, A)``: the curvature's data term is ``sum_i A[i] (x) Xa[i] Xa[i]^T``.

        ``A`` has shape ``(n, rows, rows)`` in the layout of the class rows of the parameters.
        """
        Xa = self._augment(X)
        if curvature == "empirical_fisher":
            r = self._probs(Xa) - self._targets(y)
            W = self.weights(y, 0.5, sw)
            if W is not None:  # the factor row sqrt(w_i) g_i
                r *= W
            return Xa, r[:, :, None] * r[:, None, :]
        P = self._probs(Xa)
        W = self.weights(y, 1.0, sw)
        if self.softmax:
            A = -P[:, :, None] * P[:, None, :]
            idx = np.arange(self.n_rows)
            A[:, idx, idx] += P
            if W is not None:  # one weight per sample
                A *= W[:, :1, None]
            return Xa, A
        A = np.zeros((X.shape[0], self.n_rows, self.n_rows))
        idx = np.arange(self.n_rows)
        A[:, idx, idx] = P * (1.0 - P) if W is None else P * (1.0 - P) * W  # no cross terms
        return Xa, A

    def gram(self, Xt: torch.Tensor, At: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Block ``[lo:hi, lo:hi]`` (local to this output) of the curvature's data-term Gram,
        from ``(Xa, A)`` of :meth:`output_weights` as tensors."""
        p1 = self.p1
        G = torch.zeros((hi - lo, hi - lo), dtype=torch.float64)
        spans = []  # (class row, local columns of the row, columns in G)
        for r in range(lo // p1, (hi - 1) // p1 + 1):
            a, b = max(lo, r * p1), min(hi, (r + 1) * p1)
            spans.append((r, slice(a - r * p1, b - r * p1), slice(a - lo, b - lo)))
        for i, (r, cols, out) in enumerate(spans):
            for r2, cols2, out2 in spans[i:]:
                w = At[:, r, r2]
                if not bool(w.any()):
                    continue
                if r2 == r and bool((w >= 0).all()):  # diagonal block: half the flops
                    G[out, out] = _syrk(Xt[:, cols] * w.sqrt()[:, None])
                    continue
                block = (Xt[:, cols] * w[:, None]).T @ Xt[:, cols2]
                G[out, out2] = block
                if r2 != r:
                    G[out2, out] = block.T
        return G

    def gram_sparse(self, Xa, A: np.ndarray, lo: int, hi: int) -> torch.Tensor:
        """:meth:`gram` for a scipy sparse ``Xa`` (CSR): every block ``Xa^T diag(w) Xa`` is a
        sparse product; only the ``(hi - lo)^2`` result is dense."""
        p1 = self.p1
        G = np.zeros((hi - lo, hi - lo))
        spans = []
        for r in range(lo // p1, (hi - 1) // p1 + 1):
            a, b = max(lo, r * p1), min(hi, (r + 1) * p1)
            spans.append((r, slice(a - r * p1, b - r * p1), slice(a - lo, b - lo)))
        whole = (0, p1)

        def cols(c):
            return Xa if (c.start, c.stop) == whole else Xa[:, c]

        for i, (r, c1, out) in enumerate(spans):
            for r2, c2, out2 in spans[i:]:
                w = A[:, r, r2]
                if not w.any():
                    continue
                block = (cols(c1).multiply(w[:, None]).T @ cols(c2)).toarray()
                G[out, out2] = block
                if r2 != r:
                    G[out2, out] = block.T
        return torch.from_numpy(G)

    def damping(self, n: int) -> np.ndarray:
        """Mean-form Hessian of the penalty: the model's own objective."""
        est = self.est
        lam_b = 0.0
        if isinstance(est, LogisticRegression):
            # sklearn: C * sum_i w_i loss_i + ||w||^2 / 2  ->  mean form 1 / (C n), with n the
            # rows (the class weights w_i sit in the data terms); LogisticRegressionCV: C_
            lam_w = 1.0 / (_lr_C(est) * n) if _lr_penalty(est)[1] else 0.0
            if est.solver == "liblinear" and self.fit_intercept:
                # liblinear penalises the synthetic feature: b = s * w_b
                lam_b = lam_w / est.intercept_scaling**2
        else:  # SGDClassifier: mean loss + alpha * ||w||^2 / 2 (l2, or elasticnet with l1_ratio=0)
            lam_w = 0.0 if est.penalty is None else float(est.alpha)
        per_row = np.full(self.p1, lam_w)
        if self.fit_intercept:
            per_row[-1] = lam_b
        return np.tile(per_row, self.n_rows)

    def natural_blocks(self, offset: int) -> list[slice]:
        return [slice(offset + r * self.p1, offset + (r + 1) * self.p1) for r in range(self.n_rows)]

    def independent_blocks(self, offset: int) -> list[slice]:
        if self.softmax:
            return [slice(offset, offset + self.n_params)]
        return self.natural_blocks(offset)  # binary: one row; OvR: rows are independent models


class LinearBackend(BaseBackend):
    """Backend for LogisticRegression, SGDClassifier(log_loss) and MultiOutputClassifier of them.

    Parameters
    ----------
    estimator : fitted estimator
        One of the supported linear models.
    parameters : None
        Linear models always expose all their parameters; must be ``None``.
    dtype : None or "float64"
        Linear models work in float64.
    chunk_size : int or None, default=None
        Unused (the closed forms are vectorised over all rows); accepted so that every backend
        takes the estimator's ``chunk_size``.
    row_weights : dict or None, default=None
        The sample weights of the fit, by row identity (:meth:`weight_table`): every
        per-sample term of a row is multiplied by its weight, looked up from the row's
        salted digest; ``None`` (unweighted) does no lookup.
    """

    dtype = torch.float64
    device = torch.device("cpu")
    input_dtype = np.float64
    accepts_sparse = True
    certifiable = True
    public_numpy = True
    #: ``fit(X, y, sample_weight=...)`` is supported (:meth:`weight_table`)
    accepts_sample_weight = True

    def __init__(self, estimator, parameters=None, dtype=None, chunk_size=None,
                 row_weights=None):
        super().__init__(estimator)
        if parameters is not None:
            raise ValueError("parameters= selects torch parameters; linear models always use all "
                             "of theirs. Leave it as None.")
        if dtype not in (None, "float64"):
            raise ValueError("linear models are unlearned in float64; leave dtype=None")
        self.multi_output = isinstance(estimator, MultiOutputClassifier)
        subs = estimator.estimators_ if self.multi_output else [estimator]
        self.parts = [_SingleLinear(e) for e in subs]
        self.offsets = np.cumsum([0] + [p.n_params for p in self.parts])
        self.row_weights = row_weights

    # sample weights -------------------------------------------------------------------------
    def _row_digests(self, X, y, salt: bytes) -> np.ndarray:
        """Salted digests of the rows ``(X[i], y[i])``, the labels as class indices."""
        codes = np.stack([np.searchsorted(p.classes, yj)
                          for p, yj in zip(self.parts, self._columns(y))], axis=1)
        return row_digests(X, codes.astype(np.int64), salt=salt)

    def weight_table(self, X, y, sample_weight) -> dict:
        """The weight of every distinct training row ``(X[i], y[i])``, by salted digest.

        Parameters
        ----------
        X : ndarray or scipy sparse matrix of shape (n, n_features)
            The training rows the model saw.
        y : ndarray of shape (n,) or (n, n_outputs)
            Their labels.
        sample_weight : ndarray of shape (n,)
            Their weights.

        Returns
        -------
        dict
            ``{"salt": bytes, "digests": sorted distinct digests, "weights": float64}``.

        Raises
        ------
        ValueError
            Identical rows (features and label) with different weights: which of them a
            deletion request names would be ambiguous.
        """
        salt = new_salt()
        d = self._row_digests(X, y, salt)
        w = np.asarray(sample_weight, dtype=np.float64)
        values, first, inverse = np.unique(d, return_index=True, return_inverse=True)
        inverse = np.ravel(inverse)
        weights = w[first]
        clash = weights[inverse] != w
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            raise ValueError(
                f"training row {i} appears more than once (same features and label) with "
                f"different sample weights ({w[i]:g} and {weights[inverse[i]]:g}): a deletion "
                "request names a row by its content, so which copy it removes would be "
                "ambiguous. Merge identical rows (one row with the summed weight) or give them "
                "the same weight")
        return {"salt": salt, "digests": values, "weights": weights}

    def sample_weights(self, X, y) -> np.ndarray | None:
        """The fit's sample weight of every row ``(X[i], y[i])`` (``None``: unweighted model).

        Raises
        ------
        ValueError
            A row that is not a training row of this weighted model (its weight is unknown).
        """
        table = self.row_weights
        if table is None:
            return None
        if y is None:
            raise ValueError("a model fitted with sample weights needs the labels of the rows "
                             "(a row's weight is looked up by its features and label)")
        d = self._row_digests(X, y, table["salt"])
        pos, found = sorted_lookup(table["digests"], d)
        if not found.all():
            raise ValueError(
                f"{int((~found).sum())} of the {len(d)} rows are not a training row of this "
                "weighted model, its weight is unknown (a model fitted with sample_weight "
                "looks each row's weight up by its features and label); nothing was changed")
        return np.asarray(table["weights"])[pos]

    @classmethod
    def supports(cls, estimator) -> bool:
        inner = estimator.estimator if isinstance(estimator, MultiOutputClassifier) else estimator
        return isinstance(inner, (LogisticRegression, SGDClassifier))

    @classmethod
    def check_estimator(cls, estimator) -> None:
        if isinstance(estimator, MultiOutputClassifier):
            _check_single(estimator.estimator)
        else:
            _check_single(estimator)

    @property
    def n_params(self) -> int:
        return int(self.offsets[-1])

    def _collect(self, method) -> list[slice]:
        return [s for p, o in zip(self.parts, self.offsets) for s in getattr(p, method)(int(o))]

    @property
    def blocks(self):
        blocks = self._collect("independent_blocks")
        return blocks if len(blocks) > 1 else None

    @property
    def natural_blocks(self):
        blocks = self._collect("natural_blocks")
        return blocks if len(blocks) > 1 else None

    def _split(self, theta) -> list[np.ndarray]:
        theta = theta.detach().cpu().numpy() if torch.is_tensor(theta) else np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {theta.shape}")
        return [theta[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def get_parameters(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([p.get() for p in self.parts]))

    def set_parameters(self, theta) -> None:
        for p, t in zip(self.parts, self._split(theta)):
            p.set(p.est, t, inplace=True)

    def with_parameters(self, theta):
        pieces = self._split(theta)
        copies = []
        for p, t in zip(self.parts, pieces):
            c = copy.copy(p.est)
            p.set(c, t, inplace=False)
            copies.append(c)
        if not self.multi_output:
            return copies[0]
        mo = copy.copy(self.estimator)
        mo.estimators_ = copies
        return mo

    def _columns(self, y):
        y = np.asarray(y)
        return [y[:, j] for j in range(y.shape[1])] if self.multi_output else [y]

    def feature_parameters(self, features) -> np.ndarray:
        """Indices of the weights of input ``features``: one per class row (a binary model has
        one row, a multinomial one per class, an SGD one-vs-rest model one per class); the
        intercepts are never among them."""
        if self.multi_output:
            raise ValueError("preprocessing='update' does not support a MultiOutputClassifier "
                             "(each output has its own weights of the features)")
        (part,) = self.parts
        features = np.unique(np.asarray(features, dtype=np.int64))
        if features.size and (features[0] < 0 or features[-1] >= part.n_features):
            raise ValueError(f"feature indices out of range [0, {part.n_features})")
        rows = np.arange(part.n_rows)[:, None] * part.p1
        return (rows + features[None, :]).ravel()

    def drop_features(self, estimator, features) -> None:
        """Delete the columns ``features`` of ``estimator.coef_`` (its ``n_features_in_`` and
        ``feature_names_in_`` follow); the intercepts stay."""
        self.feature_parameters(features)  # checks
        features = np.unique(np.asarray(features, dtype=np.int64))
        estimator.coef_ = np.delete(estimator.coef_, features, axis=1)
        estimator.n_features_in_ = estimator.coef_.shape[1]
        if hasattr(estimator, "feature_names_in_"):
            estimator.feature_names_in_ = np.delete(estimator.feature_names_in_, features)

    def fit_indices(self, X, y) -> np.ndarray:
        """All rows; also resolves ``class_weight="balanced"`` of a LogisticRegression from the
        training labels ``y`` (called once with them by ``fit`` and ``from_fitted``) and keeps
        the weights on the fitted estimator, so that every later gradient and curvature term
        uses the weights of the fit (a deletion does not recompute them)."""
        for p, yj in zip(self.parts, self._columns(y)):
            p.resolve_class_weight(yj)
        return np.arange(X.shape[0])

    def per_sample_gradients(self, X, y) -> torch.Tensor:
        """Gradients of the weighted losses ``w_i l_i`` (``w_i = 1`` without class weights)."""
        sw = self.sample_weights(X, y)
        G = np.hstack([p.grads(X, yj, sw=sw) for p, yj in zip(self.parts, self._columns(y))])
        return torch.from_numpy(G)

    def gradient_sum(self, X, y) -> torch.Tensor:
        """``per_sample_gradients(X, y).sum(0)`` in ``O(n d)`` memory-light closed form.

        Parameters
        ----------
        X : ndarray of shape (k, n_features)
            Samples.
        y : ndarray of shape (k,) or (k, n_outputs)
            Their labels.

        Returns
        -------
        Tensor of shape (n_params,)
        """
        sw = self.sample_weights(X, y)
        return torch.from_numpy(np.concatenate(
            [p.grad_sum(X, yj, sw) for p, yj in zip(self.parts, self._columns(y))]))

    def curvature_rows(self, X, y, curvature: str) -> torch.Tensor:
        cols = self._columns(y)
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}")
        sw = self.sample_weights(X, y)
        if curvature == "empirical_fisher":  # sqrt(w_i) g_i: a weight multiplies the term
            G = np.hstack([p.grads(X, yj, power=0.5, sw=sw) for p, yj in zip(self.parts, cols)])
            return torch.from_numpy(G)[:, None, :]
        rows = [p.ggn_rows(X, yj, sw) for p, yj in zip(self.parts, cols)]
        q = max(r.shape[1] for r in rows)  # outputs are independent blocks: pad factor counts
        rows = [np.pad(r, ((0, 0), (0, q - r.shape[1]), (0, 0))) for r in rows]
        return torch.from_numpy(np.concatenate(rows, axis=2))

    def factor_rows_per_sample(self, curvature: str) -> int:
        if curvature == "empirical_fisher":
            return 1
        return max(p.n_classes if p.softmax else 1 for p in self.parts)

    def ggn_sample_rows(self, X, u, y=None) -> torch.Tensor:
        """See :meth:`BaseBackend.ggn_sample_rows`; a model trained with class weights also
        needs the labels ``y`` (the rows are scaled by ``sqrt`` of the sample's weight)."""
        cols = self._columns(y) if y is not None else [None] * len(self.parts)
        sw = self.sample_weights(X, y)
        rows = [p.ggn_sample_rows(X, u, yj, sw) for p, yj in zip(self.parts, cols)]
        return torch.from_numpy(np.concatenate(rows, axis=2))

    def kronecker_factor_rows(self, X, y, curvature: str, u=None) -> list[tuple]:
        """Per output (:attr:`kronecker_blocks`), ``(Xa, R)`` such that the curvature's factor
        rows in that output's parameters are ``R[i, j] (x) Xa[i]`` (``Xa``: the rows with the
        intercept column, scipy sparse when ``X`` is; ``R`` of shape ``(n, q, K)``).  With
        uniforms ``u`` a softmax GGN gets one row per sample at a drawn label, as
        :meth:`ggn_sample_rows`.  Used by the structured low-rank inverse on sparse rows
        (:mod:`sklearn_ssse._curvature._sparse_lowrank`), which never forms the ``n x d`` rows.

        Parameters
        ----------
        X : ndarray or scipy sparse matrix of shape (n, n_features)
            Samples.
        y : ndarray of shape (n,) or (n, n_outputs)
            Their labels.
        curvature : {"empirical_fisher", "ggn"}
            Which curvature.
        u : ndarray of shape (n,), default=None
            Uniforms of the drawn labels (softmax GGN only).

        Returns
        -------
        list of (matrix of shape (n, p), ndarray of shape (n, q, K))
        """
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}")
        sw = self.sample_weights(X, y)
        return [p.kron_factor_rows(X, yj, curvature, u, sw)
                for p, yj in zip(self.parts, self._columns(y))]

    def curvature_diagonal(self, X, y, curvature: str) -> torch.Tensor:
        """Exact diagonal of the curvature's data term over ``(X, y)`` (closed form, ``O(n d)``).

        Parameters
        ----------
        X : ndarray of shape (n, n_features)
            Samples.
        y : ndarray of shape (n,) or (n, n_outputs)
            Their labels.
        curvature : {"empirical_fisher", "ggn"}
            Which curvature.

        Returns
        -------
        Tensor of shape (n_params,)
        """
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}")
        sw = self.sample_weights(X, y)
        return torch.from_numpy(np.concatenate(
            [p.diagonal(X, yj, curvature, sw) for p, yj in zip(self.parts, self._columns(y))]))

    def curvature_gram(self, X, y, curvature: str, slices) -> list[torch.Tensor] | None:
        """Closed-form Gram matrices of the curvature's data term, one per slice.

        ``curvature_gram(X, y, c, slices)[j]`` equals ``R[:, s_j]^T R[:, s_j]`` for the factor
        rows ``R = curvature_rows(X, y, c).reshape(-1, n_params)`` of the same samples, computed
        from the Kronecker structure (see the module docstring) without forming the rows.

        Parameters
        ----------
        X : ndarray of shape (n, n_features)
            Samples.
        y : ndarray of shape (n,) or (n, n_outputs)
            Their labels.
        curvature : {"empirical_fisher", "ggn"}
            Which curvature.
        slices : list of slice
            Parameter ranges, each inside one output's parameters.

        Returns
        -------
        list of Tensor or None
            ``None`` when a slice spans two outputs (use the rows instead).
        """
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}")
        located = []
        for s in slices:
            j = int(np.searchsorted(self.offsets, s.start, side="right")) - 1
            if s.stop > self.offsets[j + 1]:
                return None
            located.append((j, s.start - int(self.offsets[j]), s.stop - int(self.offsets[j])))
        cols = self._columns(y)
        sw = self.sample_weights(X, y)
        weights = {}
        for j in {j for j, _, _ in located}:
            Xa, A = self.parts[j].output_weights(X, cols[j], curvature, sw)
            if sp.issparse(Xa):
                weights[j] = Xa, A
            else:
                weights[j] = torch.from_numpy(np.ascontiguousarray(Xa)), torch.from_numpy(A)
        return [(self.parts[j].gram_sparse if sp.issparse(weights[j][0]) else self.parts[j].gram)(
            *weights[j], lo, hi) for j, lo, hi in located]

    @property
    def kronecker_blocks(self) -> list[tuple[slice, int, int]]:
        """The Kronecker structure of the curvature (``inverse="ekfac"``): one
        ``(parameter slice, K, p)`` per output, whose parameters form a ``K x p`` matrix of class
        rows ``[w_c, b_c]`` (``K = 1`` for a binary model, one row per class otherwise)."""
        return [(slice(int(o), int(o) + part.n_params), part.n_rows, part.p1)
                for part, o in zip(self.parts, self.offsets)]

    def kronecker_terms(self, X, y, curvature: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per output, ``(Xa, A)`` with ``sum_i A[i] (x) Xa[i] Xa[i]^T`` the curvature's data term
        over ``(X, y)`` in that output's parameters (see :attr:`kronecker_blocks`).

        Parameters
        ----------
        X : ndarray of shape (n, n_features)
            Samples.
        y : ndarray of shape (n,) or (n, n_outputs)
            Their labels.
        curvature : {"empirical_fisher", "ggn"}
            Which curvature.

        Returns
        -------
        list of (Tensor of shape (n, p), Tensor of shape (n, K, K))
        """
        if curvature not in ("empirical_fisher", "ggn"):
            raise ValueError(f"unknown curvature {curvature!r}")
        if sp.issparse(X):
            raise ValueError("inverse='ekfac' does not take sparse X (its input factor is a dense "
                             "p x p matrix with an O(p^3) eigendecomposition): use "
                             "inverse='dense', 'block' or 'woodbury' (or 'auto')")
        out = []
        sw = self.sample_weights(X, y)
        for part, yj in zip(self.parts, self._columns(y)):
            Xa, A = part.output_weights(X, yj, curvature, sw)
            out.append((torch.from_numpy(np.ascontiguousarray(Xa)), torch.from_numpy(A)))
        return out

    def default_damping(self, n_samples: int) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([p.damping(n_samples) for p in self.parts]))
