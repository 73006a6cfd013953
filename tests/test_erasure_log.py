"""The erasure record (``erasure_log_``) and the tracked training rows (``track_samples``)."""

import copy
import hashlib
import warnings
from datetime import datetime, timezone

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier, UntrackedSampleWarning
from sklearn_ssse._rows import multiset, multiset_remove, row_digests

KEYS = {"time", "n_removed", "epsilon", "n_remaining", "update_norm", "relative_update_norm",
        "curvature_downdated", "checksum_before", "checksum_after", "loss_before", "loss_after",
        "accuracy_before", "accuracy_after", "label_flip_rate", "predicted_loss_change",
        "n_untracked", "seconds", "step", "seal_before", "event", "frozen_preprocessing",
        "updated_preprocessing", "n_features_removed"}


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="module")
def _fitted(iris):
    X, y = iris
    return UnlearnableClassifier(LogisticRegression(max_iter=1000), curvature="ggn").fit(X, y)


@pytest.fixture
def fitted(_fitted):
    return copy.deepcopy(_fitted)


def _sha256(theta: np.ndarray) -> str:
    """Independent reimplementation of the checksum: dtype, length, raw bytes."""
    h = hashlib.sha256(f"torch.{theta.dtype}:{theta.size}:".encode())
    h.update(np.ascontiguousarray(theta).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ the record
def test_entry_fields_and_values(fitted, iris):
    X, y = iris
    idx = [0, 1, 50, 51, 100, 120]
    theta0 = fitted.get_parameters()
    proba0 = fitted.predict_proba(X[idx])
    t0 = datetime.now(timezone.utc)
    fitted.forget(X[idx], y[idx], epsilon=0.7)
    theta1 = fitted.get_parameters()
    proba1 = fitted.predict_proba(X[idx])
    (entry,) = fitted.erasure_log_
    assert set(entry) == KEYS
    assert t0 <= datetime.fromisoformat(entry["time"]) <= datetime.now(timezone.utc)
    assert entry["n_removed"] == 6 and entry["n_remaining"] == 144 == fitted.n_samples_
    assert entry["epsilon"] == 0.7
    assert entry["update_norm"] == pytest.approx(np.linalg.norm(theta1 - theta0), rel=1e-12)
    assert entry["relative_update_norm"] == pytest.approx(
        np.linalg.norm(theta1 - theta0) / np.linalg.norm(theta0), rel=1e-12)
    assert entry["curvature_downdated"] is True  # update_curvature="auto"
    assert entry["step"] == "leave_out"
    assert entry["checksum_before"] == _sha256(theta0)
    assert entry["checksum_after"] == _sha256(theta1) == fitted.parameters_checksum_
    assert entry["loss_before"] == pytest.approx(log_loss(y[idx], proba0, labels=[0, 1, 2]))
    assert entry["loss_after"] == pytest.approx(log_loss(y[idx], proba1, labels=[0, 1, 2]))
    assert entry["loss_after"] > entry["loss_before"]  # forgetting makes S less likely
    assert entry["accuracy_before"] == np.mean(proba0.argmax(1) == y[idx])
    assert entry["accuracy_after"] == np.mean(proba1.argmax(1) == y[idx])
    assert entry["label_flip_rate"] == np.mean(proba0.argmax(1) != proba1.argmax(1))
    assert entry["n_untracked"] is None  # nothing tracked
    assert entry["seconds"] > 0


def test_record_holds_no_training_rows(iris):
    X, y = iris
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True,
                                update_curvature=True).fit(X, y)
    clf.forget(X[[0, 1]], y[[0, 1]]).forget(X[[70]], y[[70]])
    for entry in clf.erasure_log_:
        for value in entry.values():
            assert value is None or isinstance(value, (bool, int, float, str))
        assert not any(str(v) in entry["checksum_after"] for v in X[0])


def test_checksums_chain_across_calls(fitted, iris):
    X, y = iris
    for i in range(4):
        fitted.forget(X[[i * 30]], y[[i * 30]], epsilon=[0.5, 1.0, 0.0, 2.0][i])
    log = fitted.erasure_log_
    assert [e["n_remaining"] for e in log] == [149, 148, 147, 146]
    for prev, nxt in zip(log, log[1:]):
        assert nxt["checksum_before"] == prev["checksum_after"]
    assert log[2]["checksum_before"] == log[2]["checksum_after"]  # epsilon = 0
    assert log[2]["update_norm"] == 0.0 and log[2]["label_flip_rate"] == 0.0
    assert log[-1]["checksum_after"] == fitted.parameters_checksum_
    times = [datetime.fromisoformat(e["time"]) for e in log]
    assert times == sorted(times)


