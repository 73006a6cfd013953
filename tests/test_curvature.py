"""Curvature operators against brute-force numpy inverses."""

import numpy as np
import pytest
import torch

from sklearn_ssse._curvature import (
    BlockDiagonal,
    DenseCholesky,
    build_operator,
    gram,
    sherman_morrison_inverse,
)

KINDS = ["dense", "woodbury", "sherman_morrison"]


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, d = 60, 14
    R = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
    lam = rng.uniform(0.05, 0.5, size=d)
    return torch.from_numpy(R), torch.from_numpy(lam), n


def _brute(R, lam, n):
    R, lam = np.asarray(R), np.asarray(lam)
    return np.linalg.inv(R.T @ R / n + np.diag(lam))


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_matches_brute_force(problem, kind):
    R, lam, n = problem
    op = build_operator(kind, R, n, lam)
    assert _rel(op.inverse(), _brute(R, lam, n)) < 1e-8
    v = torch.from_numpy(np.random.default_rng(1).normal(size=(R.shape[1], 3)))
    assert _rel(op.solve(v), _brute(R, lam, n) @ v.numpy()) < 1e-8
    assert _rel(op.solve(v[:, 0]), _brute(R, lam, n) @ v[:, 0].numpy()) < 1e-8


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_rows_equal_one_block(problem, kind):
    R, lam, n = problem
    whole = build_operator(kind, R, n, lam).inverse()
    chunked = build_operator(kind, (R[i:i + 7] for i in range(0, n, 7)), n, lam).inverse()
    assert _rel(chunked, whole) < 1e-10


def test_sherman_morrison_recursion_equals_dense(problem):
    R, lam, n = problem
    M_inv = sherman_morrison_inverse(R, n * lam)
    dense = torch.linalg.inv(gram([R], R.shape[1], R.dtype, R.device) + torch.diag(n * lam))
    assert _rel(M_inv, dense) < 1e-10


def test_block_operator_is_block_diagonal(problem):
    R, lam, n = problem
    op = build_operator("block", R, n, lam, block_size=5)
    assert isinstance(op, BlockDiagonal)
    assert [s.stop - s.start for s in op.slices] == [5, 5, 4]
    inv = op.inverse().numpy()
    for s in op.slices:
        Rs = R[:, s]
        assert _rel(inv[s, s], _brute(Rs, lam[s], n)) < 1e-8
    off = inv.copy()
    for s in op.slices:
        off[s, s] = 0
    assert np.abs(off).max() == 0


def test_independent_blocks_apply_to_every_kind(problem):
    R, lam, n = problem
    blocks = [slice(0, 6), slice(6, 14)]
    for kind in KINDS:
        inv = build_operator(kind, R, n, lam, blocks=blocks).inverse().numpy()
        for s in blocks:
            assert _rel(inv[s, s], _brute(R[:, s], lam[s], n)) < 1e-8
        assert np.abs(inv[0:6, 6:]).max() == 0


@pytest.mark.parametrize("kind", KINDS + ["block"])
def test_downdate_equals_rebuild(problem, kind):
    """Removing rows keeps the sum-form damping n_fit * lambda (see the module docstring)."""
    R, lam, n = problem
    op = build_operator(kind, R, n, lam, block_size=5 if kind == "block" else None)
    op2 = op.downdate(R[:4], 4).downdate(R[4:9], 5)
    assert op2.n == n - 9 and op.n == n  # immutability
    rest = R[9:]
    rebuilt = build_operator(kind, rest, n - 9, lam * n / (n - 9),
                             block_size=5 if kind == "block" else None)
    assert _rel(op2.inverse(), rebuilt.inverse()) < 1e-8


def test_not_positive_definite_is_a_clear_error():
    R = torch.zeros((3, 4), dtype=torch.float64)
    with pytest.raises(ValueError, match="not positive definite"):
        build_operator("dense", R, 3, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="positive damping"):
        build_operator("woodbury", R, 3, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown inverse"):
        build_operator("nope", R, 3, torch.ones(4, dtype=torch.float64))


def test_to_dtype_and_nbytes(problem):
    R, lam, n = problem
    op = build_operator("dense", R, n, lam)
    assert isinstance(op, DenseCholesky)
    assert op.nbytes == R.shape[1] ** 2 * 8
    op32 = op.to(dtype=torch.float32)
    assert op32.dtype == torch.float32 and op.dtype == torch.float64
    assert _rel(op32.inverse().double(), op.inverse()) < 1e-4
