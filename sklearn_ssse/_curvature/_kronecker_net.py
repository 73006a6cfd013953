"""Kronecker-factored curvature (K-FAC and EK-FAC) of torch nets, from forward/backward passes.

Every selected parameter must belong to an ``nn.Linear`` or ``nn.Conv2d`` layer (weight, bias, or
both); any other module with selected parameters (``BatchNorm``, ``Embedding``, ...) is refused
with a ``ValueError`` naming it (restrict ``parameters=`` to the Linear/Conv2d layers, e.g. the
last layers).  No per-parameter fallback is made: a diagonal block would silently be a much
cruder curvature than the rest.

Layout
------
The parameters of one layer form a ``K x p`` matrix (``K`` outputs / out-channels; ``p`` columns:
the weight's ``in_features`` or ``in_channels * kh * kw`` columns when the weight is selected,
then one column for the bias when it is selected), row major, as in
:class:`~sklearn_ssse._curvature.KroneckerEigen`.  The net's flat vector (``get_parameters``)
holds each tensor row major, weight and bias as separate tensors; :class:`KroneckerNet` maps
between the two orders by slicing (no index tensors), and checks that the layers cover exactly
the selected parameters.

Factors (sum form)
------------------
For a sample ``i`` with layer inputs ``a_it`` (``T`` positions: conv patches from
:func:`torch.nn.functional.unfold`, extra leading dims of a Linear input; ``T = 1`` for a plain
Linear layer, ``1`` appended when the bias is selected) and output gradients ``g_ict`` of the
``q`` factor rows ``c`` of its curvature, the per-sample gradient of row ``c`` is
``sum_t g_ict a_it^T`` and the data term is ``sum_i sum_c vec(.) vec(.)^T``.  Following Grosse &
Martens (2016, KFC, spatially uncorrelated derivatives) the factors are

    A = sum_i sum_t a_it a_it^T,      G = sum_i sum_c (1/T) sum_t g_ict g_ict^T,

and K-FAC approximates the data term by ``G (x) A / n`` (the mean-form product
``(G/n) (x) (A/n)`` times ``n``).  This is exact for a single Linear layer (``T = 1``) whose
output curvature ``sum_c g_ic g_ic^T`` is the same for every sample.

Rows ``c`` per curvature:

* ``"empirical_fisher"``: one row, the gradient of ``-log p(y_i|x_i)`` (observed label);
* ``"ggn"`` (true Fisher / GGN), ``config["kfac_ggn"]``:

  - ``"sampled"`` (default, :data:`GGN_MODE_DEFAULT`): one row per sample at a label drawn
    from ``p(.|x)`` by the inverse CDF at a keyed hash of the row
    (:func:`~sklearn_ssse._streaming.row_uniforms` with a salt drawn from the fit's
    ``random_state``, kept as the state's ``label_salt``), so a downdate removes exactly the
    terms that were added; its expectation is the exact GGN;
  - ``"exact"``: the ``C`` columns of the square root of the loss Hessian in
    log-probability space, rows ``sqrt(p_c) grad(-log p(c|x))`` (as
    :meth:`~sklearn_ssse._backends.TorchBackend.curvature_rows`), one backward pass per class.

  Why sampled by default (measured, ``benchmarks/bench_kfac.py`` and sklearn digits, 1 CPU
  thread): the exact rows cost ``C = 10`` backward passes per sample, the sampled rows one
  (Fashion-MNIST 10k, setup in training epochs, exact / sampled: 2-conv CNN K-FAC 5.6 / 1.6,
  EK-FAC 9.6 / 4.1; on the MLP 784-256-10, whose backward pass is cheap, both 1.6 for K-FAC
  and 3.3 for EK-FAC); and the sampled curvature lands as close to the retrained
  net (KL of the predictions on the forget set, digits MLP / CNN, random 1% and single-class
  removal: within run-to-run noise of the exact one, better in 7 of 12 cases).  A vmapped
  backward (``is_grads_batched``) for the exact rows was 4x slower on the CPU.

Inverse and damping
-------------------
Both kinds hold, per layer, the eigenbasis ``Q = Q_G (x) Q_A`` of the factors and eigenvalues
``s`` in it (a :class:`~sklearn_ssse._curvature.KroneckerEigen`):

* K-FAC: ``s = eig(G) (x) eig(A) / n + diag(Q^T diag(Lambda) Q)``;
* EK-FAC: ``s = diag(Q^T B Q) + diag(Q^T diag(Lambda) Q)`` with ``B`` the exact data term of
  the layer, re-fitted once the basis is known (George et al. 2018): from the per-sample terms
  kept during the factor pass when they fit a share of ``memory_budget`` (Linear layers: the
  inputs and output gradients, whose rotated squares sum over the samples in one product;
  Conv2d layers: the per-sample ``K x p`` gradients), else in a second pass over the data.

``Lambda = n * lambda`` is the mean-form damping (weight decay) in sum form.  Its eigen terms are
exact whenever ``lambda`` is uniform over the layer's selected parameters (then K-FAC is
exactly ``(G (x) A / n + Lambda)^{-1}``, better than the factored damping
``(G + pi sqrt(lambda) I) (x) (A + sqrt(lambda) / pi I)``, which adds cross terms and costs the
same eigendecompositions); when weight and bias of a layer have different ``lambda`` (optimizer
param groups) the damping is replaced by its projection on the diagonal of that basis, as for
the linear models' EK-FAC.  As elsewhere, a downdate keeps the total damping ``Lambda``.

Downdates (the leave-``S``-out curvature): K-FAC subtracts the removed samples' factor terms
from ``A`` and ``G`` and re-factors (new eigenbasis) over ``n - k`` samples; EK-FAC keeps its
basis and subtracts the removed samples' eigenvalue terms.  Rows that were never part of the
curvature are refused when the result is indefinite (``ValueError``, nothing changed).

Precision: factors and eigendecompositions are computed in ``config["factor_dtype"]``
(``None``: the backend's dtype, float32 for a default net; ``"float64"`` for more accurate
eigenvectors) on the net's device, and the operator keeps that dtype.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from .._data import rebuffer
from .._streaming import row_uniforms
from ._operators import _INDEFINITE, CurvatureOperator, KroneckerEigen, _as_matrix

__all__ = ["KroneckerNet", "build_kronecker", "downdate_kronecker", "kronecker_memory",
           "kronecker_unsupported"]

_LAYERS = (torch.nn.Linear, torch.nn.Conv2d)
_FACTOR_DTYPES = {None: None, "float32": torch.float32, "float64": torch.float64}
_GGN_MODES = ("exact", "sampled")
#: how the GGN's rows are formed when ``config`` does not say (``"kfac_ggn"``): one sampled
#: label per sample costs one backward pass instead of ``C``, and lands as close to retraining
#: (see the module docstring)
GGN_MODE_DEFAULT = "sampled"
#: tolerance (times the dtype's eps, relative to the largest eigenvalue) below which a downdated
#: eigenvalue counts as negative
_NEG_TOL = 1000.0
#: numbers per sub-batch of per-sample gradient matrices (EK-FAC eigenvalues of conv layers)
_SUBBATCH_NUMBERS = 1 << 22
#: share of what ``memory_budget`` leaves after the build's estimate that EK-FAC may spend on
#: keeping its eigenvalue terms between its passes (the rest: the net's own activations)
_CACHE_SHARE = 0.5


# ------------------------------------------------------------------------------- layer layout
class _Layer:
    """One layer's place in ``theta``: ``K`` outputs, ``n_in`` weight columns (0 when the weight
    is not selected), flat offsets of its weight / bias (``None`` when not selected)."""

    def __init__(self, path, module, K, n_in, w_offset, b_offset):
        self.path, self.module = path, module
        self.K, self.n_in, self.w_offset, self.b_offset = K, n_in, w_offset, b_offset

    @property
    def p(self) -> int:
        return self.n_in + (self.b_offset is not None)

    @property
    def layout(self) -> tuple[int, int, int | None, int | None]:
        return self.K, self.n_in, self.w_offset, self.b_offset


def _conv_padding(m: torch.nn.Conv2d):
    """``m.padding`` as integers for ``F.unfold``, or a reason why it cannot be."""
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}"
    if m.groups != 1:
        return f"groups={m.groups}"
    pad = m.padding
    if pad == "valid":
        return (0, 0)
    if pad == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        if any(t % 2 for t in total):
            return "padding='same' with an even receptive field (asymmetric padding)"
        return tuple(t // 2 for t in total)
    return tuple(pad)


def _collect(backend):
    module = backend._module
    found: dict[str, dict] = {}
    for name, s in zip(backend.param_names_, backend.natural_blocks):
        path, _, leaf = name.rpartition(".")
        found.setdefault(path, {})[leaf] = s.start
    layers = []
    for path, leaves in found.items():
        m = module.get_submodule(path)
        n_in = 0
        if "weight" in leaves:
            n_in = m.in_features if isinstance(m, torch.nn.Linear) else \
                m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        K = m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels
        layers.append(_Layer(path, m, K, n_in, leaves.get("weight"), leaves.get("bias")))
    return layers


def _unsupported_layers(backend) -> str | None:
    module = backend._module
    seen = set()
    for name in backend.param_names_:
        path, _, leaf = name.rpartition(".")
        m = module.get_submodule(path)
        if not isinstance(m, _LAYERS) or leaf not in ("weight", "bias"):
            kind = type(m).__name__
            return (f"parameter {name!r} belongs to module {path or '<root>'!r} of type {kind}: "
                    "K-FAC/EK-FAC cover nn.Linear and nn.Conv2d layers only; restrict "
                    "parameters= to those layers (e.g. the last ones) or use another inverse")
        if isinstance(m, torch.nn.Conv2d) and path not in seen:
            pad = _conv_padding(m)
            if isinstance(pad, str):
                return (f"Conv2d layer {path!r} has {pad}, which K-FAC's unfolded patches do "
                        "not reproduce")
        seen.add(path)
    return None


# ------------------------------------------------------------------------------- the operator
class KroneckerNet(CurvatureOperator):
    """Block-diagonal Kronecker curvature of a net: one :class:`KroneckerEigen` per layer.

    Parameters
    ----------
    layouts : list of tuple
        Per layer ``(K, n_in, w_offset, b_offset)``: outputs, weight columns (0 if the weight is
        not selected) and the flat offsets of the weight and bias tensors (``None`` if not
        selected).
    ops : list of KroneckerEigen
        Per layer, the sum-form curvature in the ``K x p`` layout.
    n : int
        Samples the data term averages over.
    dim : int
        Number of parameters; the layers must cover ``range(dim)`` exactly.
    factors : list of tuple of Tensor, optional
        K-FAC only: per layer ``(G, A, Lambda)``, the sum-form factors and the total damping in
        the ``K x p`` layout (kept for downdates, which re-factor).
    """

    def __init__(self, layouts, ops, n, dim, factors=None):
        super().__init__(n)
        self.layouts = [tuple(lay) for lay in layouts]
        self.ops, self.factors, self._dim = list(ops), factors, int(dim)
        covered = np.zeros(self._dim, dtype=np.int64)
        for K, n_in, w, b in self.layouts:
            if w is not None:
                covered[w:w + K * n_in] += 1
            if b is not None:
                covered[b:b + K] += 1
        if not np.all(covered == 1):
            raise ValueError("the Kronecker layers do not cover every selected parameter exactly "
                             "once")

    @property
    def dim(self):
        return self._dim

    def _gather(self, W, lay):
        K, n_in, w, b = lay
        parts = []
        if w is not None:
            parts.append(W[w:w + K * n_in].reshape(K, n_in, -1))
        if b is not None:
            parts.append(W[b:b + K].reshape(K, 1, -1))
        V = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return V.reshape(K * V.shape[1], -1)

    def _scatter(self, out, V, lay):
        K, n_in, w, b = lay
        V = V.reshape(K, -1, V.shape[-1])
        if w is not None:
            out[w:w + K * n_in] = V[:, :n_in].reshape(K * n_in, -1)
        if b is not None:
            out[b:b + K] = V[:, -1]

    def flat_index(self, layer: int) -> torch.Tensor:
        """Flat positions of the ``K x p`` layout of ``layer`` (row major), for tests."""
        idx = torch.arange(self._dim).unsqueeze(-1)
        return self._gather(idx, self.layouts[layer]).reshape(-1)

    def solve_sum(self, V):
        W, vec = _as_matrix(V)
        out = torch.empty_like(W)
        for lay, op in zip(self.layouts, self.ops):
            self._scatter(out, op.solve_sum(self._gather(W, lay).to(op.dtype)).to(W.dtype), lay)
        return out.squeeze(-1) if vec else out

    def matrix(self):
        """The dense sum-form ``M`` in the flat order (tests and small nets)."""
        M = torch.zeros((self._dim, self._dim), dtype=self.dtype, device=self.device)
        for i, op in enumerate(self.ops):
            idx = self.flat_index(i).to(self.device)
            M[idx.unsqueeze(1), idx.unsqueeze(0)] = op.matrix()
        return M

    def _tensors(self):
        ts = [t for op in self.ops for t in op._tensors()]
        if self.factors is not None:
            ts += [t for f in self.factors for t in f]
        return ts

    def _map(self, fn):
        factors = None if self.factors is None else [tuple(fn(t) for t in f)
                                                     for f in self.factors]
        return KroneckerNet(self.layouts, [op._map(fn) for op in self.ops], self.n, self._dim,
                            factors)

    def _with_n(self, n):
        if self.factors is None:
            return super()._with_n(n)
        return _kfac_operator(self.layouts, self.factors, int(n), self._dim)


# ------------------------------------------------------------------------------- hooked passes
def _torch_labels(P: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of one class per row of ``P`` at uniforms ``u`` (on ``P``'s device)."""
    cdf = torch.cumsum(P, dim=1)
    k = (cdf < u.unsqueeze(1) * cdf[:, -1:]).sum(1)
    return k.clamp(max=P.shape[1] - 1)


