"""Streaming curvature (UnlearnableClassifier.from_fitted) and the mini-batch / sub-sampled
curvature options for every inverse choice."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier, _streaming
from sklearn_ssse._backends import LinearBackend
from sklearn_ssse._curvature import BlockDiagonal, _lowrank

LR = LogisticRegression(max_iter=500)
INVERSES = ["dense", "block", "woodbury", "sherman_morrison"]
#: options x inverse: plain, sub-sampled (m < n), mini-batches (b > 1) and both
OPTIONS = {
    "all": {},
    "m": {"fisher_max_samples": 70},
    "b": {"fisher_batch_size": 4},
    "m+b": {"fisher_max_samples": 70, "fisher_batch_size": 3},
}


@pytest.fixture(autouse=True)
def _rows_only_low_rank(monkeypatch):
    """This module checks the operators against oracles built from the factor rows alone: the
    low-rank kind's exact-diagonal base (tested in test_fidelity.py) is switched off here."""
    monkeypatch.setattr(_lowrank, "EXACT_DIAGONAL", False)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def _irregular_chunks(X, y, sizes=(1, 37, 5, 200, 64)):
    """A one-shot generator of chunks of varying sizes (cycling through ``sizes``)."""
    a, i = 0, 0
    while a < len(X):
        b = a + sizes[i % len(sizes)]
        yield X[a:b], y[a:b]
        a, i = b, i + 1


@pytest.fixture(scope="module")
def data(digits):
    X, y, _, _ = digits
    X, y = X[:240], y[:240]
    return X, y, clone(LR).fit(X, y)


def _inverse(op):
    return op.inverse().numpy()


# ------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("inverse", INVERSES)
def test_chunked_stream_equals_in_memory(data, inverse, option):
    """An iterable of irregular chunks gives the operator of the same rows in memory."""
    X, y, lr = data
    kw = dict(inverse=inverse, curvature="ggn", random_state=0, chunk_size=50, **OPTIONS[option])
    in_memory = UnlearnableClassifier.from_fitted(lr, X, y, **kw)
    # in memory, mini-batches follow a random permutation (the first draw of random_state, the
    # sub-sample keys come next); a stream keeps its own order, so it gets the permuted rows
    rng, order = np.random.RandomState(0), np.arange(len(X))
    if kw.get("fisher_batch_size", 1) > 1:
        order = rng.permutation(len(X))
    streamed = UnlearnableClassifier.from_fitted(lr, _irregular_chunks(X[order], y[order]),
                                                 **dict(kw, random_state=rng))
    assert streamed.n_samples_ == in_memory.n_samples_ == len(X)
    assert streamed.n_curvature_samples_ == in_memory.n_curvature_samples_
    assert _rel(_inverse(streamed.curvature_), _inverse(in_memory.curvature_)) < 1e-10


@pytest.mark.parametrize("inverse", INVERSES)
def test_from_fitted_equals_fit(data, inverse):
    X, y, _ = data
    kw = dict(inverse=inverse, random_state=3, fisher_max_samples=100)
    fitted = UnlearnableClassifier(LR, **kw).fit(X, y)
    wrapped = UnlearnableClassifier.from_fitted(fitted.estimator_, X, y, **kw)
    np.testing.assert_array_equal(wrapped.get_parameters(), fitted.get_parameters())
    assert _rel(_inverse(wrapped.curvature_), _inverse(fitted.curvature_)) < 1e-12
    assert wrapped.inverse_ == fitted.inverse_ and wrapped.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(wrapped.classes_, fitted.classes_)
    # and it forgets the same way
    np.testing.assert_allclose(wrapped.forget(X[:4], y[:4]).get_parameters(),
                               fitted.forget(X[:4], y[:4]).get_parameters(), rtol=1e-10)


