"""``sample_weight`` at fit for the linear models.

scikit-learn minimises ``C * sum_i w_i l_i + ||W||^2 / 2``: a row's weight multiplies its
gradient and curvature terms like repeating the row.  The weights are kept by row identity (a
salted digest of the row as the model sees it, with its label), so ``forget(X, y)`` needs only
the rows; the full step's ``n / (n - k)`` becomes ``W / (W - W_S)``.
"""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import expit, softmax
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import SealError, UnlearnableClassifier
from sklearn_ssse.metrics._scorers import _reference, _training_index

EXACT = {"solver": "newton-cholesky", "tol": 1e-14, "max_iter": 1000}
TIGHT = {"tol": 1e-10, "max_iter": 10000}  # lbfgs (also for CSR rows)


def _np(t):
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def _data(n_classes=2, n=300, sparse=False, seed=0):
    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, flip_y=0.05, random_state=seed)
    X = StandardScaler().fit_transform(X)
    if sparse:
        X[np.abs(X) < 0.3] = 0.0  # (sparse, and no two rows alike)
        X = sp.csr_matrix(X)
    w = np.random.default_rng(seed).uniform(0.2, 3.0, n)
    return X, y, w


def _layout(theta, n_classes, p1):
    """``theta`` as class rows ``[w_c, b_c]``; multinomial: the free common intercept shift
    projected out (the softmax does not see it)."""
    W = np.asarray(theta, dtype=float).reshape(-1, p1).copy()
    if n_classes > 2:
        W[:, -1] -= W[:, -1].mean()
    return W.ravel()


def _theta_of(est):
    return np.hstack([est.coef_, np.reshape(est.intercept_, (-1, 1))]).ravel()


def _newton_terms(theta, X, y, w, n_classes):
    """``(H, g)``: the data term ``sum_i w_i H_i`` of the Hessian and ``sum_i w_i grad l_i`` at
    ``theta`` in closed form (numpy, independent of the package)."""
    Xa = np.c_[X.toarray() if sp.issparse(X) else X, np.ones(X.shape[0])]
    p1 = Xa.shape[1]
    if n_classes == 2:
        p = expit(Xa @ theta)
        H = Xa.T @ (Xa * (w * p * (1 - p))[:, None])
        g = ((p - y) * w) @ Xa
        return H, g
    W = theta.reshape(n_classes, p1)
    P = softmax(Xa @ W.T, axis=1)
    A = np.einsum("i,ic,cd->icd", w, P, np.eye(n_classes)) - np.einsum("i,ic,id->icd", w, P, P)
    H = np.einsum("icd,ij,ik->cjdk", A, Xa, Xa).reshape(n_classes * p1, n_classes * p1)
    E = np.eye(n_classes)[y]
    g = (((P - E) * w[:, None]).T @ Xa).ravel()
    return H, g