def test_predicted_loss_change_is_first_order(fitted, iris):
    """For a small step the first-order prediction matches the actual change of the mean loss
    of S (the backend's loss is the multinomial log-loss, as predict_proba's)."""
    X, y = iris
    idx = [3, 77, 140]
    fitted.forget(X[idx], y[idx], epsilon=1e-3)
    e = fitted.erasure_log_[-1]
    actual = e["loss_after"] - e["loss_before"]
    assert e["predicted_loss_change"] > 0
    assert actual == pytest.approx(e["predicted_loss_change"], rel=1e-2)


def test_failed_calls_leave_no_entry(fitted, iris):
    X, y = iris
    fitted.forget(X[:2], y[:2])
    log = fitted.erasure_log_
    with pytest.raises(ValueError):
        fitted.forget(X[:2, :3], y[:2])
    assert fitted.erasure_log_ is log and len(log) == 1


def test_refit_starts_a_new_record(fitted, iris):
    X, y = iris
    fitted.forget(X[:2], y[:2])
    fitted.fit(X, y)
    assert fitted.erasure_log_ == []


def test_multioutput_diagnostics(iris):
    X, y = iris
    Y = np.c_[y, (X[:, 0] > 5.8).astype(int)]
    clf = UnlearnableClassifier(MultiOutputClassifier(LogisticRegression(max_iter=1000)))
    clf.fit(X, Y)
    idx = [5, 55, 105, 106]
    before = clf.predict_proba(X[idx])
    clf.forget(X[idx], Y[idx])
    after = clf.predict_proba(X[idx])
    e = clf.erasure_log_[-1]
    loss = lambda P: sum(log_loss(Y[idx, j], P[j], labels=np.unique(Y[:, j]))  # noqa: E731
                         for j in range(2))
    assert e["loss_before"] == pytest.approx(loss(before))
    assert e["loss_after"] == pytest.approx(loss(after))
    acc = lambda P: np.mean([P[j].argmax(1) == Y[idx, j] for j in range(2)])  # noqa: E731
    assert e["accuracy_before"] == pytest.approx(acc(before))
    flips = np.any([before[j].argmax(1) != after[j].argmax(1) for j in range(2)], axis=0)
    assert e["label_flip_rate"] == np.mean(flips)


# ------------------------------------------------------------------ tracked rows
@pytest.fixture(scope="module")
def _tracked(iris):
    X, y = iris
    Xd, yd = np.r_[X, X[:3]], np.r_[y, y[:3]]  # rows 0..2 occur twice
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True)
    return clf.fit(Xd, yd)


@pytest.fixture
def tracked(_tracked):
    return copy.deepcopy(_tracked)


def test_tracked_multiset(tracked, iris):
    X, y = iris
    assert tracked.sample_digest_counts_.sum() == tracked.n_samples_ == 153
    distinct = len(np.unique(np.c_[X, y], axis=0))  # iris has a duplicated row of its own
    assert distinct == 149
    assert len(tracked.sample_digests_) == distinct
    assert tracked.sample_digests_.dtype == np.dtype("S16")
    assert isinstance(tracked.sample_salt_, bytes) and len(tracked.sample_salt_) == 16
    tracked.forget(X[[0, 0, 7]], y[[0, 0, 7]])  # both copies of row 0
    assert tracked.sample_digest_counts_.sum() == 150
    assert len(tracked.sample_digests_) == distinct - 2
    assert tracked.erasure_log_[-1]["n_untracked"] == 0
    with pytest.raises(ValueError, match="1 of the 1 rows"):
        tracked.forget(X[[0]], y[[0]])  # a third copy was never there
    tracked.forget(X[[1]], y[[1]])  # one of two copies
    tracked.forget(X[[1]], y[[1]])  # the other
    with pytest.raises(ValueError, match="already forgotten"):
        tracked.forget(X[[1]], y[[1]])


def test_tracking_is_independent_of_input_dtypes(tracked, iris):
    X, y = iris
    # features as float32-exact values, a list of lists, float labels: the same rows
    rows = X[[10, 11]]
    tracked.forget(rows.tolist(), y[[10, 11]].astype(float))
    assert tracked.sample_digest_counts_.sum() == 151
    Xi = np.array([[5, 3, 1, 0]])  # integer features; never trained on
    with pytest.raises(ValueError, match="not among the rows"):
        tracked.forget(Xi, [0])


def test_string_labels_and_multioutput_are_tracked(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True)
    clf.fit(X, names).forget(X[[0]], names[[0]])
    with pytest.raises(ValueError, match="not among the rows"):
        clf.forget(X[[0]], names[[0]])
    Y = np.c_[y, (X[:, 0] > 5.8).astype(int)]
    mo = UnlearnableClassifier(MultiOutputClassifier(LogisticRegression(max_iter=1000)),
                               track_samples=True).fit(X, Y)
    wrong = Y[[4]].copy()
    wrong[0, 1] = 1 - wrong[0, 1]  # right features, one output's label wrong
    with pytest.raises(ValueError, match="not among the rows"):
        mo.forget(X[[4]], wrong)
    mo.forget(X[[4]], Y[[4]])


