"""Bitwise snapshots of a fitted UnlearnableClassifier (shared by the atomicity, validation and
property tests): everything ``forget`` may change, as bytes or plain values."""

import copy
import pickle

import numpy as np

from sklearn_ssse._persistence import to_portable


def snapshot(clf) -> dict:
    """Everything a forget call may change, as comparable plain values.

    The wrapped estimator is pickled (all its arrays, bit for bit), the curvature operator is
    recorded by identity *and* by the bytes of its tensors, the record and the tracked rows by
    value.
    """
    state = {
        "attributes": sorted(vars(clf)),
        "estimator": pickle.dumps(clf.estimator_),
        "parameters": clf.get_parameters().tobytes(),
        "n_samples": clf.n_samples_,
        "curvature_id": id(clf.curvature_),
        "curvature": pickle.dumps(to_portable(clf.curvature_)),
        "log_id": id(clf.erasure_log_),
        "log": copy.deepcopy(clf.erasure_log_),
        "checksum": clf.parameters_checksum_,
        "theta": clf._theta.numpy().tobytes(),
    }
    for name in ("fit_mask_", "sample_digests_", "sample_digest_counts_"):
        if hasattr(clf, name):
            state[name] = np.asarray(getattr(clf, name)).tobytes()
    return state


def assert_unchanged(clf, before: dict) -> None:
    """Assert that ``clf`` is bitwise as in ``before`` (and that its curvature is the same
    object)."""
    after = snapshot(clf)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], f"{key} changed"
    # the parameters the backend reads are those of the live estimator
    assert clf.backend_.estimator is clf.estimator_