# ------------------------------------------------------------------ the step
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("n_classes", [2, 3], ids=["binary", "multinomial"])
def test_leave_out_step_is_the_exact_weighted_newton_step(n_classes, sparse):
    """The default GGN leave-out step with epsilon=1 is theta + H_R^{-1} sum_S w_i g_i with
    H_R the weighted Hessian of the remaining rows (numpy), and it lands close to the model
    retrained with the kept rows' weights, much closer than a curvature without them."""
    X, y, w = _data(n_classes, sparse=sparse)
    S = np.arange(0, 60, 3)
    keep = np.setdiff1d(np.arange(len(y)), S)
    clf = UnlearnableClassifier(LogisticRegression(**TIGHT)).fit(X, y, sample_weight=w)
    theta0 = clf.get_parameters()
    np.testing.assert_allclose(theta0, _theta_of(LogisticRegression(**TIGHT).fit(
        X, y, sample_weight=w)))  # the weights reached the model's fit
    clf.forget(X[S], y[S])
    theta = clf.get_parameters()
    n = X.shape[0]
    damping = n * _np(clf.damping_)  # sum form: 1 / C on the weights (+ the intercept floor)
    H, _ = _newton_terms(theta0, X[keep], y[keep], w[keep], n_classes)
    _, g = _newton_terms(theta0, X[S], y[S], w[S], n_classes)
    exact = theta0 + np.linalg.solve(H + np.diag(damping), g)
    p1 = X.shape[1] + 1
    assert _rel(_layout(theta, n_classes, p1), _layout(exact, n_classes, p1)) < 1e-8
    # fidelity against the weighted retrained model
    retrained = _theta_of(LogisticRegression(**TIGHT).fit(X[keep], y[keep],
                                                          sample_weight=w[keep]))

    def dist(t):
        return (np.linalg.norm(_layout(t, n_classes, p1) - _layout(retrained, n_classes, p1))
                / np.linalg.norm(_layout(theta0, n_classes, p1)
                                 - _layout(retrained, n_classes, p1)))

    H1, _ = _newton_terms(theta0, X[keep], y[keep], np.ones(len(keep)), n_classes)
    unweighted_curvature = theta0 + np.linalg.solve(H1 + np.diag(damping), g)
    d, d_unweighted = dist(theta), dist(unweighted_curvature)
    print(f"normalized distance to the weighted retrained model: {d:.4f} (curvature without "
          f"the weights: {d_unweighted:.4f})")
    # measured: binary 0.045 / 0.039 (dense / CSR), multinomial 0.12 / 0.11; with a curvature
    # without the weights 0.53-0.56
    assert d < 0.15, d
    assert d < 0.3 * d_unweighted, (d, d_unweighted)


def test_integer_weights_equal_duplicated_rows():
    """w_i = 2 is row i twice: the same sum-form curvature, the same optimum, and forgetting a
    row of weight 2 is forgetting both copies (leave-out and full step)."""
    X, y, _ = _data(3, n=200, seed=1)
    w = np.ones(len(y))
    twice = np.arange(0, 200, 4)
    w[twice] = 2.0
    X_dup = np.vstack([X, X[twice]])
    y_dup = np.r_[y, y[twice]]
    for step in ("leave_out", "full"):
        a = UnlearnableClassifier(LogisticRegression(**EXACT), step=step).fit(
            X, y, sample_weight=w)
        b = UnlearnableClassifier(LogisticRegression(**EXACT), step=step).fit(X_dup, y_dup)
        assert a.sample_weight_total_ == len(y_dup) == b.n_samples_
        np.testing.assert_allclose(a.get_parameters(), b.get_parameters(), rtol=1e-9,
                                   atol=1e-9)
        # F = M / n with n the rows (200 vs 250): the sum form M is what must agree
        assert _rel(_np(a.curvature_.matrix()), _np(b.curvature_.matrix())) < 1e-8
        # F^{-1} = n M^{-1}; compared without the free softmax-intercept shift u, an exact
        # eigenvector of M with the tiny intercept damping as eigenvalue (1 / it dominates)
        p1 = X.shape[1] + 1
        u = np.zeros(3 * p1)
        u[p1 - 1::p1] = 1 / np.sqrt(3)
        P = np.eye(3 * p1) - np.outer(u, u)
        Fa = P @ _np(a.curvature_.inverse()) @ P * len(y_dup) / len(y)
        assert _rel(Fa, P @ _np(b.curvature_.inverse()) @ P) < 1e-8
        # forget a weight-2 row and a weight-1 row == both copies of the first, and the second
        i, j = twice[3], 5
        a.forget(X[[i, j]], y[[i, j]])
        b.forget(X[[i, i, j]], y[[i, i, j]])
        assert a.sample_weight_total_ == b.n_samples_ == len(y_dup) - 3
        assert _rel(a.get_parameters(), b.get_parameters()) < 1e-8, step
        # and a second forget (the downdated curvature and the decremented totals)
        a.forget(X[[8, 9]], y[[8, 9]])
        b.forget(X[[8, 8, 9]], y[[8, 8, 9]])
        assert _rel(a.get_parameters(), b.get_parameters()) < 1e-8, step