def test_on_untracked_warn_applies_the_step(tracked, iris):
    X, y = iris
    tracked.forget(X[[20]], y[[20]])
    tracked.set_params(on_untracked="warn")
    counts = tracked.sample_digest_counts_.sum()
    with pytest.warns(UntrackedSampleWarning, match="1 of the 2 rows"):
        tracked.forget(X[[20, 21]], y[[20, 21]])
    assert tracked.n_samples_ == 153 - 3
    assert tracked.sample_digest_counts_.sum() == counts - 1  # only row 21 was there
    assert tracked.erasure_log_[-1]["n_untracked"] == 1


def test_on_untracked_with_kept_training_data(iris):
    X, y = iris
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), keep_training_data=True,
                                on_untracked="warn").fit(X[::2], y[::2])
    with pytest.warns(UntrackedSampleWarning):
        clf.forget(X[[0, 1]], y[[0, 1]])  # row 1 was never trained on
    assert clf.fit_mask_.sum() == 74  # row 0 removed
    assert clf.erasure_log_[-1]["n_untracked"] == 1


def test_salt_is_per_model_and_digests_are_keyed(iris):
    X, y = iris
    a = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True,
                              random_state=0).fit(X, y)
    b = UnlearnableClassifier(LogisticRegression(max_iter=1000), track_samples=True,
                              random_state=0).fit(X, y)
    assert a.sample_salt_ != b.sample_salt_
    assert not np.isin(a.sample_digests_, b.sample_digests_).any()
    unsalted = row_digests(X, y)
    assert not np.isin(unsalted, a.sample_digests_).any()


def test_refit_without_tracking_drops_the_digests(tracked, iris):
    X, y = iris
    tracked.set_params(track_samples=False).fit(X, y)
    assert not hasattr(tracked, "sample_digests_")
    tracked.forget(X[[0]], y[[0]])
    assert tracked.erasure_log_[-1]["n_untracked"] is None


# ------------------------------------------------------------------ the hashing helpers
def test_row_digests_canonical_form():
    X = np.array([[0.0, 1.5], [-0.0, 1.5], [np.nan, 2.0], [np.nan, 2.0]])
    d = row_digests(X, [1, 1, 0, 0], salt=b"s")
    assert d[0] == d[1] and d[2] == d[3] and d[0] != d[2]
    assert row_digests(X[:1], [1])[0] != row_digests(X[:1], ["1"])[0]
    assert row_digests(X[:1], [1], salt=b"a")[0] != row_digests(X[:1], [1], salt=b"b")[0]
    assert row_digests(X[:1])[0] != row_digests(X[:1], [1])[0]
    with pytest.raises(ValueError, match="64"):
        row_digests(X, salt=b"x" * 65)
    with pytest.raises(TypeError, match="numeric"):
        row_digests(np.array([["a"]]))


def test_dense_row_digests_match_the_canonical_csr_form():
    """Dense rows are read without a CSR conversion: their digests must be those of the
    documented form (width, nonzero count, int64 positions, float64 values, label), computed
    here by hand from scipy's canonical CSR, over several chunks and rows with NaN, -0.0 and
    no nonzero at all; and equal to the digests of the same rows given sparse."""
    import scipy.sparse as sp

    from sklearn_ssse import _rows

    rng = np.random.RandomState(0)
    X = rng.randn(2 * _rows._CHUNK + 7, 13)
    X[X < 0.3] = 0.0
    X[3] = 0.0
    X[4, [1, 5]] = -0.0
    X[5, 2] = np.nan
    X[6] = -np.inf
    y = rng.randint(0, 4, len(X))
    salt = b"salt"
    csr = sp.csr_matrix(np.where(X == 0, 0.0, X))
    csr.sort_indices()
    expected = []
    for i in range(len(X)):
        a, b = csr.indptr[i], csr.indptr[i + 1]
        words = csr.data[a:b].astype("<f8")
        words[np.isnan(words)] = np.nan
        h = hashlib.blake2b((13).to_bytes(8, "little"), digest_size=_rows.DIGEST_SIZE, key=salt)
        h.update(int(b - a).to_bytes(8, "little"))
        h.update(csr.indices[a:b].astype("<i8").tobytes())
        h.update(words.tobytes())
        h.update(_rows._label_bytes(y[i:i + 1], 1)[0])
        expected.append(h.digest())
    got = row_digests(X, y, salt=salt)
    assert np.array_equal(got, np.array(expected, dtype=got.dtype))
    assert np.array_equal(got, row_digests(sp.csr_matrix(X), y, salt=salt))
    assert np.array_equal(row_digests(X.astype(np.float32), y, salt=salt),
                          row_digests(sp.csr_matrix(X.astype(np.float32)), y, salt=salt))