def test_dask_arrays_are_read_block_by_block(data):
    da = pytest.importorskip("dask.array")
    X, y, lr = data
    Xd, yd = da.from_array(X, chunks=(37, 16)), da.from_array(y, chunks=53)
    for inverse in ("block", "woodbury"):
        kw = dict(inverse=inverse, curvature="ggn", random_state=0, fisher_max_samples=90)
        ref = UnlearnableClassifier.from_fitted(lr, X, y, **kw)
        got = UnlearnableClassifier.from_fitted(lr, Xd, yd, **kw)
        assert got.n_samples_ == len(X) and got.n_features_in_ == X.shape[1]
        assert _rel(_inverse(got.curvature_), _inverse(ref.curvature_)) < 1e-10
    # numpy labels with dask features work too
    got = UnlearnableClassifier.from_fitted(lr, Xd, y, inverse="dense")
    ref = UnlearnableClassifier.from_fitted(lr, X, y, inverse="dense")
    assert _rel(_inverse(got.curvature_), _inverse(ref.curvature_)) < 1e-10


def test_multi_output_stream(digits):
    X, y, _, _ = digits
    Y = np.c_[y % 3, y > 4]
    mo = MultiOutputClassifier(LR).fit(X, Y)
    ref = UnlearnableClassifier.from_fitted(mo, X, Y, curvature="ggn", inverse="dense")
    got = UnlearnableClassifier.from_fitted(mo, _irregular_chunks(X, Y), curvature="ggn",
                                            inverse="dense")
    assert isinstance(got.curvature_, BlockDiagonal)
    for a, b in zip(got.curvature_.ops, ref.curvature_.ops):
        assert _rel(a.matrix(), b.matrix()) < 1e-12
    assert len(got.classes_) == 2