def _layer_inputs(layer: _Layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's weight inputs ``a_it``, shape ``(N, T, n_in)`` (the bias column of ones is
    implicit: see :func:`_factor_terms` and :func:`_eigen_terms`)."""
    m, N = layer.module, x.shape[0]
    if layer.n_in:
        if isinstance(m, torch.nn.Conv2d):
            a = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=_conv_padding(m),
                         stride=m.stride).transpose(1, 2)
        else:
            a = x.reshape(N, -1, x.shape[-1])
        return a
    return x.new_zeros((N, _positions(layer, x), 0))


def _positions(layer, x):
    m = layer.module
    if isinstance(m, torch.nn.Conv2d):
        pad = _conv_padding(m)
        T = 1
        for j in range(2):
            size = x.shape[-2 + j] + 2 * pad[j] - m.dilation[j] * (m.kernel_size[j] - 1) - 1
            T *= size // m.stride[j] + 1
        return T
    return int(np.prod(x.shape[1:-1], dtype=np.int64))


def _layer_grads(layer: _Layer, g, N: int, T: int, dtype, device) -> torch.Tensor:
    """Output gradients ``g_it`` of shape ``(N, T, K)`` (zeros if the output is unused)."""
    if g is None:
        return torch.zeros((N, T, layer.K), dtype=dtype, device=device)
    if isinstance(layer.module, torch.nn.Conv2d):
        g = g.reshape(N, layer.K, -1).transpose(1, 2)
    else:
        g = g.reshape(N, -1, layer.K)
    return g.to(dtype)


def _capture(store, path, mod, inp, out):
    if path in store:
        raise ValueError(f"layer {path!r} is called more than once per forward pass (shared "
                         "weights): K-FAC needs one call per layer")
    store[path] = (inp[0].detach(), out)


def _passes(backend, layers, chunks, curvature, mode, salt, chunk_size, dtype, labels=None,
            sink=None):
    """For each chunk: ``(n_chunk, inputs, rows)`` with ``inputs[l]`` of shape ``(N, T, n_in)``
    and ``rows`` a generator of per-row-kind lists ``grads[l]`` of shape ``(N, T, K)``.

    ``labels`` (a list, sampled GGN only): the labels drawn for each chunk are appended to it
    on a first pass, and read from it (instead of hashing the rows again) on a later pass over
    the same chunks.  With a ``sink`` (a dict: see :func:`_gradient_into`) the same forward
    pass also gives the summed gradient of the observed labels and the class probabilities."""
    with backend._eval_mode() as module:
        params, const = backend._state(module)
        params = {k: v.requires_grad_(True) for k, v in params.items()}
        for j, (Xc, yc) in enumerate(rebuffer(chunks, chunk_size)):
            X, y = backend._inputs(Xc, yc)
            captured: dict[str, tuple] = {}
            handles = [layer.module.register_forward_hook(
                functools.partial(_capture, captured, layer.path)) for layer in layers]
            try:
                with torch.enable_grad():
                    out = functional_call(module, {**const, **params}, (X,))
            finally:
                for h in handles:
                    h.remove()
            missing = [layer.path for layer in layers if layer.path not in captured]
            if missing:
                raise ValueError(f"layers {missing} were not called by the module's forward "
                                 "(K-FAC reads their inputs and output gradients with hooks)")
            out = backend._output(out, X.shape[0])
            lp = backend._log_proba_of(out)
            N = X.shape[0]
            inputs = [_layer_inputs(layer, captured[layer.path][0]).to(dtype) for layer in layers]
            outs = [captured[layer.path][1] for layer in layers]
            Ts = [a.shape[1] for a in inputs]
            known = labels[j] if labels is not None and j < len(labels) else None
            if sink is not None:
                _gradient_into(sink, backend, layers, out, lp, y, inputs, outs, Ts, dtype)
            yield N, inputs, _rows(lp, outs, layers, Ts, curvature, mode, salt, (Xc, yc), y,
                                   dtype, known, labels)


def _gradient_into(sink, backend, layers, out, lp, y, inputs, outs, Ts, dtype):
    """Add one chunk's ``sum_i grad -log p(y_i|x_i)`` (observed labels) to ``sink["g"]`` (the
    flat parameter order, created on first use) and append its class probabilities to
    ``sink["proba"]`` (as ``TorchBackend.predict_proba_tensor`` gives them): the layers'
    weight gradients ``sum_{i,t} g_it a_it^T`` and bias gradients ``sum_{i,t} g_it`` from the
    inputs the K-FAC terms read and one backward pass to the layer outputs (the graph is kept
    for the curvature rows)."""
    N = lp.shape[0]
    grads = torch.autograd.grad(-lp.gather(1, y.reshape(-1, 1)).sum(), outs, retain_graph=True,
                                allow_unused=True)
    g = sink.get("g")
    if g is None:
        g = sink["g"] = torch.zeros(backend.n_params, dtype=dtype, device=lp.device)
    for layer, a, go, T in zip(layers, inputs, grads, Ts):
        go = _layer_grads(layer, go, N, T, dtype, lp.device)  # (N, T, K)
        if layer.w_offset is not None:
            if T == 1:
                w = go[:, 0].T @ a[:, 0]
            else:  # per-sample gradients as in _eigen_terms (3-4x faster on the CPU than
                # one einsum over (n, t)), summed, in sub-batches of bounded memory
                step = _subbatch(layer.K, layer.n_in)
                w = sum(_sample_grads(go[s:s + step], a[s:s + step], layer.n_in).sum(0)
                        for s in range(0, N, step))
            g[layer.w_offset:layer.w_offset + w.numel()] += w.reshape(-1)
        if layer.b_offset is not None:
            g[layer.b_offset:layer.b_offset + layer.K] += go.sum((0, 1))
    sink.setdefault("proba", []).append(backend._proba_of(out).detach())


def _rows(lp, outs, layers, Ts, curvature, mode, salt, raw, y, dtype, known=None, drawn=None):
    """Per row kind (one, or one per class for the exact GGN), the layers' output gradients.
    Sampled GGN: ``known`` are this chunk's labels from an earlier pass (else they are drawn,
    and appended to the list ``drawn`` when given)."""
    N = lp.shape[0]
    if curvature == "empirical_fisher" or mode == "sampled":
        labels = y
        if curvature == "ggn" and known is not None:
            labels = known
        elif curvature == "ggn":  # labels drawn from p(.|x), keyed by the rows (reproducible)
            Xn, yn = (t.cpu().numpy() if torch.is_tensor(t) else np.asarray(t) for t in raw)
            u = torch.as_tensor(row_uniforms(Xn, yn, salt), dtype=torch.float64,
                                device=lp.device)
            labels = _torch_labels(torch.exp(lp.detach()).to(torch.float64), u)
            if drawn is not None:
                drawn.append(labels)
        weights = [(labels, None)]
    else:  # exact GGN: C rows sqrt(p_c) grad(-log p_c), one backward pass each (a vmapped
        # backward, is_grads_batched, measured 4x slower on a CNN on the CPU)
        C = lp.shape[1]
        weights = [(torch.full((N,), c, dtype=torch.long, device=lp.device),
                    torch.exp(0.5 * lp[:, c].detach())) for c in range(C)]
    for j, (labels, w) in enumerate(weights):
        picked = -lp.gather(1, labels.reshape(-1, 1))[:, 0]
        loss = (picked if w is None else picked * w).sum()
        grads = torch.autograd.grad(loss, outs, retain_graph=j < len(weights) - 1,
                                    allow_unused=True)
        yield [_layer_grads(layer, g, N, T, dtype, lp.device)
               for layer, g, T in zip(layers, grads, Ts)]


# ------------------------------------------------------------------------------- accumulation
def _factor_terms(layers, inputs, grads_rows, dtype, device):
    """``(G, A)`` sums of one chunk per layer (matrix products on ``(N T) x width`` views)."""
    A = []
    for layer, a in zip(layers, inputs):
        A.append(_gram(a))
        if layer.b_offset is not None:
            col = a.sum((0, 1))
            A[-1] = torch.cat([torch.cat([A[-1], col[:, None]], 1),
                               torch.cat([col, col.new_full((1,), a.shape[0] * a.shape[1])])[None]],
                              0)
    G = [torch.zeros((layer.K, layer.K), dtype=dtype, device=device) for layer in layers]
    for grads in grads_rows:
        for Gl, g in zip(G, grads):
            Gl.add_(_gram(g), alpha=1.0 / g.shape[1])
    return G, A


def _gram(a):
    """``sum_{n,t} a_nt a_nt^T`` of ``a`` of shape ``(N, T, w)``; with several positions, per
    sample on the ``(N, w, T)`` transpose (the contiguous layout of unfolded patches and conv
    outputs), in sub-batches of bounded memory."""
    N, T, w = a.shape
    if T == 1:
        a = a[:, 0]
        return a.T @ a
    at = a.transpose(1, 2)
    out = torch.zeros((w, w), dtype=a.dtype, device=a.device)
    step = max(1, _SUBBATCH_NUMBERS // max(1, w * w))
    for s in range(0, N, step):
        b = at[s:s + step]
        out += torch.bmm(b, b.transpose(1, 2)).sum(0)
    return out


def _eigen_terms(bases, inputs, grads_rows):
    """Per layer ``sum_i sum_c diag(Q^T vec(g_ic^T a_i) vec(.)^T Q)`` as ``(K, p)`` over the
    row kinds ``c`` of one chunk.  ``a`` comes without its bias column (``QA`` has one more row
    then: the coefficients of the ones).

    One position per sample (Linear): the inputs are rotated once per chunk and the squared
    output rotations summed over the rows first, one product per layer
    (:func:`_linear_terms`).  Several positions (Conv2d): each sample's ``K x p`` gradient
    ``sum_t g_t a_t^T`` is formed from the contiguous ``(N, K, T)`` / ``(N, p, T)`` layouts
    (:func:`_sample_grads`) and then rotated (cheaper than rotating the ``T`` positions;
    :func:`_rotated_squares`), in sub-batches of bounded memory."""
    outs, sq = [], []
    for (QG, QA), a in zip(bases, inputs):
        outs.append(torch.zeros((QG.shape[0], QA.shape[0]), dtype=a.dtype, device=a.device))
        sq.append(None)
    for grads in grads_rows:
        for i, ((QG, QA), a, g) in enumerate(zip(bases, inputs, grads)):
            if a.shape[1] == 1:
                ga2 = (g[:, 0] @ QG) ** 2
                sq[i] = ga2 if sq[i] is None else sq[i].add_(ga2)
                continue
            step = _subbatch(QG.shape[0], QA.shape[0])
            for s in range(0, g.shape[0], step):
                P = _sample_grads(g[s:s + step], a[s:s + step], QA.shape[0])
                outs[i] += _rotated_squares(QG, QA, P)
    for i, ((_, QA), a) in enumerate(zip(bases, inputs)):
        if sq[i] is not None:
            outs[i] += _linear_terms(QA, a[:, 0], sq[i])
    return outs


def _subbatch(K: int, p: int) -> int:
    """Samples per sub-batch of ``K x p`` per-sample gradient matrices."""
    return max(1, _SUBBATCH_NUMBERS // max(1, K * p))


def _sample_grads(g, a, p):
    """Per-sample gradients ``sum_t g_t a_t^T`` of shape ``(N, K, p)`` from output gradients
    ``g`` ``(N, T, K)`` and inputs ``a`` ``(N, T, n_in)`` (the views of the contiguous
    ``(N, K, T)`` / ``(N, n_in, T)`` layouts); with ``p > n_in`` the bias column
    ``sum_t g_t`` comes last."""
    gt = g.transpose(1, 2)  # (N, K, T)
    P = torch.bmm(gt, a)  # (N, K, n_in)
    if p > a.shape[2]:
        P = torch.cat([P, gt.sum(2, keepdim=True)], dim=2)
    return P


def _rotated_squares(QG, QA, P):
    """``sum_i (QG^T P_i QA)**2`` of per-sample gradients ``P`` ``(N, K, p)``, in sub-batches
    of bounded memory."""
    out = torch.zeros((QG.shape[0], QA.shape[0]), dtype=P.dtype, device=P.device)
    step = _subbatch(QG.shape[0], QA.shape[0])
    for s in range(0, P.shape[0], step):
        R = torch.matmul(torch.matmul(QG.T, P[s:s + step]), QA)
        out += (R * R).sum(0)
    return out


def _linear_terms(QA, a, sq):
    """``sq^T (a QA)**2``: the eigenvalue terms of one-position samples with inputs ``a``
    ``(N, n_in)`` (the bias column of ones implicit when ``QA`` has ``n_in + 1`` rows) and
    squared rotated output gradients ``sq`` ``(N, K)`` summed over the row kinds."""
    n_in = a.shape[1]
    aa = a @ QA[:n_in]
    if QA.shape[0] > n_in:  # bias column of ones
        aa = aa + QA[n_in]
    return sq.T @ (aa * aa)


class _EigenCache:
    """What EK-FAC's eigenvalue pass reads from each chunk, kept from the factor pass when it
    fits ``budget`` bytes, so that the second pass over the data (forward, backward, unfolding
    and, for the sampled GGN, hashing the rows again) becomes matrix products.

    Per chunk and layer: for one position per sample (Linear) the inputs ``a`` ``(N, n_in)``
    and each row kind's output gradients ``(N, K)`` (the per-sample gradient is their outer
    product: its rotated square is ``(QG^T g)**2 (x) (QA^T a)**2``, summed over the samples
    by one product, :func:`_linear_terms`); for several positions (Conv2d) each row kind's
    per-sample gradients ``(N, K, p)`` (:func:`_sample_grads`, the product the second pass
    would form).  When the kept terms would exceed ``budget`` (known after the first chunk
    when ``n`` is given, else when reached) everything is dropped (``entries = None``) and
    the caller makes the second pass over the data."""

    def __init__(self, budget: int, n: int | None = None):
        self.budget, self.n = int(budget), n
        self.nbytes, self.samples, self.entries = 0, 0, []

    def _add(self, t):
        self.nbytes += t.numel() * t.element_size()
        if self.nbytes > self.budget:
            self.entries = None  # over budget: drop everything kept

    def record(self, layers, inputs, grads_rows):
        """Pass ``grads_rows`` (one chunk's) through, keeping its terms (unless dropped)."""
        if self.entries is None:
            yield from grads_rows
            return
        lin = [a.shape[1] == 1 for a in inputs]
        kept = [[] for _ in layers]
        for j, a in enumerate(inputs):
            if lin[j]:
                self._add(a[:, 0])
        for grads in grads_rows:
            for j, (layer, a, g) in enumerate(zip(layers, inputs, grads)):
                if self.entries is not None:
                    kept[j].append(g[:, 0] if lin[j] else _sample_grads(g, a, layer.p))
                    self._add(kept[j][-1])
            yield grads
        if self.entries is None:
            return
        self.entries.append([(a[:, 0] if f else None, k) for a, f, k in zip(inputs, lin, kept)])
        self.samples += inputs[0].shape[0]
        if self.n and self.samples and len(self.entries) == 1 and \
                self.nbytes / self.samples * self.n > self.budget:
            self.entries = None  # the whole data would not fit: do not keep collecting

    def eigen_terms(self, bases):
        """Per layer the eigenvalue terms of every kept chunk (as :func:`_eigen_terms`)."""
        outs = [torch.zeros((QG.shape[0], QA.shape[0]), dtype=QG.dtype, device=QG.device)
                for QG, QA in bases]
        for entry in self.entries:
            for out, (QG, QA), (a, kept) in zip(outs, bases, entry):
                if a is None:
                    for P in kept:
                        out += _rotated_squares(QG, QA, P)
                    continue
                sq = None
                for g in kept:
                    ga2 = (g @ QG) ** 2
                    sq = ga2 if sq is None else sq.add_(ga2)
                out += _linear_terms(QA, a, sq)
        return outs


def _eig(M):
    """Eigendecomposition of the symmetric part of ``M``; where the solver does not converge in
    float32 (rank-deficient factors with many repeated zero eigenvalues, e.g. constant pixels)
    it is redone in float64 and cast back."""
    M = 0.5 * (M + M.T)
    try:
        return torch.linalg.eigh(M)
    except torch.linalg.LinAlgError:
        if M.dtype == torch.float64:
            raise
        e, Q = torch.linalg.eigh(M.double())
        return e.to(M.dtype), Q.to(M.dtype)


def _damping_layout(lam: torch.Tensor, lay) -> torch.Tensor:
    K, n_in, w, b = lay
    parts = []
    if w is not None:
        parts.append(lam[w:w + K * n_in].reshape(K, n_in))
    if b is not None:
        parts.append(lam[b:b + K].reshape(K, 1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _damp_terms(QG, QA, Lam):
    return (QG * QG).T @ Lam @ (QA * QA)


def _kfac_operator(layouts, factors, n, dim, scales=None):
    """K-FAC operator from sum-form factors ``(G, A, Lambda)`` per layer.  With ``scales``
    (per layer, the largest diagonal entries of the factors before a downdate) an eigenvalue
    below ``-tol * scale`` means the factors are indefinite: ``ValueError``."""
    ops = []
    for i, (G, A, Lam) in enumerate(factors):
        eG, QG = _eig(G)
        eA, QA = _eig(A)
        if scales is not None:
            tol = _NEG_TOL * torch.finfo(G.dtype).eps
            for e, scale in zip((eG, eA), scales[i]):
                if bool(e[0] < -tol * math.sqrt(e.shape[0]) * scale):
                    raise ValueError(_INDEFINITE)
        s_data = torch.outer(eG.clamp(min=0), eA.clamp(min=0)) / n
        ops.append(KroneckerEigen(QG, QA, s_data, _damp_terms(QG, QA, Lam), n))
    _check_positive(ops)
    return KroneckerNet(layouts, ops, n, dim, factors)


def _check_positive(ops):
    for op in ops:
        if not bool(torch.all(op.eigenvalues > 0)):
            raise ValueError("the damped curvature is not positive definite; increase damping")


def _resolve(backend, config):
    dtype = _FACTOR_DTYPES.get(config.get("factor_dtype"), "bad") \
        if not isinstance(config.get("factor_dtype"), torch.dtype) else config["factor_dtype"]
    if dtype == "bad":
        raise ValueError(f"factor_dtype must be None, 'float32' or 'float64', got "
                         f"{config.get('factor_dtype')!r}")
    mode = config.get("kfac_ggn") or GGN_MODE_DEFAULT
    if mode not in _GGN_MODES:
        raise ValueError(f"kfac_ggn must be one of {_GGN_MODES}, got {mode!r}")
    return (dtype or backend.dtype), mode


def _chunk_size(config):
    return int(config.get("chunk_size") or 512)


# ---------------------------------------------------------------- what the kinds (_kfac.py) call

def kronecker_unsupported(name: str, backend, config) -> str | None:
    """``None`` when usable for ``backend`` and ``config``, else a one-line reason."""
    if not hasattr(backend, "_module") or not hasattr(backend, "_named_selected"):
        return (f"inverse={name!r} for nets needs the torch backend; "
                f"{type(backend).__name__} is not one")
    if int(config.get("fisher_batch_size", 1) or 1) > 1:
        return (f"inverse={name!r} needs fisher_batch_size=1 (its factors sum every "
                "sample's own terms)")
    if config.get("fisher_max_samples") is not None:
        return (f"inverse={name!r} uses every sample (its factors cost one forward and "
                "backward pass); fisher_max_samples does not apply")
    if config.get("curvature") not in ("empirical_fisher", "ggn"):
        return f"unknown curvature {config.get('curvature')!r}"
    try:
        _resolve(backend, config)
    except ValueError as exc:
        return str(exc)
    return _unsupported_layers(backend)


def _check(name, backend, config):
    reason = kronecker_unsupported(name, backend, config)
    if reason is not None:
        raise ValueError(reason)


def kronecker_memory(name: str, refit: bool, backend, config) -> int:
    """Peak bytes, from the layer shapes only: per layer the factors, their eigenvectors
    and the eigensolver's workspace (``3 (K^2 + p^2)``, plus the stored factors for K-FAC),
    the ``K x p`` eigenvalues, and one chunk's inputs and output gradients at ``T``
    positions per sample (known from ``config["input_shape"]`` through a meta-device
    forward pass; without it a Conv2d layer is counted at one position, an underestimate).
    The net's own activations are not counted, nor EK-FAC's kept per-sample terms: those are
    kept only within a share of what the budget leaves over this estimate
    (:func:`_cache_budget`)."""
    _check(name, backend, config)
    dtype, mode = _resolve(backend, config)
    item = torch.empty((), dtype=dtype).element_size()
    c = _chunk_size(config)
    total = 0
    for layer, T in zip(_collect(backend), _positions_per_layer(backend, config)):
        K, p = layer.K, layer.p
        fixed = 3 * (K * K + p * p) + 3 * K * p
        if not refit:
            fixed += K * K + p * p
        chunk = c * T * (p + 2 * K)
        if refit and T > 1:
            chunk += min(c, max(1, _SUBBATCH_NUMBERS // (K * p))) * K * p * 2
        total += fixed + chunk
    return int(total * item)


def _cache_budget(name, refit, backend, config) -> int:
    """Bytes EK-FAC may keep between its passes (:class:`_EigenCache`): a share
    (:data:`_CACHE_SHARE`) of what ``config["memory_budget"]`` leaves after the build's own
    estimate (:func:`kronecker_memory`), so the peak stays within the budget."""
    from ._registry import DEFAULT_MEMORY_BUDGET, parse_bytes

    budget = parse_bytes(config.get("memory_budget") or DEFAULT_MEMORY_BUDGET)
    return max(0, int(_CACHE_SHARE * (budget - kronecker_memory(name, refit, backend, config))))


def build_kronecker(name: str, refit: bool, backend, chunks, config, damping, rng,
                    n_known: int | None = None) -> dict:
    """Accumulate the factors over ``chunks`` and return the state.

    EK-FAC needs the factors' eigenbasis before its eigenvalues: what its eigenvalue pass
    reads (per-sample inputs and output gradients of the Linear layers, per-sample gradients
    of the Conv2d layers) is kept from the factor pass when it fits a share of
    ``config["memory_budget"]`` (:func:`_cache_budget`), so the eigenvalues are products in
    the basis; otherwise a second pass over the data computes the same terms (the sampled GGN
    labels of the first pass are reused, not drawn again).

    Parameters
    ----------
    backend : TorchBackend
        At the fitted parameters.
    chunks : iterable of (X, y)
        Validated training chunks; a one-shot generator is held in memory when two passes
        are needed.
    config : dict
        ``curvature``, ``chunk_size``, ``fisher_batch_size``, optional ``factor_dtype`` and
        ``kfac_ggn`` (``"exact"`` or ``"sampled"``).
    damping : callable
        ``damping(n) -> Tensor (n_params,)``, mean form.
    rng : numpy.random.RandomState
        Source of the GGN label salt (``kfac_ggn="sampled"`` only).
    n_known : int, optional
        Number of samples when known in advance: EK-FAC then decides after the first chunk
        whether its terms can be kept.

    Returns
    -------
    dict
        ``curvature``, ``damping``, ``n``, ``n_curvature_samples``, ``sample`` (``None``)
        and ``label_salt``.
    """
    _check(name, backend, config)
    dtype, mode = _resolve(backend, config)
    curvature = config["curvature"]
    salt = rng.bytes(16) if curvature == "ggn" and mode == "sampled" else None
    layers = _collect(backend)
    device, c = backend.device, _chunk_size(config)
    if refit and iter(chunks) is chunks:
        chunks = list(rebuffer(chunks, c))
    G = [torch.zeros((la.K, la.K), dtype=dtype, device=device) for la in layers]
    A = [torch.zeros((la.p, la.p), dtype=dtype, device=device) for la in layers]
    n = 0
    labels = [] if refit else None  # sampled GGN labels, drawn once for both passes
    cache = _EigenCache(_cache_budget(name, refit, backend, config), n_known) if refit else None
    for N, inputs, rows in _passes(backend, layers, chunks, curvature, mode, salt, c, dtype,
                                   labels):
        n += N
        if cache is not None:
            rows = cache.record(layers, inputs, rows)
        Gc, Ac = _factor_terms(layers, inputs, rows, dtype, device)
        for acc, part in zip(G + A, Gc + Ac):
            acc.add_(part)
    if n == 0:
        raise ValueError("the training data is empty")
    lam = damping(n)
    layouts = [la.layout for la in layers]
    Lams = [n * _damping_layout(lam.to(device=device, dtype=dtype), lay) for lay in layouts]
    if not refit:
        op = _kfac_operator(layouts, list(zip(G, A, Lams)), n, backend.n_params)
    else:
        bases = [(_eig(Gl)[1], _eig(Al)[1]) for Gl, Al in zip(G, A)]
        del G, A
        if cache.entries is not None:  # the kept terms: products only
            s = cache.eigen_terms(bases)
        else:  # a second pass over the data
            s = [torch.zeros((la.K, la.p), dtype=dtype, device=device) for la in layers]
            for _, inputs, rows in _passes(backend, layers, chunks, curvature, mode, salt, c,
                                           dtype, labels):
                for sl, part in zip(s, _eigen_terms(bases, inputs, rows)):
                    sl.add_(part)
        del cache
        ops = [KroneckerEigen(QG, QA, sl, _damp_terms(QG, QA, Lam), n)
               for (QG, QA), sl, Lam in zip(bases, s, Lams)]
        _check_positive(ops)
        op = KroneckerNet(layouts, ops, n, backend.n_params)
    return {"curvature": op, "damping": lam, "n": n, "n_curvature_samples": n,
            "sample": None, "label_salt": salt}


def downdate_kronecker(name: str, refit: bool, op, state, backend, X, y, config) -> tuple:
    """The operator without the terms of the ``k`` samples ``(X, y)``, over ``n - k``.

    Called with the backend at the parameters the operator was built at.  K-FAC subtracts
    their factor terms and re-factors; EK-FAC subtracts their eigenvalue terms in its basis.
    When ``state["gradient_sink"]`` is a dict (and the operator is in the backend's dtype),
    the same passes leave there the summed gradient of ``(X, y)`` (``"g"``) and their class
    probabilities (``"proba"``): see :func:`_gradient_into`.

    Raises
    ------
    ValueError
        If the result is indefinite (the rows were not part of the curvature); ``op`` is
        unchanged.
    """
    if not isinstance(op, KroneckerNet):
        raise TypeError(f"{name}.downdate needs a KroneckerNet operator, got "
                        f"{type(op).__name__}")
    if refit == (op.factors is not None):
        raise TypeError(f"{name}.downdate got an operator of the other kind")
    dtype, device = op.dtype, op.device
    curvature, salt = config["curvature"], (state or {}).get("label_salt")
    # the GGN rows are those of the build: sampled exactly when it drew a label salt
    mode = "sampled" if salt is not None else "exact"
    asked = config.get("kfac_ggn")
    if curvature == "ggn" and asked is not None and asked != mode:
        raise ValueError(f"kfac_ggn={asked!r} but the operator was built with "
                         f"{mode!r} GGN rows (label salt {'present' if salt else 'absent'})")
    layers = _collect(backend)
    if [la.layout for la in layers] != op.layouts:
        raise ValueError("the net's selected layers differ from the operator's")
    k = len(X)
    c = _chunk_size(config)
    # the caller may ask for the forget set's gradient from the same passes (state's
    # "gradient_sink", when the net is at the parameters the operator was built at): given in
    # the backend's dtype only, so that it is the gradient forget would otherwise compute
    sink = (state or {}).get("gradient_sink") if dtype == backend.dtype else None
    passes = _passes(backend, layers, [(X, y)], curvature, mode, salt, c, dtype, sink=sink)
    eps = _NEG_TOL * torch.finfo(dtype).eps
    if not refit:
        G = [f[0].clone() for f in op.factors]
        A = [f[1].clone() for f in op.factors]
        for _, inputs, rows in passes:
            Gc, Ac = _factor_terms(layers, inputs, rows, dtype, device)
            for acc, part in zip(G + A, Gc + Ac):
                acc.sub_(part)
        factors = [(Gl, Al, f[2]) for Gl, Al, f in zip(G, A, op.factors)]
        scales = [(float(f[0].diagonal().max()), float(f[1].diagonal().max()))
                  for f in op.factors]
        return _kfac_operator(op.layouts, factors, op.n - k, op.dim, scales), None
    terms = [torch.zeros_like(o.s_data) for o in op.ops]
    bases = [(o.QG, o.QA) for o in op.ops]
    for _, inputs, rows in passes:
        for t, part in zip(terms, _eigen_terms(bases, inputs, rows)):
            t.add_(part)
    new = []
    for o, t in zip(op.ops, terms):
        s = o.s_data - t
        if bool((s < -eps * o.s_data.abs().max()).any()):
            raise ValueError(_INDEFINITE)
        new.append(KroneckerEigen(o.QG, o.QA, s.clamp(min=0), o.s_damp, op.n - k))
    return KroneckerNet(op.layouts, new, op.n - k, op.dim), None


def _positions_per_layer(backend, config) -> list[int]:
    """Positions ``T`` per layer: 1 for a Linear layer on 2-d inputs; with
    ``config["input_shape"]`` (one sample's shape) the shapes come from a forward pass on the
    meta device (no memory, no data); otherwise a Conv2d layer counts as 1 position."""
    layers = _collect(backend)
    shape = config.get("input_shape")
    if shape is None:
        return [1 for _ in layers]
    module = backend._module
    meta = {n: torch.empty_like(t, device="meta")
            for n, t in list(module.named_parameters()) + list(module.named_buffers())}
    seen: dict[str, int] = {}

    def hook(mod, inp, out, layer):
        seen.setdefault(layer.path, _positions(layer, inp[0]))  # returns None: output kept

    handles = [layer.module.register_forward_hook(functools.partial(hook, layer=layer))
               for layer in layers]
    try:
        x = torch.empty((1,) + tuple(shape), device="meta", dtype=backend.dtype)
        functional_call(module, meta, (x,))
    except Exception:  # noqa: BLE001 - a module the meta device cannot run: fall back
        seen = {}
    finally:
        for h in handles:
            h.remove()
    return [seen.get(layer.path, 1) for layer in layers]
