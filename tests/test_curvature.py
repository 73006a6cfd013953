"""Curvature operators against brute-force numpy inverses."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sklearn_ssse._curvature import (
    BlockDiagonal,
    DenseCholesky,
    KroneckerBuilder,
    KroneckerEigen,
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


# ------------------------------------------------------------------------------ EK-FAC
def _softmax_terms(n=40, K=3, p=5, seed=0, same_p=False, with_p=False):
    """Kronecker terms of a softmax GGN: inputs ``Xa`` (n, p) and ``A_i = diag(p_i) - p_i
    p_i^T`` (n, K, K), with random (or, with ``same_p``, identical) probabilities."""
    rng = np.random.default_rng(seed)
    Xa = np.hstack([rng.normal(size=(n, p - 1)) * rng.uniform(0.3, 2, size=p - 1),
                    np.ones((n, 1))])
    logits = rng.normal(size=(1 if same_p else n, K)) * 2
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    P = np.broadcast_to(P, (n, K))
    A = np.einsum("nk,kl->nkl", P, np.eye(K)) - P[:, :, None] * P[:, None, :]
    return (Xa, A, P) if with_p else (Xa, A)


def _ekfac(Xa, A, lam_sum, chunk=7):
    K, p = A.shape[1], Xa.shape[1]
    b = KroneckerBuilder(K, p, torch.float64, torch.device("cpu"))
    chunks = [(torch.from_numpy(Xa[i:i + chunk]), torch.from_numpy(A[i:i + chunk]))
              for i in range(0, len(Xa), chunk)]
    for c in chunks:
        b.add_factors(*c)
    b.freeze()
    for c in chunks:
        b.add_diagonal(*c)
    return b.finalize(len(Xa), torch.from_numpy(lam_sum / len(Xa)))


def _kron_matrix(Xa, A):
    return sum(np.kron(a, np.outer(x, x)) for x, a in zip(Xa, A))


def test_ekfac_matches_brute_force_numpy_construction():
    """EK-FAC from its definition: the eigenbasis of (sum A_i) (x) (sum x x^T), and in it the
    exact diagonal of the damped curvature M = sum A_i (x) x x^T + diag(Lambda)."""
    Xa, A = _softmax_terms()
    n, K, p = len(Xa), A.shape[1], Xa.shape[1]
    lam = np.random.default_rng(3).uniform(0.5, 2.0, size=K * p)
    op = _ekfac(Xa, A, lam)
    assert isinstance(op, KroneckerEigen) and op.dim == K * p and op.n == n
    M = _kron_matrix(Xa, A) + np.diag(lam)
    QG = np.linalg.eigh(A.sum(0))[1]
    QA = np.linalg.eigh(Xa.T @ Xa)[1]
    Q = np.kron(QG, QA)
    s = np.diag(Q.T @ M @ Q)
    M_ek = (Q * s) @ Q.T
    assert _rel(op.matrix(), M_ek) < 1e-10
    assert _rel(op.inverse(), n * np.linalg.inv(M_ek)) < 1e-8
    v = torch.from_numpy(np.random.default_rng(1).normal(size=(K * p, 4)))
    assert _rel(op.solve(v), n * np.linalg.solve(M_ek, v.numpy())) < 1e-8
    assert _rel(op.solve(v[:, 1]), n * np.linalg.solve(M_ek, v[:, 1].numpy())) < 1e-8
    # what the Kronecker factorisation costs: not the exact curvature here
    assert _rel(M_ek, M) > 1e-2
    # memory O(K^2 + p^2 + K p), not O((K p)^2)
    assert op.nbytes == (K * K + p * p + 2 * K * p) * 8


def test_ekfac_is_exact_for_a_kronecker_curvature():
    """Every sample with the same output matrix A_i = A: the curvature A (x) sum x x^T is a
    Kronecker product, and with a damping diagonal in the eigenbasis (uniform) EK-FAC is exact."""
    Xa, A = _softmax_terms(same_p=True)
    n, K, p = len(Xa), A.shape[1], Xa.shape[1]
    lam = np.full(K * p, 0.7)
    op = _ekfac(Xa, A, lam)
    M = _kron_matrix(Xa, A) + np.diag(lam)
    assert _rel(op.matrix(), M) < 1e-10
    assert _rel(op.inverse(), n * np.linalg.inv(M)) < 1e-8


def test_ekfac_downdate_refits_the_remaining_eigenvalues():
    """Removing samples (by their factor rows, or by their Kronecker terms) takes their share out
    of the eigenvalues: the EK-FAC of the remaining samples in the full data's basis."""
    Xa, A, P = _softmax_terms(n=50, K=4, p=6, seed=2, with_p=True)
    n, K, p = len(Xa), A.shape[1], Xa.shape[1]
    lam = np.full(K * p, 1.5)
    op = _ekfac(Xa, A, lam)
    S = np.arange(0, n, 5)
    R = np.arange(n)[np.isin(np.arange(n), S, invert=True)]
    # factor rows of the removed samples: sqrt(p_c) (p - e_c) (x) x, their Gram is A_i (x) x x^T
    rows = np.concatenate([(np.sqrt(P[i])[:, None] * (P[i][None, :] - np.eye(K)))[:, :, None]
                           * Xa[i][None, None, :] for i in S]).reshape(-1, K * p)
    assert _rel(rows.T @ rows, _kron_matrix(Xa[S], A[S])) < 1e-10
    down = op.downdate(torch.from_numpy(rows), len(S))
    assert isinstance(down, KroneckerEigen) and down.n == n - len(S) and op.n == n
    Q = np.kron(op.QG.numpy(), op.QA.numpy())
    s = np.diag(Q.T @ (_kron_matrix(Xa[R], A[R]) + np.diag(lam)) @ Q)
    assert _rel(down.matrix(), (Q * s) @ Q.T) < 1e-10
    b = KroneckerBuilder(K, p, torch.float64, torch.device("cpu"))
    b.QG, b.QA = op.QG, op.QA
    terms = b.eigen_terms(torch.from_numpy(Xa[S]), torch.from_numpy(A[S]))
    assert _rel(op.remove_eigen_terms(terms, len(S)).matrix(), down.matrix()) < 1e-10
    # rows that were never part of it
    with pytest.raises(ValueError, match="not positive definite"):
        op.downdate(torch.from_numpy(rows * 10), len(S))


