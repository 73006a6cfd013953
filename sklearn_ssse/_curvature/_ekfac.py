"""``inverse="ekfac"`` for backends whose curvature has a Kronecker structure (the linear models):
an eigen-corrected Kronecker factorisation per output, built in two passes over the data (the
eigenbasis of the Kronecker factors, then the exact eigenvalues in it); its downdate removes the
erased samples' share of the eigenvalues, from their Kronecker terms (no factor rows)."""

from __future__ import annotations

from collections.abc import Iterable

from ._base import InverseKind, item_size

__all__ = ["EKFAC"]


def _kronecker_ops(op):
    """The EK-FAC operators of ``op`` (one per output), or ``None`` if it is not one."""
    from ._operators import BlockDiagonal, KroneckerEigen

    if isinstance(op, KroneckerEigen):
        return [op]
    if isinstance(op, BlockDiagonal) and all(isinstance(o, KroneckerEigen) for o in op.ops):
        return list(op.ops)
    return None


class EKFAC(InverseKind):
    """Eigen-corrected K-FAC of a linear model's curvature (see
    :class:`~sklearn_ssse._curvature.KroneckerEigen`): ``O(K^2 + p^2)`` memory per output."""

    name = "ekfac"
    auto_rank = 2

    @classmethod
    def unsupported(cls, backend, config):
        if config.get("sparse_nnz") is not None:
            return ("inverse='ekfac' does not take sparse X (it holds dense p x p matrices "
                    "built from dense rows): use 'dense', 'block', 'woodbury' or 'auto'")
        if backend.kronecker_blocks is None:
            return (f"inverse='ekfac' needs a curvature with a Kronecker structure (the linear "
                    f"models' backend); {type(backend).__name__} has none: use 'dense', 'block' "
                    "or 'woodbury'")
        if int(config.get("fisher_batch_size", 1)) > 1:
            return ("inverse='ekfac' needs fisher_batch_size=1 (it re-fits its eigenvalues from "
                    "every sample's own terms)")
        return None

    @classmethod
    def estimate_memory(cls, backend, config, n=None):
        # per output (K classes, p inputs): the input factor, its eigenvectors and the
        # eigensolver's workspace (3 p^2), the small K x K matrices, the K x p eigenvalues and
        # one chunk's terms
        c = int(config.get("chunk_size", 512))
        return sum(3 * p * p + 2 * K * K + 3 * K * p + c * (2 * p + K * K + K)
                   for _, K, p in backend.kronecker_blocks) * item_size(backend)

    @classmethod
    def build(cls, backend, chunks: Iterable, config, damping, rng, n_known=None):
        """Two passes over the data (the eigenbasis of the Kronecker factors, then the exact
        eigenvalues in it). A re-iterable ``chunks`` (a list) is read twice; a one-shot stream
        (a generator) is held in memory between the passes (in-memory arrays as views of the
        caller's rows)."""
        from .._data import n_rows, rebuffer
        from ._operators import BlockDiagonal, KroneckerBuilder

        chunk_size, curvature = config["chunk_size"], config["curvature"]
        blocks = backend.kronecker_blocks
        builders = [KroneckerBuilder(K, p, backend.dtype, backend.device) for _, K, p in blocks]
        if iter(chunks) is chunks:
            chunks = list(rebuffer(chunks, chunk_size))
        n = 0
        for Xc, yc in rebuffer(chunks, chunk_size):
            n += n_rows(Xc)
            for b, (Xa, A) in zip(builders, backend.kronecker_terms(Xc, yc, curvature)):
                b.add_factors(Xa, A)
        if n == 0:
            raise ValueError("the training data is empty")
        for b in builders:
            b.freeze()
        for Xc, yc in rebuffer(chunks, chunk_size):
            for b, (Xa, A) in zip(builders, backend.kronecker_terms(Xc, yc, curvature)):
                b.add_diagonal(Xa, A)
        lam = damping(n)
        ops = [b.finalize(n, lam[s]) for b, (s, _, _) in zip(builders, blocks)]
        op = ops[0] if len(ops) == 1 else BlockDiagonal([s for s, _, _ in blocks], ops, n)
        return {"curvature": op, "damping": lam, "n": n, "n_curvature_samples": n,
                "sample": None, "label_salt": None}

    @classmethod
    def downdate(cls, op, state, backend, X, y, config):
        """Remove the erased samples' share of the eigenvalues, from their Kronecker terms (no
        factor rows), chunk by chunk."""
        import torch

        from ._operators import BlockDiagonal, KroneckerBuilder, KroneckerEigen

        ops = _kronecker_ops(op)
        if ops is None:  # pragma: no cover - the estimator pairs kinds with their operators
            raise TypeError(f"inverse='ekfac' cannot downdate a {type(op).__name__}")
        from .._data import n_rows

        k, chunk_size = n_rows(X), config["chunk_size"]
        terms = [torch.zeros_like(o.s_data) for o in ops]
        builders = []
        for o in ops:
            b = KroneckerBuilder(*o.shape, o.dtype, o.device)
            b.QG, b.QA = o.QG, o.QA
            builders.append(b)
        for a in range(0, k, chunk_size):
            parts = backend.kronecker_terms(X[a:a + chunk_size], y[a:a + chunk_size],
                                            config["curvature"])
            for t, b, (Xa, A) in zip(terms, builders, parts):
                t.add_(b.eigen_terms(Xa, A))
        new = [o.remove_eigen_terms(t, k) for o, t in zip(ops, terms)]
        if isinstance(op, KroneckerEigen):
            return new[0], state.get("sample")
        return BlockDiagonal(op.slices, new, op.n - k), state.get("sample")