@pytest.mark.parametrize("update_curvature", [True, False])
def test_full_step_uses_the_weight_totals(update_curvature):
    """step="full": delta = W_F / (W - W_S) * M^{-1} sum_S w_i g_i with W the remaining weight
    (decremented by each forget) and W_F that of the curvature's rows (the fit's when the
    curvature is not downdated), not the row counts n / (n - k)."""
    X, y, w = _data(2, seed=2)
    S1, S2 = np.arange(0, 30), np.arange(30, 50)
    w[S1] *= 3.0  # the counts and the weights disagree
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), step="full",
                                update_curvature=update_curvature).fit(X, y, sample_weight=w)
    W = w.sum()
    assert clf.sample_weight_total_ == pytest.approx(W)
    theta0 = clf.get_parameters()
    n = len(y)
    damping = np.diag(n * _np(clf.damping_))
    H, _ = _newton_terms(theta0, X, y, w, 2)
    _, g = _newton_terms(theta0, X[S1], y[S1], w[S1], 2)
    expected = theta0 + W / (W - w[S1].sum()) * np.linalg.solve(H + damping, g)
    clf.forget(X[S1], y[S1])
    theta1 = clf.get_parameters()
    assert _rel(theta1 - theta0, expected - theta0) < 1e-8
    counts = theta0 + n / (n - len(S1)) * np.linalg.solve(H + damping, g)
    assert _rel(theta1 - theta0, counts - theta0) > 1e-3  # the count formula is another step
    W1 = W - w[S1].sum()
    assert clf.sample_weight_total_ == pytest.approx(W1)
    assert clf.n_samples_ == n - len(S1)
    # the second forget: the curvature of the rows left (downdated at theta_fit_) or of all
    rest = np.setdiff1d(np.arange(n), S1) if update_curvature else np.arange(n)
    H, _ = _newton_terms(theta0, X[rest], y[rest], w[rest], 2)
    _, g = _newton_terms(theta1, X[S2], y[S2], w[S2], 2)
    ref = W1 if update_curvature else W
    expected = theta1 + ref / (W1 - w[S2].sum()) * np.linalg.solve(H + damping, g)
    clf.forget(X[S2], y[S2])
    assert _rel(clf.get_parameters() - theta1, expected - theta1) < 1e-8
    assert clf.sample_weight_total_ == pytest.approx(W1 - w[S2].sum())


# ------------------------------------------------------------------ routing and checks
def test_pipeline_routes_the_weights_to_its_last_step():
    X, y, w = _data(3, seed=3)
    X = X * 5.0 + 2.0
    pipe = make_pipeline(StandardScaler(), LogisticRegression(**EXACT))
    clf = UnlearnableClassifier(pipe).fit(X, y, sample_weight=w)
    ref = make_pipeline(StandardScaler(), LogisticRegression(**EXACT)).fit(
        X, y, logisticregression__sample_weight=w)
    np.testing.assert_allclose(clf.estimator_.coef_, ref[-1].coef_, rtol=1e-10, atol=1e-12)
    unweighted = make_pipeline(StandardScaler(), LogisticRegression(**EXACT)).fit(X, y)
    assert np.abs(clf.estimator_.coef_ - unweighted[-1].coef_).max() > 1e-3
    # forget takes the raw rows; their weights are found through the frozen transformers
    before = clf.sample_weight_total_
    clf.forget(X[:4], y[:4])
    assert clf.sample_weight_total_ == pytest.approx(before - w[:4].sum())