# ------------------------------------------------------------------------------ bounded memory
def test_stream_larger_than_the_memory_budget_is_never_concatenated():
    """200,000 x 20 rows (32 MB) generated chunk by chunk: the curvature is accumulated with a
    few MB of numpy memory, and every chunk is read exactly once."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(20, 3))

    def make(c, seed):
        r = np.random.default_rng(seed)
        Xc = r.normal(size=(c, 20))
        return Xc, np.argmax(Xc @ W + r.gumbel(size=(c, 3)), axis=1)

    lr = clone(LR).fit(*make(2000, 1))
    reads = []

    def stream(n_chunks=100, c=2000):
        for i in range(n_chunks):
            reads.append(i)
            yield make(c, 100 + i)

    total_bytes = 100 * 2000 * 20 * 8
    for inverse in ("dense", "woodbury"):
        reads.clear()
        tracemalloc.start()
        clf = UnlearnableClassifier.from_fitted(lr, stream(), inverse=inverse, curvature="ggn",
                                                chunk_size=1000, fisher_max_samples=(
                                                    500 if inverse == "woodbury" else None))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert reads == list(range(100))
        assert clf.n_samples_ == 200_000
        assert peak < total_bytes / 5, (inverse, peak)
    # and the streamed dense curvature is the in-memory one
    X = np.concatenate([make(2000, 100 + i)[0] for i in range(100)])
    y = np.concatenate([make(2000, 100 + i)[1] for i in range(100)])
    dense = UnlearnableClassifier.from_fitted(lr, X, y, inverse="dense", curvature="ggn")
    streamed = UnlearnableClassifier.from_fitted(lr, stream(), inverse="dense", curvature="ggn")
    assert _rel(streamed.curvature_.matrix(), dense.curvature_.matrix()) < 1e-12


# ------------------------------------------------------------------------------ options spec
def _spec_rows(lr, X, y, b, m, rs, curvature):
    """The documented construction, written out: in-memory order (a permutation when b > 1),
    one uniform key per sample in that order, the m smallest kept in order, groups of b
    consecutive samples -> rows sum / sqrt(size), weight n / m."""
    n = len(X)
    rng = np.random.RandomState(rs)
    order = rng.permutation(n) if b > 1 else np.arange(n)
    if m is not None and m < n:
        keys = rng.random_sample(n)
        order = order[np.sort(np.argsort(keys)[:m])]
    R = LinearBackend(lr).curvature_rows(X[order], y[order], curvature).numpy()
    groups = [R[a:a + b].sum(0) / math.sqrt(len(R[a:a + b])) for a in range(0, len(R), b)]
    rows = np.concatenate(groups).reshape(-1, R.shape[-1])
    return rows, n / len(order)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("inverse", INVERSES)
def test_batch_size_and_max_samples_for_every_inverse(data, inverse, option):
    """fisher_batch_size and fisher_max_samples work with every inverse and build exactly
    F = (w / n) sum_rows r r^T + diag(lambda) (block-diagonal for inverse="block")."""
    X, y, lr = data
    opts = OPTIONS[option]
    b, m = opts.get("fisher_batch_size", 1), opts.get("fisher_max_samples")
    clf = UnlearnableClassifier.from_fitted(lr, X, y, inverse=inverse, random_state=5,
                                            curvature="empirical_fisher", **opts)
    rows, w = _spec_rows(lr, X, y, b, m, 5, "empirical_fisher")
    n = len(X)
    M = w * rows.T @ rows + np.diag(n * clf.damping_)
    op = clf.curvature_
    if isinstance(op, BlockDiagonal):
        mask = np.zeros_like(M, dtype=bool)
        for s in op.slices:
            mask[s, s] = True
        M = np.where(mask, M, 0.0)
    assert clf.n_curvature_samples_ == (m if m else n)
    assert _rel(_inverse(op), n * np.linalg.inv(M)) < 1e-8
    # the options change the operator (sanity: they are not ignored)
    if option != "all":
        plain = UnlearnableClassifier.from_fitted(lr, X, y, inverse=inverse)
        assert _rel(clf.forget_direction(X[:5], y[:5]),
                    plain.forget_direction(X[:5], y[:5])) > 1e-3


def test_sub_sample_is_uniform():
    """Each row is in the bottom-m sample with probability m / n."""
    X = np.arange(50, dtype=float)[:, None]
    counts = np.zeros(50)
    for seed in range(400):
        s = _streaming._BottomSample(10, np.random.RandomState(seed))
        for a in range(0, 50, 7):
            s.add(X[a:a + 7], X[a:a + 7, 0])
        Xs, ys = s.result()
        assert np.all(np.diff(ys) > 0)  # stream order
        counts[ys.astype(int)] += 1
    assert abs(counts.mean() / 400 - 0.2) < 1e-12
    assert np.abs(counts / 400 - 0.2).max() < 0.1


def test_mini_batches_carry_across_chunks():
    R = torch.arange(22, dtype=torch.float64).reshape(11, 1, 2)
    whole = _streaming._MiniBatcher(4)
    out = [whole.push(R), whole.flush()]
    parts = _streaming._MiniBatcher(4)
    pieces = [parts.push(R[a:a + 3]) for a in range(0, 11, 3)] + [parts.flush()]
    cat = lambda xs: torch.cat([x for x in xs if x is not None])  # noqa: E731
    assert torch.equal(cat(out), cat(pieces))
    assert cat(out).shape[0] == 3  # 4 + 4 + 3
    torch.testing.assert_close(cat(out)[2], R[8:].sum(0) / math.sqrt(3))


# ------------------------------------------------------------------------------ API
def test_from_fitted_copy_semantics(data):
    X, y, lr = data
    coef = lr.coef_.copy()
    clf = UnlearnableClassifier.from_fitted(lr, X, y, epsilon=2.0).forget(X[:3], y[:3])
    np.testing.assert_array_equal(lr.coef_, coef)  # copy=True: the original is untouched
    assert clf.estimator is lr and clf.estimator_ is not lr
    inplace_lr = clone(lr).fit(X, y)
    clf = UnlearnableClassifier.from_fitted(inplace_lr, X, y, copy=False, epsilon=2.0)
    clf.forget(X[:3], y[:3])
    np.testing.assert_array_equal(inplace_lr.coef_, clf.estimator_.coef_)
    assert not np.array_equal(inplace_lr.coef_, coef)


def test_from_fitted_options_and_tracking(data):
    X, y, lr = data
    clf = UnlearnableClassifier.from_fitted(lr, _irregular_chunks(X, y), track_samples=True,
                                            update_curvature=True, curvature="ggn")
    assert clf.sample_digest_counts_.sum() == len(X)
    with pytest.raises(ValueError, match="not among the rows"):
        clf.forget(X[:2] + 1.0, y[:2])
    clf.forget(X[:2], y[:2])
    assert clf.n_samples_ == clf.curvature_.n == len(X) - 2
    kept = UnlearnableClassifier.from_fitted(lr, X, y, keep_training_data=True)
    assert kept.X_fit_.shape == X.shape and kept.fit_mask_.all()


def test_sgd_stream(data):
    X, y, _ = data
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    ref = UnlearnableClassifier.from_fitted(sgd, X, y, inverse="dense")
    got = UnlearnableClassifier.from_fitted(sgd, _irregular_chunks(X, y), inverse="dense")
    assert _rel(_inverse(got.curvature_), _inverse(ref.curvature_)) < 1e-10


@pytest.mark.parametrize(("args", "kw", "exc", "match"), [
    (lambda X, y: (iter([(X[:5], y[:5] + 100)]),), {}, ValueError, "labels the fitted model"),
    (lambda X, y: (iter([(X[:5, :10], y[:5])]),), {}, ValueError, "features, expected"),
    (lambda X, y: (iter([]),), {}, ValueError, "empty"),
    (lambda X, y: (iter([(X, y)]),), {"keep_training_data": True}, ValueError, "in memory"),
    (lambda X, y: (X,), {}, TypeError, "y is None"),
    (lambda X, y: ([X[:3]],), {}, TypeError, r"not an \(X, y\) pair"),
    (lambda X, y: (X, y[:-1]), {}, ValueError, "inconsistent numbers of samples"),
    (lambda X, y: (X, y), {"update_curvature": True, "fisher_batch_size": 2}, ValueError,
     "fisher_batch_size=1"),
])
def test_bad_streams(data, args, kw, exc, match):
    X, y, lr = data
    with pytest.raises(exc, match=match):
        UnlearnableClassifier.from_fitted(lr, *args(X, y), **kw)


def test_unfitted_estimator_is_refused(data):
    from sklearn.exceptions import NotFittedError

    X, y, _ = data
    with pytest.raises(NotFittedError):
        UnlearnableClassifier.from_fitted(clone(LR), X, y)


class _Net(torch.nn.Module):
    """Softmax regression as a torch module (module level: skorch pickles it to copy)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.lin(x)


