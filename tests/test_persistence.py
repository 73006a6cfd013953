"""Saving and loading a fitted model: pickle, joblib (also memory-mapped), deepcopy, skops.

A round trip must keep the predictions, the curvature (operator type, count and every tensor,
bit for bit, memory layout included), the erasure record, the checksum and the tracked rows, and
the loaded model must forget exactly as the original would.
"""

import copy
import io
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multioutput import MultiOutputClassifier

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._persistence import from_portable, to_portable

TRUSTED = ["sklearn_ssse._unlearnable.UnlearnableClassifier"]


def _data():
    X, y = load_iris(return_X_y=True)
    return X, y, np.c_[y, (X[:, 0] > 5.8).astype(int)]


CASES = {
    "dense": (lambda: LogisticRegression(max_iter=1000), {"curvature": "ggn"}),
    "downdated": (lambda: LogisticRegression(max_iter=1000),
                  {"update_curvature": True, "track_samples": True}),
    "block_sgd": (lambda: SGDClassifier(loss="log_loss", random_state=0),
                  {"inverse": "block", "keep_training_data": True}),
    "woodbury_sampled": (lambda: LogisticRegression(max_iter=1000),
                         {"inverse": "woodbury", "fisher_max_samples": 50,
                          "update_curvature": True, "random_state": 0}),
    "sherman_morrison": (lambda: LogisticRegression(max_iter=1000),
                         {"inverse": "sherman_morrison", "update_curvature": True}),
    "multioutput": (lambda: MultiOutputClassifier(LogisticRegression(max_iter=1000)),
                    {"update_curvature": True, "track_samples": True,
                     "keep_training_data": True}),
}


@pytest.fixture(scope="module")
def _models():
    X, y, Y = _data()
    out = {}
    for name, (make, params) in CASES.items():
        t = Y if name == "multioutput" else y
        clf = UnlearnableClassifier(make(), **params).fit(X, t)
        clf.forget(X[[0, 60]], t[[0, 60]]).forget(X[[110]], t[[110]], epsilon=0.5)
        out[name] = (clf, X, t)
    return out


@pytest.fixture(params=list(CASES))
def model(request, _models):
    clf, X, t = _models[request.param]
    return copy.deepcopy(clf), X, t


def _proba(clf, X):
    P = clf.predict_proba(X)
    return P if isinstance(P, list) else [P]