def test_a_row_absent_from_the_table_is_refused_and_nothing_changes():
    X, y, w = _data(2, seed=4)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), on_untracked="warn").fit(
        X, y, sample_weight=w)
    theta, total, seal = clf.get_parameters(), clf.sample_weight_total_, clf.state_seal_
    for Xf, yf in [(X[:3] + 0.5, y[:3]),  # other features
                   (X[:3], 1 - y[:3])]:  # another label
        with pytest.raises(ValueError, match="its weight is unknown"):
            clf.forget(Xf, yf)
        with pytest.raises(ValueError, match="its weight is unknown"):
            clf.forget_direction(Xf, yf)
    np.testing.assert_array_equal(clf.get_parameters(), theta)
    assert clf.sample_weight_total_ == total and clf.n_samples_ == len(y)
    assert clf.state_seal_ == seal and clf.erasure_log_ == []
    clf.forget(X[:3], y[:3])  # the training rows still work


def test_identical_rows_need_the_same_weight():
    X, y, w = _data(2, n=100, seed=5)
    X[7], y[7] = X[3], y[3]
    w[7] = w[3] + 1.0
    with pytest.raises(ValueError, match="different sample weights"):
        UnlearnableClassifier(LogisticRegression()).fit(X, y, sample_weight=w)
    w[7] = w[3]  # the same weight: each copy counts it, each forget removes one copy
    clf = UnlearnableClassifier(LogisticRegression()).fit(X, y, sample_weight=w)
    total = clf.sample_weight_total_
    clf.forget(X[[7]], y[[7]])
    assert clf.sample_weight_total_ == pytest.approx(total - w[3])
    y2 = y.copy()
    y2[7] = 1 - y[3]  # the same features with another label are another row
    UnlearnableClassifier(LogisticRegression()).fit(X, y2, sample_weight=np.r_[w[:7], 9.0,
                                                                                 w[8:]])


@pytest.mark.parametrize("bad, match", [
    (-np.ones(60), ">= 0"),
    (np.r_[np.nan, np.ones(59)], "finite"),
    (np.ones(59), "shape"),
    (np.ones((60, 1)), "shape"),
    (np.zeros(60), "zero for every row"),
    (np.array(["a"] * 60), "numbers"),
])
def test_bad_weights_are_refused(bad, match):
    X, y, _ = _data(2, n=60)
    with pytest.raises(ValueError, match=match):
        UnlearnableClassifier(LogisticRegression()).fit(X, y, sample_weight=bad)


@pytest.mark.parametrize("params, match", [
    ({"fisher_batch_size": 4, "step": "full"}, "fisher_batch_size=1"),
    ({"preprocessing": "update"}, "preprocessing='update'"),
])
def test_unsupported_options_are_refused(params, match):
    X, y, w = _data(2, n=60)
    with pytest.raises(ValueError, match=match):
        UnlearnableClassifier(LogisticRegression(), **params).fit(X, y, sample_weight=w)


def test_skorch_net_is_refused():
    pytest.importorskip("skorch")
    from _nets import digits_net, digits_split

    X, _, y, _ = digits_split()
    net = digits_net(max_epochs=1)
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        UnlearnableClassifier(net).fit(X[:50], y[:50], sample_weight=np.ones(50))


def test_unweighted_models_are_unchanged():
    """No weights: no table, no lookup; the step is that of the counts."""
    X, y, _ = _data(2, n=120)
    clf = UnlearnableClassifier(LogisticRegression()).fit(X, y)
    assert "row_weights" not in clf._backend_kwargs
    assert clf.backend_.row_weights is None and clf.backend_.sample_weights(X, y) is None
    assert not hasattr(clf, "sample_weight_total_")
    ones = UnlearnableClassifier(LogisticRegression()).fit(X, y, sample_weight=np.ones(120))
    np.testing.assert_allclose(ones.forget(X[:5], y[:5]).get_parameters(),
                               clf.forget(X[:5], y[:5]).get_parameters(), rtol=1e-12)