def test_ekfac_to_dtype_and_portable_round_trip():
    from sklearn_ssse._persistence import from_portable, to_portable

    Xa, A = _softmax_terms()
    op = _ekfac(Xa, A, np.ones(A.shape[1] * Xa.shape[1]))
    back = from_portable(to_portable(op))
    assert type(back) is KroneckerEigen
    assert torch.equal(back.inverse(), op.inverse())
    op32 = op.to(dtype=torch.float32)
    assert op32.dtype == torch.float32 and _rel(op32.inverse().double(), op.inverse()) < 1e-4


# ------------------------------------------------------------- precision, memory, device syncs
class _HostSyncs(torch.overrides.TorchFunctionMode):
    """Counts the calls that copy a tensor's value to the host (a device synchronisation on a
    GPU): ``float(t)``, ``bool(t)``, ``t.item()``, ``t.cpu()``, ``t.numpy()``, ``t.tolist()``."""

    NAMES = {"__float__", "__bool__", "__int__", "__index__", "item", "cpu", "numpy", "tolist"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.NAMES:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sherman_morrison_does_not_synchronise_per_row(problem, sign):
    R, lam, n = problem
    start = sherman_morrison_inverse(R, n * lam)  # M^{-1} with every row
    with _HostSyncs() as syncs:
        out = sherman_morrison_inverse(R[:30], None if sign < 0 else n * lam, sign=sign,
                                       start=start if sign < 0 else None)
    # one check of the removals at the end, none for additions (was one per row)
    assert len(syncs.calls) == (1 if sign < 0 else 0)
    R_, lam_ = R.numpy(), lam.numpy()
    M = (R_.T @ R_ + np.diag(n * lam_)) if sign < 0 else np.diag(n * lam_)
    M = M + sign * R_[:30].T @ R_[:30]
    assert _rel(out, np.linalg.inv(M)) < 1e-8


def test_sherman_morrison_still_refuses_rows_never_added(problem):
    R, lam, n = problem
    start = sherman_morrison_inverse(R, n * lam)
    with pytest.raises(ValueError, match="not positive definite"):
        sherman_morrison_inverse(R * 10, None, sign=-1.0, start=start)


def _ill_conditioned_rows(dtype, seed=0, m=200, d=2000):
    """Rows dominated by a few directions, far above the damping (as a trained net's
    gradients): the low-rank operator's solve cancels terms ~1e6 times its result."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(20, d, generator=g, dtype=torch.float64)
    scales = torch.logspace(0, -2, 20, dtype=torch.float64)
    U = (torch.randn(m + 10, 20, generator=g, dtype=torch.float64) * scales) @ basis
    U = U + 0.01 * torch.randn(m + 10, d, generator=g, dtype=torch.float64)
    return U[:m].to(dtype), U[m:].to(dtype), torch.full((d,), 1e-4, dtype=dtype)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_low_rank_downdate_accepts_its_own_rows(seed):
    """Regression: in float32 two successive downdates of legitimate rows were refused as
    'not positive definite' (the capacitance system U M^{-1} U^T lost every digit); it is
    formed in float64 now, and rows that were never added are still refused."""
    U64, other64, lam64 = _ill_conditioned_rows(torch.float64, seed)
    U, other, lam = U64.float(), other64.float(), lam64.float()
    m = U.shape[0]
    op = build_operator("woodbury", U, m, lam)
    down = op.downdate(U[:10], 10).downdate(U[10:20], 10)
    assert down.dtype == torch.float32 and down.n == m - 20
    # the float64 construction of the same operator, and the exact matrix it stands for
    ref = build_operator("woodbury", U64, m, lam64).downdate(U64[:10], 10).downdate(U64[10:20],
                                                                                     10)
    v = torch.randn(U.shape[1], generator=torch.Generator().manual_seed(seed + 10),
                    dtype=torch.float64)
    rest = U64[20:]
    exact = torch.linalg.solve((rest.T @ rest + torch.diag(lam64 * m)) / (m - 20), v)
    assert _rel(ref.solve(v), exact) < 1e-3
    assert _rel(down.solve(v.float()).double(), exact) < 1e-2
    for rows in (other, torch.cat([U[:10], U[:10]])):  # never added / removed twice
        with pytest.raises(ValueError, match="not positive definite"):
            down.downdate(rows if rows is other else U[:10], 10)


_PEAK_SCRIPT = r"""
import resource, sys, torch
sys.path.insert(0, {root!r})
from sklearn_ssse._curvature import OperatorBuilder
torch.set_num_threads(1)
m, d = 1024, 25000
torch.randn(256, d)  # allocator warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
builder = OperatorBuilder("woodbury", d, torch.float32, torch.device("cpu"))
for a in range(0, m, 256):
    builder.add_rows(torch.randn(256, d))
op = builder.finalize(m, torch.full((d,), 1e-3), scale=2.0)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
print(peak / op.nbytes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_woodbury_build_keeps_one_copy_of_its_rows():
    """Regression: the low-rank build held the rows ~3 times (the chunks, their concatenation,
    the scaled copy, then Y); now the operator's rows are the only copy. Peak resident memory
    of a fresh interpreter (tracemalloc does not see torch's allocations)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(root=root)], env=env,
                         capture_output=True, text=True, check=True)
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert ratio < 1.6, f"peak {ratio:.2f}x the operator"