def assert_same_model(a, b, X, t):
    """``b`` is a faithful copy of ``a``, and both forget identically afterwards."""
    assert b is not a and b.estimator_ is not a.estimator_
    assert b.backend_.estimator is b.estimator_  # the backend writes into the loaded model
    for pa, pb in zip(_proba(a, X), _proba(b, X)):
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())
    # the curvature: same operator tree, every tensor equal with the same strides
    assert type(a.curvature_) is type(b.curvature_)
    assert a.curvature_.n == b.curvature_.n
    ta, tb = a.curvature_._tensors(), b.curvature_._tensors()
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb):
        assert x.dtype == y.dtype and x.stride() == y.stride() and torch.equal(x, y)
    assert torch.equal(a.curvature_.inverse(), b.curvature_.inverse())
    for name in ("_damping", "_theta_fit"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.erasure_log_ == b.erasure_log_
    assert a.parameters_checksum_ == b.parameters_checksum_
    assert a.n_samples_ == b.n_samples_ and a.n_samples_fit_ == b.n_samples_fit_
    for name in ("sample_salt_", "sample_digests_", "sample_digest_counts_", "fit_mask_",
                 "X_fit_", "y_fit_"):
        assert hasattr(a, name) == hasattr(b, name)
        if hasattr(a, name):
            np.testing.assert_array_equal(np.asarray(getattr(a, name)),
                                          np.asarray(getattr(b, name)))
    # the loaded model forgets bit for bit as the original
    idx = [7, 77, 140]
    a.forget(X[idx], t[idx])
    b.forget(X[idx], t[idx])
    np.testing.assert_array_equal(a.get_parameters(), b.get_parameters())
    for pa, pb in zip(_proba(a, X), _proba(b, X)):
        np.testing.assert_array_equal(pa, pb)
    assert a.erasure_log_[-1]["checksum_after"] == b.erasure_log_[-1]["checksum_after"]


def test_pickle_round_trip(model):
    clf, X, t = model
    data = pickle.dumps(clf)
    assert b"torch" not in data  # linear models: the state is plain numpy and builtins
    assert_same_model(clf, pickle.loads(data), X, t)


def test_joblib_round_trip(model, tmp_path):
    clf, X, t = model
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    assert_same_model(clf, joblib.load(path), X, t)


def test_read_only_memory_mapped_model_predicts_but_cannot_forget(model, tmp_path):
    """``mmap_mode="r"`` gives read-only parameter arrays: the model predicts identically, a
    forget is refused with nothing changed, and a deep copy is a normal, writable model."""
    clf, X, t = model
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    mapped = joblib.load(path, mmap_mode="r")
    for pa, pb in zip(_proba(clf, X), _proba(mapped, X)):
        np.testing.assert_array_equal(pa, pb)
    theta = mapped.get_parameters()
    with pytest.raises(ValueError, match="read-only"):
        mapped.forget(X[[9]], t[[9]])
    np.testing.assert_array_equal(mapped.get_parameters(), theta)
    assert mapped.erasure_log_ == clf.erasure_log_
    assert_same_model(clf, copy.deepcopy(mapped), X, t)


def test_deepcopy_is_independent(model):
    clf, X, t = model
    twin = copy.deepcopy(clf)
    before = clf.get_parameters()
    twin.forget(X[[9]], t[[9]])
    np.testing.assert_array_equal(clf.get_parameters(), before)
    assert len(twin.erasure_log_) == len(clf.erasure_log_) + 1
    assert_same_model(clf, copy.deepcopy(clf), X, t)


def test_saving_does_not_change_the_model(model):
    clf, X, t = model
    attrs = dict(vars(clf))
    pickle.dumps(clf)
    assert dict(vars(clf)).keys() == attrs.keys()
    assert all(vars(clf)[k] is v for k, v in attrs.items())


def test_tampered_parameters_are_refused_after_loading(model):
    clf, X, t = model
    loaded = pickle.loads(pickle.dumps(clf))
    theta = loaded.get_parameters()
    theta[0] += 1e-9
    loaded.backend_.set_parameters(theta)  # e.g. a file edited by hand
    with pytest.raises(RuntimeError, match="checksum"):
        loaded.forget(X[[9]], t[[9]])


def test_unfitted_estimator_round_trips():
    clf = UnlearnableClassifier(LogisticRegression(max_iter=1000), epsilon=0.3,
                                track_samples=True)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.get_params()["epsilon"] == 0.3
    assert not hasattr(loaded, "backend_")
    X, y, _ = _data()
    loaded.fit(X, y).forget(X[:2], y[:2])


def test_portable_state_rejects_unknown_classes_and_dtypes():
    state = to_portable({"op": None, "t": torch.arange(3.0)})
    assert isinstance(state["t"]["__ssse_tensor__"], np.ndarray)
    with pytest.raises(ValueError, match="unknown curvature operator"):
        from_portable({"__ssse_operator__": "Popen", "state": {}})
    with pytest.raises(ValueError, match="unknown tensor dtype"):
        from_portable({"__ssse_tensor__": np.zeros(2), "dtype": "load"})
    bf16 = from_portable(to_portable(torch.tensor([1.5, 2.0], dtype=torch.bfloat16)))
    assert bf16.dtype == torch.bfloat16 and bf16.tolist() == [1.5, 2.0]


# ------------------------------------------------------------------ skops (secure loading)
def test_skops_round_trip(model, tmp_path):
    sio = pytest.importorskip("skops.io")
    clf, X, t = model
    path = tmp_path / "model.skops"
    sio.dump(clf, path)
    # only our own class needs trusting: everything else is numpy, builtins and scikit-learn
    assert sio.get_untrusted_types(file=path) == TRUSTED
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    assert_same_model(clf, sio.load(path, trusted=TRUSTED), X, t)


def test_skops_refuses_a_skorch_model():
    """skops cannot store torch modules: a skorch-backed model is saved with pickle / joblib
    (load only trusted files), as skorch itself documents."""
    sio = pytest.importorskip("skops.io")
    skorch = pytest.importorskip("skorch")
    from torch import nn

    X, y, _ = _data()
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(nn.Linear(4, 3), criterion=nn.CrossEntropyLoss,
                                     max_epochs=3, lr=0.1, train_split=None, verbose=0)
    clf = UnlearnableClassifier(net, update_curvature=True, track_samples=True).fit(X, y)
    clf.forget(X[:2], y[:2])
    with pytest.raises(Exception):  # noqa: B017 - skops raises various errors for torch
        sio.dumps(clf)
    buf = io.BytesIO()
    joblib.dump(clf, buf)
    buf.seek(0)
    assert_same_model(clf, joblib.load(buf), X, y)


def test_persistence_page_code_blocks_run(tmp_path, monkeypatch, capsys):
    """The recipes of docs/persistence.rst are real code: run its python blocks in order."""
    pytest.importorskip("skops.io")
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "persistence.rst"
    blocks = ["\n".join(line[3:] for line in block.splitlines()) for block in
              re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", page.read_text())]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)  # the skops recipe writes model.skops
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(page), "exec"), namespace)
    out = capsys.readouterr().out
    assert "already forgotten" in out
    assert str(TRUSTED) in out
    assert namespace["loaded"].n_samples_ == 146