def test_skorch_net_from_fitted(digits):
    """The torch backend: a fitted net wrapped from memory (its validation split left out, as
    in fit) and from a stream of its training rows give the fit's curvature."""
    skorch = pytest.importorskip("skorch")
    from skorch.dataset import ValidSplit

    X, y, _, _ = digits
    X, y = X[:200].astype(np.float32), y[:200].astype(np.int64)
    torch.manual_seed(0)
    kw = dict(inverse="dense", curvature="ggn", dtype="float64")
    net = skorch.NeuralNetClassifier(_Net, criterion=torch.nn.CrossEntropyLoss, max_epochs=2,
                                     lr=0.1, train_split=ValidSplit(4), verbose=0)
    fitted = UnlearnableClassifier(net, **kw).fit(X, y)
    wrapped = UnlearnableClassifier.from_fitted(fitted.estimator_, X, y, **kw)
    assert wrapped.n_samples_ == fitted.n_samples_ == 150
    assert _rel(wrapped.curvature_.matrix(), fitted.curvature_.matrix()) < 1e-10
    idx = fitted.backend_.fit_indices(X, y)
    streamed = UnlearnableClassifier.from_fitted(
        fitted.estimator_, _irregular_chunks(X[idx], y[idx]), **kw)
    assert _rel(streamed.curvature_.matrix(), fitted.curvature_.matrix()) < 1e-10
    streamed.forget(X[idx[:3]], y[idx[:3]])
    assert streamed.n_samples_ == 147