def _tempered_softmax(logits):
    import torch

    return torch.softmax(logits / 3.0, dim=-1)


@pytest.mark.parametrize("nonlinearity", ["auto", "tempered"])
def test_net_diagnostics_are_those_of_the_nets_predict_proba(nonlinearity):
    """A net's loss / accuracy / flips come from the gradient pass and one batched forward
    pass (not skorch's DataLoader): the same numbers as skorch's own predict_proba before
    and after; a net whose predict_proba differs (its own output nonlinearity) is asked."""
    import torch
    from _nets import digits_net, digits_split

    torch.set_num_threads(1)
    X, _, y, _ = digits_split()
    torch.manual_seed(0)
    net = digits_net(max_epochs=5, predict_nonlinearity=(
        "auto" if nonlinearity == "auto" else _tempered_softmax)).fit(X, y)
    clf = UnlearnableClassifier.from_fitted(net, X, y, inverse="ekfac", random_state=0)
    idx = np.flatnonzero(y == 3)[:40]
    before = copy.deepcopy(clf.estimator_).predict_proba(X[idx])
    clf.forget(X[idx], y[idx])
    after = clf.estimator_.predict_proba(X[idx])
    e = clf.erasure_log_[-1]
    assert e["loss_before"] == pytest.approx(log_loss(y[idx], before, labels=range(10)),
                                             rel=1e-5)
    assert e["loss_after"] == pytest.approx(log_loss(y[idx], after, labels=range(10)),
                                            rel=1e-5)
    assert e["accuracy_before"] == np.mean(before.argmax(1) == y[idx])
    assert e["accuracy_after"] == np.mean(after.argmax(1) == y[idx])
    assert e["label_flip_rate"] == np.mean(before.argmax(1) != after.argmax(1))


def test_multiset_remove_with_embedded_null_bytes():
    """Digests are raw bytes: values that differ only after a null byte are distinct."""
    values = np.array([b"a\x00b", b"a\x00c", b"a\x00\x00"], dtype="S3")
    v, c = multiset(np.r_[values, values[:1]])
    assert c.tolist() == [1, 2, 1]
    v2, c2, missing = multiset_remove(v, c, np.array([b"a\x00b", b"a\x00b", b"a\x00b",
                                                      b"a\x00\x01"], dtype="S3"))
    assert missing.tolist() == [False, False, True, True]
    assert sorted(v2.tolist()) == sorted([b"a\x00c", b"a"])  # numpy strips trailing nulls
    v3, c3, missing = multiset_remove(v2[:0], c2[:0], values)
    assert missing.all() and v3.size == 0


def test_multiset_remove_matches_a_counter():
    rng = np.random.default_rng(0)
    from collections import Counter

    for _ in range(50):
        pool = np.array([bytes([i]) * 4 for i in range(1, 9)], dtype="S4")
        have = rng.choice(pool, size=rng.integers(0, 20))
        ask = rng.choice(pool, size=rng.integers(0, 12))
        v, c = multiset(have)
        v2, c2, missing = multiset_remove(v, c, ask)
        left = Counter(have.tolist())
        expect_missing = []
        for a in ask.tolist():
            expect_missing.append(left[a] == 0)
            if left[a]:
                left[a] -= 1
        assert missing.tolist() == expect_missing
        assert dict(zip(v2.tolist(), c2.tolist())) == {k: n for k, n in left.items() if n}


def test_warning_category_is_public():
    assert issubclass(UntrackedSampleWarning, UserWarning)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        warnings.warn("x", UntrackedSampleWarning, stacklevel=1)
    assert rec[0].category is UntrackedSampleWarning


def test_tracking_a_net_with_a_validation_split_hashes_only_the_rows_trained_on():
    """skorch's default ValidSplit(5) holds 20% of the rows out of training: forgetting one of
    them is reported (it was never trained on)."""
    skorch = pytest.importorskip("skorch")
    import torch
    from torch import nn

    X, y = load_iris(return_X_y=True)
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1)),
                                     max_epochs=2, lr=0.1, verbose=0)
    clf = UnlearnableClassifier(net, track_samples=True).fit(X, y)
    trained = clf.backend_.fit_indices(X, y)
    held_out = np.setdiff1d(np.arange(len(X)), trained)
    assert clf.n_samples_ == len(trained) == 120 == clf.sample_digest_counts_.sum()
    with pytest.raises(ValueError, match="1 of the 1 rows"):
        clf.forget(X[held_out[:1]], y[held_out[:1]])
    clf.forget(X[trained[:2]], y[trained[:2]])
    assert clf.sample_digest_counts_.sum() == 118
