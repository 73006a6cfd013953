"""Deletions you can trust: concurrency, frozen fit-time settings, the state seal, crash-safe
saves, rollback at every line, absurd steps and clear messages (the attacks of the user guide's
"Deletions you can trust" page)."""

import itertools
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import joblib
import numpy as np
import pytest
import torch
from _model_state import assert_unchanged, snapshot
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.multioutput import MultiOutputClassifier

import sklearn_ssse
from sklearn_ssse import (
    LargeStepWarning,
    SealError,
    UnlearnableClassifier,
    UnverifiedSealWarning,
    seal_key,
)
from sklearn_ssse._unlearnable import _parameters_checksum

KEY = b"0123456789abcdef-test-key"


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def _fit(X, y, **kw):
    kw.setdefault("track_samples", True)
    return UnlearnableClassifier(LogisticRegression(max_iter=1000), **kw).fit(X, y)


# --------------------------------------------------------------------------------- concurrency
def test_concurrent_forgets_equal_a_serial_order(iris):
    X, y = iris
    sets = [np.arange(i, 150, 25)[:4] + 0 for i in range(4)]  # 4 disjoint sets, mixed classes
    base = _fit(X, y)
    serial = {}
    for order in itertools.permutations(range(4)):
        clf = pickle.loads(pickle.dumps(base))
        for i in order:
            clf.forget(X[sets[i]], y[sets[i]])
        serial[order] = clf.get_parameters()
    for _ in range(5):
        clf = pickle.loads(pickle.dumps(base))
        barrier = threading.Barrier(4)
        errors = []

        def work(i, clf=clf, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                clf.forget(X[sets[i]], y[sets[i]])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        theta = clf.get_parameters()
        assert any(np.array_equal(theta, s) for s in serial.values())
        assert clf.n_samples_ == 150 - 16 == int(clf.sample_digest_counts_.sum())
        assert len(clf.erasure_log_) == 4 and clf.verify_seal()
        chain = [e["seal_before"] for e in clf.erasure_log_]
        assert len(set(chain)) == 4  # each call saw the state the previous one sealed


def test_a_failing_thread_does_not_roll_back_the_others(iris):
    X, y = iris
    clf = _fit(X, y)
    good, bad = np.arange(0, 150, 30), np.arange(1, 150, 30)
    clf.forget(X[bad], y[bad])  # forgotten already: a second request fails
    results = {}

    def work(name, idx):
        try:
            clf.forget(X[idx], y[idx])
            results[name] = "ok"
        except ValueError:
            results[name] = "refused"

    threads = [threading.Thread(target=work, args=("bad", bad)),
               threading.Thread(target=work, args=("good", good))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"bad": "refused", "good": "ok"}
    assert clf.n_samples_ == 140 and len(clf.erasure_log_) == 2


# ------------------------------------------------------------------- frozen fit-time settings
CHANGED_AFTER_FIT = {
    "curvature": "empirical_fisher", "damping": 10.0, "inverse": "woodbury",
    "memory_budget": 1, "step": "full", "block_size": 3, "fisher_batch_size": 10,
    "fisher_max_samples": 7, "update_curvature": False, "parameters": "coef_",
    "dtype": "float32", "chunk_size": 3, "keep_training_data": True, "memory": "/nonexistent",
    "random_state": 123, "track_samples": False,
}


def test_every_fit_time_setting_is_frozen(iris):
    """Changing a fit-time parameter after fit changes nothing until the next fit: the forget
    result (parameters, curvature, record) is bitwise that of the untouched model."""
    X, y = iris
    base = _fit(X, y, update_curvature=True)
    ref = pickle.loads(pickle.dumps(base))
    ref.forget(X[:6], y[:6])
    ref.forget(X[60:66], y[60:66])
    for name, value in CHANGED_AFTER_FIT.items():
        clf = pickle.loads(pickle.dumps(base)).set_params(**{name: value})
        clf.forget(X[:6], y[:6])
        clf.forget(X[60:66], y[60:66])
        assert np.array_equal(clf.get_parameters(), ref.get_parameters()), name
        assert clf.config_ == ref.config_, name
        assert [e["curvature_downdated"] for e in clf.erasure_log_] == [True, True], name
        assert torch.equal(clf.curvature_.solve(torch.ones(15, dtype=torch.float64)),
                           ref.curvature_.solve(torch.ones(15, dtype=torch.float64))), name


def test_call_time_options_take_effect(iris):
    X, y = iris
    clf = _fit(X, y)
    clf.set_params(epsilon=0.0)
    theta = clf.get_parameters()
    clf.forget(X[:3], y[:3])  # epsilon is read per call: a step of 0
    assert np.array_equal(clf.get_parameters(), theta)
    clf.set_params(on_untracked="warn")
    with pytest.warns(sklearn_ssse.UntrackedSampleWarning):
        clf.forget(X[:3], y[:3], epsilon=0.0)


# ------------------------------------------------------------------------------------ the seal
def _portable_state(clf):
    return clf.__getstate__()


def _load_state(state):
    new = UnlearnableClassifier.__new__(UnlearnableClassifier)
    new.__setstate__(state)
    return new


def _flip_bit(arr):
    arr = np.array(arr, copy=True, order="C")
    arr.reshape(-1).view(np.uint8)[arr.nbytes // 2] ^= 1
    return arr


@pytest.mark.parametrize("where", ["curvature", "_theta_fit", "_theta", "_damping",
                                   "sample_digests_", "erasure_log_", "n_samples_"])
def test_a_changed_saved_state_is_refused_on_load(iris, where):
    X, y = iris
    clf = _fit(X, y)
    clf.forget(X[:4], y[:4])
    state = _portable_state(clf)
    if where == "curvature":
        op = state["curvature_"]["state"]
        name = next(k for k, v in op.items() if isinstance(v, dict) and "__ssse_tensor__" in v)
        op[name]["__ssse_tensor__"] = _flip_bit(op[name]["__ssse_tensor__"])
    elif where in ("_theta_fit", "_theta", "_damping"):
        state[where]["__ssse_tensor__"] = _flip_bit(state[where]["__ssse_tensor__"])
    elif where == "sample_digests_":
        state[where] = _flip_bit(state[where])
    elif where == "erasure_log_":
        state[where][0]["n_removed"] = 3
    else:
        state[where] += 4
    with pytest.raises(SealError, match="does not match its seal"):
        _load_state(state)
    _load_state(_portable_state(clf)).verify_seal()  # the untouched state loads


def test_a_flipped_bit_in_the_pickle_bytes_is_refused(iris):
    X, y = iris
    clf = _fit(X, y)
    blob = bytearray(pickle.dumps(clf))
    target = clf.theta_fit_.tobytes()
    at = bytes(blob).find(target)
    assert at > 0
    blob[at + 3] ^= 0x10
    with pytest.raises(SealError):
        pickle.loads(bytes(blob))


def test_in_memory_tampering_is_refused_before_forget(iris):
    X, y = iris
    clf = _fit(X, y)
    before = snapshot(clf)
    tensor = next(v for v in vars(clf.curvature_).values() if torch.is_tensor(v) and v.numel())
    tensor.add_(1e-3)  # in place: the version counter moves
    with pytest.raises(SealError):
        clf.forget(X[:3], y[:3])
    tensor.sub_(1e-3)
    clf2 = _fit(X, y)
    clf2._theta_fit = clf2._theta_fit * 1.0001  # rebinding
    with pytest.raises(SealError):
        clf2.forget(X[:3], y[:3])
    del before


def test_recomputed_checksum_is_caught_by_the_keyed_seal(iris):
    """The attack on the old checksum: zero the weights, recompute every digest you can. The
    plain SHA-256 seal cannot stop someone who recomputes it (documented); the keyed one does."""
    X, y = iris
    with seal_key(KEY):
        clf = _fit(X, y)
    assert clf.seal_mode_ == "hmac-sha256"
    clf.estimator_.coef_[:] = 0.0
    clf._theta = clf.backend_.get_parameters()
    clf.parameters_checksum_ = _parameters_checksum(clf._theta)
    from sklearn_ssse._seal import digest

    clf.state_seal_ = digest(vars(clf), None)  # the attacker has no key
    with seal_key(KEY), pytest.raises(SealError, match="key"):
        clf.forget(X[:3], y[:3])


def test_keyed_model_needs_its_key(iris, tmp_path):
    X, y = iris
    with seal_key(KEY):
        clf = _fit(X, y)
        sklearn_ssse.save(clf, tmp_path / "m.joblib")
    with pytest.warns(UnverifiedSealWarning):
        loaded = sklearn_ssse.load(tmp_path / "m.joblib")
    with pytest.raises(SealError, match="secret key"):
        loaded.forget(X[:3], y[:3])
    with seal_key(b"another key of 16+ bytes"), pytest.raises(SealError, match="key"):
        sklearn_ssse.load(tmp_path / "m.joblib")
    with seal_key(KEY):
        loaded = sklearn_ssse.load(tmp_path / "m.joblib")
        loaded.forget(X[:3], y[:3])
        assert loaded.verify_seal()
    with pytest.raises(ValueError, match="16 bytes"):
        seal_key(b"short")


def test_key_from_the_environment(iris, monkeypatch):
    X, y = iris
    monkeypatch.setenv("SKLEARN_SSSE_SEAL_KEY", KEY.decode())
    clf = _fit(X, y)
    assert clf.seal_mode_ == "hmac-sha256"
    clf.forget(X[:3], y[:3])
    monkeypatch.delenv("SKLEARN_SSSE_SEAL_KEY")
    with pytest.raises(SealError, match="secret key"):
        clf.verify_seal()


# ------------------------------------------------------------------------ crash-safe saving
_CHILD = textwrap.dedent("""
    import sys, time, joblib
    import sklearn_ssse._io as io
    model = joblib.load(sys.argv[1])
    def slow_dump(obj, f, **kw):
        f.write(b"partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(120)
    mode = sys.argv[3]
    if mode == "save":
        io.joblib.dump = slow_dump
        io.save(model, sys.argv[2])
    else:  # the unsafe pattern: joblib.dump straight over the file
        joblib.numpy_pickle.NumpyPickler.dump = lambda self, obj: (
            self.file_handle.write(b"partial"), self.file_handle.flush(),
            print("writing", flush=True), time.sleep(120))
        joblib.dump(model, sys.argv[2])
""")


@pytest.mark.parametrize("mode", ["save", "joblib"])
def test_kill_during_save_keeps_the_previous_file(iris, tmp_path, mode):
    X, y = iris
    clf = _fit(X, y)
    path = tmp_path / "model.joblib"
    sklearn_ssse.save(clf, path)
    src = tmp_path / "src.joblib"
    joblib.dump(clf, src)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(path), mode],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    if mode == "joblib":  # the failure save() exists for
        assert path.read_bytes() == b"partial"
        return
    loaded = sklearn_ssse.load(path)
    assert np.array_equal(loaded.get_parameters(), clf.get_parameters())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the dead writer's temporary file


def test_save_replaces_atomically_and_cleans_up_on_error(iris, tmp_path):
    X, y = iris
    clf = _fit(X, y)
    path = tmp_path / "m.joblib"
    sklearn_ssse.save(clf, path)
    clf.forget(X[:5], y[:5])
    sklearn_ssse.save(clf, path)
    assert sklearn_ssse.load(path).n_samples_ == 145

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        sklearn_ssse.save(Unpicklable(), path)
    assert sklearn_ssse.load(path).n_samples_ == 145
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.joblib"]


# ------------------------------------------------------------ rollback at every line (tracing)
class _Interrupt(BaseException):
    pass


def _run_interrupted_at(codes, n, call):
    """Run ``call()`` raising ``_Interrupt`` at the ``n``-th line event in frames of the code
    objects ``codes``; return the number of line events seen."""
    seen = 0

    def local(frame, event, arg):
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == n:
                raise _Interrupt
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code in codes else None

    sys.settrace(tracer)
    try:
        call()
    except _Interrupt:
        pass
    finally:
        sys.settrace(None)
    return seen


def _codes(*names):
    """The code objects of UnlearnableClassifier methods (unwrapped)."""
    return {getattr(getattr(UnlearnableClassifier, name), "__wrapped__",
                    getattr(UnlearnableClassifier, name)).__code__ for name in names}


@pytest.mark.parametrize("config", [
    {"update_curvature": True, "track_samples": True},
    {"update_curvature": False, "keep_training_data": True, "step": "full"},
    {"inverse": "woodbury", "fisher_max_samples": 40, "keep_training_data": True},
])
def test_an_interrupt_at_any_line_of_forget_changes_nothing(iris, config):
    X, y = iris
    idx = [0, 1, 60, 120]
    base = _fit(X, y, **config)
    code = _codes("forget", "_verify_seal", "_seal")
    done = pickle.loads(pickle.dumps(base))
    n_lines = _run_interrupted_at(code, 0, lambda: done.forget(X[idx], y[idx]))
    assert n_lines > 40
    for n in range(1, n_lines + 1):
        clf = pickle.loads(pickle.dumps(base))
        before = snapshot(clf)
        _run_interrupted_at(code, n, lambda clf=clf: clf.forget(X[idx], y[idx]))
        assert_unchanged(clf, before)  # interrupted at line n: nothing changed
        assert clf.verify_seal()
        clf.forget(X[idx], y[idx])  # the same rows are accepted once, then refused
        assert np.array_equal(clf.get_parameters(), done.get_parameters()), n
        assert clf.n_samples_ == 146 and len(clf.erasure_log_) == 1
        with pytest.raises(ValueError, match="not among the"):
            clf.forget(X[idx], y[idx])


def test_an_interrupt_at_any_line_of_fit_keeps_the_previous_fit(iris):
    X, y = iris
    base = _fit(X, y)
    base.forget(X[:4], y[:4])
    code = _codes("fit", "_set_fitted_state", "_seal")
    n_lines = _run_interrupted_at(code, 0, lambda: pickle.loads(pickle.dumps(base)).fit(X, y))
    assert n_lines > 40
    for n in range(1, n_lines + 1):
        clf = pickle.loads(pickle.dumps(base))
        before = snapshot(clf)
        _run_interrupted_at(code, n, lambda clf=clf: clf.fit(X[::2], y[::2]))
        assert_unchanged(clf, before)
        assert clf.verify_seal()


# -------------------------------------------------------------------------------- absurd steps
def test_absurd_epsilon_is_refused_atomically(iris):
    X, y = iris
    clf = _fit(X, y)
    before = snapshot(clf)
    for eps in (1e300, 1e200, 1e30):
        with pytest.raises(FloatingPointError, match="larger than they are"):
            clf.forget(X[:3], y[:3], epsilon=eps)
        assert_unchanged(clf, before)
    with pytest.warns(LargeStepWarning, match="Newton step"):
        clf.forget(X[:3], y[:3], epsilon=500.0)
    entry = clf.erasure_log_[-1]
    assert np.isfinite(entry["update_norm"]) and np.isfinite(entry["relative_update_norm"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeStepWarning)
        clf.forget(X[3:6], y[3:6], epsilon=2.0)


# ------------------------------------------------------------------------------ clear messages
def test_mixed_label_types_get_a_clear_message(iris):
    X, y = iris
    mixed = y.astype(object)
    mixed[:5] = "a"
    with pytest.raises(ValueError, match="mixes string and numeric labels"):
        _fit(X, mixed)
    clf = _fit(X, y)
    with pytest.raises(ValueError, match="mixes string and numeric"):
        clf.forget(X[:2], np.array([0, "a"], dtype=object))
    with pytest.raises(ValueError, match="fitted with number labels"):
        clf.forget(X[:2], np.array(["a", "b"]))


def test_forget_on_a_read_only_memory_mapped_load(iris, tmp_path):
    X, y = iris
    clf = _fit(X, y, track_samples=False)
    sklearn_ssse.save(clf, tmp_path / "m.joblib")
    ro = sklearn_ssse.load(tmp_path / "m.joblib", mmap_mode="r")
    before = snapshot(ro)
    with pytest.raises(ValueError, match="mmap_mode='c'"):
        ro.forget(X[:3], y[:3])
    assert_unchanged(ro, before)
    cow = sklearn_ssse.load(tmp_path / "m.joblib", mmap_mode="c")
    cow.forget(X[:3], y[:3])
    assert cow.n_samples_ == 147


def test_nan_row_in_a_scorer_test_fold_is_refused(iris):
    X, y = iris
    clf = _fit(X, y, keep_training_data=True, track_samples=False)
    Xs = X[:6].copy()
    Xs[2, 1] = np.nan
    scorer = sklearn_ssse.parameter_distance_scorer
    with pytest.raises(ValueError, match="NaN or infinity"):
        scorer(clf, Xs, y[:6])


# ------------------------------------------------------------------- MultiOutputClassifier
def test_multi_output_score_and_cross_validation(iris):
    X, y = iris
    Y = np.c_[y, (X[:, 0] > 5.8).astype(int)]
    clf = UnlearnableClassifier(MultiOutputClassifier(LogisticRegression(max_iter=1000)))
    clf.fit(X, Y)
    inner = MultiOutputClassifier(LogisticRegression(max_iter=1000)).fit(X, Y)
    assert clf.score(X, Y) == inner.score(X, Y)
    scores = cross_val_score(clf, X, Y, cv=KFold(3, shuffle=True, random_state=0),
                             error_score="raise")
    assert np.all(np.isfinite(scores)) and scores.min() > 0.3
    clf.forget(X[:3], Y[:3])
    assert clf.verify_seal()


def test_verification_cost_is_cheap_per_call(iris):
    """Before every forget only the in-memory fingerprint is computed while nothing changed;
    the full digest runs on load and when something was rebound."""
    X, y = iris
    clf = _fit(X, y)
    from sklearn_ssse import _unlearnable

    calls = []
    real = _unlearnable.digest
    try:
        _unlearnable.digest = lambda *a, **k: calls.append(1) or real(*a, **k)
        clf.forget(X[:3], y[:3])
        assert len(calls) == 1  # the new seal only, no full verification before
        clf.curvature_ = clf.curvature_  # rebinding the same object changes nothing
        clf.forget(X[3:6], y[3:6])
        assert len(calls) == 2
    finally:
        _unlearnable.digest = real
    t = time.perf_counter()
    clf.verify_seal()
    assert time.perf_counter() - t < 5