# ------------------------------------------------------------------ state
def test_save_load_keeps_the_weights_and_forgets_identically(tmp_path):
    X, y, w = _data(3, seed=6)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT)).fit(X, y, sample_weight=w)
    clf.forget(X[:3], y[:3])
    copies = [pickle.loads(pickle.dumps(clf))]
    try:
        import skops.io as sio
    except ImportError:
        sio = None
    if sio is not None:
        sio.dump(clf, tmp_path / "m.skops")
        copies.append(sio.load(tmp_path / "m.skops",
                               trusted=["sklearn_ssse._unlearnable.UnlearnableClassifier"]))
    for b in copies:
        assert b.sample_weight_total_ == clf.sample_weight_total_
        np.testing.assert_array_equal(b.backend_.sample_weights(X, y), w)
    clf.forget(X[5:9], y[5:9])
    for b in copies:
        b.forget(X[5:9], y[5:9])
        np.testing.assert_array_equal(b.get_parameters(), clf.get_parameters())
        with pytest.raises(ValueError, match="its weight is unknown"):
            b.forget(X[:1] + 1.0, y[:1])


@pytest.mark.parametrize("target", ["weights", "digests", "total"])
def test_the_seal_covers_the_weights(target):
    X, y, w = _data(2, n=100)
    clf = UnlearnableClassifier(LogisticRegression()).fit(X, y, sample_weight=w)
    table = clf._backend_kwargs["row_weights"]
    if target == "weights":
        table["weights"][0] *= 2.0
    elif target == "digests":
        table["digests"][[0, 1]] = table["digests"][[1, 0]]
    else:
        clf.sample_weight_total_ += 1.0
    with pytest.raises(SealError):
        clf.forget(X[:2], y[:2])
    with pytest.raises(SealError):
        clf.verify_seal()


def test_from_fitted_takes_the_weights_of_the_fit():
    X, y, w = _data(3, seed=7)
    lr = LogisticRegression(**EXACT).fit(X, y, sample_weight=w)
    a = UnlearnableClassifier.from_fitted(lr, X, y, sample_weight=w)
    b = UnlearnableClassifier(LogisticRegression(**EXACT)).fit(X, y, sample_weight=w)
    assert a.sample_weight_total_ == pytest.approx(b.sample_weight_total_)
    np.testing.assert_allclose(a.forget(X[:6], y[:6]).get_parameters(),
                               b.forget(X[:6], y[:6]).get_parameters(), rtol=1e-9, atol=1e-10)
    chunks = [(X[:150], y[:150]), (X[150:], y[150:])]
    with pytest.raises(ValueError, match="in memory"):
        UnlearnableClassifier.from_fitted(lr, chunks, sample_weight=w)


def test_scorer_reference_and_certificate_use_the_weights():
    """keep_training_data=True keeps the weights (by lookup): the scorers' reference is
    retrained with the kept rows' weights, and certify() measures the weighted objective."""
    X, y, w = _data(2, seed=8)
    clf = UnlearnableClassifier(LogisticRegression(**EXACT), keep_training_data=True).fit(
        X, y, sample_weight=w)
    assert clf.certify().residual_norm < 1e-8  # the weighted gradient vanishes at the fit
    remaining = np.ones(len(y), dtype=bool)
    remaining[:10] = False
    _, digest = _training_index(clf.X_fit_, clf.y_fit_)
    ref = _reference(clf, remaining, digest)
    expected = LogisticRegression(**EXACT).fit(X[10:], y[10:], sample_weight=w[10:])
    np.testing.assert_allclose(ref.coef_, expected.coef_, rtol=1e-10, atol=1e-12)
    clf.forget(X[:10], y[:10])
    cert = clf.certify()
    assert cert.relative < 0.1, cert
    refined = clf.refine(tol=1e-10)
    np.testing.assert_allclose(refined.get_parameters(), _theta_of(expected), rtol=1e-6,
                               atol=1e-8)
