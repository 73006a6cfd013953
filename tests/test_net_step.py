"""The SSSE step of nets, every inverse kind, against brute force (issue 12, item 4).

On Fashion-MNIST class removal the K-FAC and block steps at ``epsilon = 1`` move the net towards
the removed class (``benchmarks/results/nets.md``). These tests rule out a sign, layout or scaling
error in the direction itself: for an MLP and a small CNN on digits (float64), the direction that
:meth:`~sklearn_ssse.UnlearnableClassifier.forget_direction` returns equals ``F^{-1} g_S / (n - k)``
built by hand from the kind's own curvature matrix and per-sample autograd gradients, the
matrices of the kinds built from exact GGN rows equal the brute-force GGN, and the forget-set loss
rises along the direction to first order. (What turns the step around at large epsilon is the
interaction of the layers' changes: ``benchmarks/bench_net_line.py``.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

pytest.importorskip("skorch")

from _nets import digits_net, digits_split  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse._curvature._operators import BlockDiagonal, ExplicitInverse  # noqa: E402

KINDS = ["dense", "block", "woodbury", "sherman_morrison", "kfac", "ekfac"]
#: kinds whose matrix is the exact damped GGN (block: its block-diagonal part)
EXACT_ROWS = ("dense", "block", "sherman_morrison")
FORGET_CLASS = 3


pytestmark = pytest.mark.usefixtures("torch_single_thread")


class SmallCNN(nn.Module):
    """conv 3x3 (1->3, padded) - conv 3x3 stride 2 (3->4) - linear 36->10, ReLU, on 8x8."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(36, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x.reshape(-1, 1, 8, 8)))
        return self.fc(torch.relu(self.conv2(h)).flatten(1))


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def fitted(request):
    X, _, y, _ = digits_split()
    X, y = X[:240], y[:240]
    torch.manual_seed(0)
    kw = {"module__hidden": 12} if request.param == "mlp" else {"module": SmallCNN}
    return digits_net(max_epochs=8, **kw).fit(X, y), X, y


def _estimator(net, X, y, kind, step):
    extra = {"block_size": 100} if kind == "block" else {}
    return UnlearnableClassifier.from_fitted(net, X, y, inverse=kind, step=step,
                                             dtype="float64", random_state=0, **extra)


class Brute:
    """The net in float64 as a function of a flat vector laid out as ``named_parameters``."""

    def __init__(self, est):
        self.module = copy.deepcopy(est.estimator_.module_).double()
        named = [(n, p) for n, p in self.module.named_parameters()]
        assert [n for n, _ in named] == list(est.backend_.param_names_)
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named])
        # the estimator's flat layout is this one
        assert torch.equal(self.theta, torch.as_tensor(est.get_parameters()))

    def params(self, theta):
        return dict(zip(self.names, (t.view(s) for t, s in
                                     zip(torch.split(theta, self.sizes), self.shapes))))

    def logits(self, theta, X):
        return functional_call(self.module, self.params(theta),
                               (torch.as_tensor(X, dtype=torch.float64),))

    def loss_sum(self, theta, X, y):
        return float(nn.functional.cross_entropy(self.logits(theta, X), torch.as_tensor(y),
                                                 reduction="sum"))

    def gradient_sum(self, X, y):
        """Sum of per-sample autograd gradients, one backward pass per sample."""
        g = torch.zeros_like(self.theta)
        for x, t in zip(X, y):
            th = self.theta.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(self.logits(th, x[None]), torch.as_tensor([t]))
            g += torch.autograd.grad(loss, th)[0]
        return g

    def ggn_sum(self, X):
        """``sum_i J_i^T (diag p_i - p_i p_i^T) J_i`` from explicit Jacobians."""
        M = torch.zeros(len(self.theta), len(self.theta), dtype=torch.float64)
        for x in X:
            J = jacrev(lambda th, x=x: self.logits(th, x[None])[0])(self.theta)
            p = torch.softmax(self.logits(self.theta, x[None])[0], 0).detach()
            M += J.T @ (torch.diag(p) - torch.outer(p, p)) @ J
        return M


def _own(op):
    """``(M, M_inv)``: the kind's own sum-form matrix, or for the operators that keep only an
    inverse (Sherman-Morrison's explicit inverse; the Woodbury form, which keeps no rows) that
    inverse; the other is ``None``."""
    if isinstance(op, ExplicitInverse):
        return None, op.M_inv
    if isinstance(op, BlockDiagonal):
        assert [s.start for s in op.slices] == [0] + [s.stop for s in op.slices[:-1]]
        return torch.block_diag(*[_own(o)[0] for o in op.ops]), None
    try:
        return op.matrix(), None
    except NotImplementedError:
        return None, op.inverse() / op.n


def _solve(op, g):
    M, M_inv = _own(op)
    return M_inv @ g if M is None else torch.linalg.solve(M, g)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("step", ["leave_out", "full"])
@pytest.mark.parametrize("kind", KINDS)
def test_direction_is_the_kinds_own_solve_of_the_summed_gradients(fitted, kind, step):
    net, X, y = fitted
    est = _estimator(net, X, y, kind, step)
    S = y == FORGET_CLASS
    n, k = est.n_samples_, int(S.sum())
    brute = Brute(est)
    g = brute.gradient_sum(X[S], y[S])
    d = torch.as_tensor(est.forget_direction(X[S], y[S]))
    assert d.dtype == torch.float64
    M_fit = _own(est.curvature_)
    if step == "full":
        expected = n * _solve(est.curvature_, g) / (n - k)
    else:
        # the curvature of the rows that remain: what forget leaves in curvature_
        # (update_curvature, at the parameters of the fit; epsilon=0 keeps them)
        est.forget(X[S], y[S], epsilon=0.0)
        assert est.n_samples_ == n - k
        expected = _solve(est.curvature_, g)
    assert _rel(d, expected) < 1e-8
    if kind in EXACT_ROWS:
        # the matrix itself, by brute force: n lambda + the GGN (block: its diagonal blocks);
        # leave-out: without the forgotten rows' terms, the damping's sum form unchanged
        lam = torch.as_tensor(est.damping_, dtype=torch.float64)
        expected_M = brute.ggn_sum(X) + torch.diag(n * lam)
        if step == "leave_out":
            expected_M -= brute.ggn_sum(X[S])
        if kind == "block":
            mask = torch.block_diag(*[torch.ones(s.stop - s.start, s.stop - s.start)
                                      for s in est.curvature_.slices]).bool()
            assert len(est.curvature_.slices) > 1
            expected_M = torch.where(mask, expected_M, 0.0)
        M, M_inv = _own(est.curvature_)
        if M is None:
            assert _rel(M_inv @ expected_M, torch.eye(len(g), dtype=torch.float64)) < 1e-8
        else:
            assert _rel(M, expected_M) < 1e-10
    elif step == "leave_out" and kind in ("kfac", "ekfac"):
        # the leave-out curvature is a new Kronecker operator, not the fit's
        assert _rel(_own(est.curvature_)[0], M_fit[0]) > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_forget_set_loss_rises_along_the_direction(fitted, kind):
    """``(L_S(theta + t d) - L_S(theta)) / t -> g_S^T d > 0``: to first order every kind's step
    raises the forget set's loss (a positive definite preconditioner), so a step that lowers it
    is a large-step effect, not a wrong direction."""
    net, X, y = fitted
    est = _estimator(net, X, y, kind, "auto")
    S = y == FORGET_CLASS
    brute = Brute(est)
    d = torch.as_tensor(est.forget_direction(X[S], y[S]))
    slope = float(brute.gradient_sum(X[S], y[S]) @ d)
    assert slope > 0
    L0 = brute.loss_sum(brute.theta, X[S], y[S])
    quotients = [(brute.loss_sum(brute.theta + t * d, X[S], y[S]) - L0) / t
                 for t in (1e-3, 1e-4, 1e-5)]
    assert all(q > 0 for q in quotients)
    errors = [abs(q - slope) for q in quotients]
    assert errors[-1] < 1e-3 * slope            # one-sided difference: error O(t)
    assert errors[-1] < errors[0]               # and it shrinks with t
    central = (brute.loss_sum(brute.theta + 1e-5 * d, X[S], y[S])
               - brute.loss_sum(brute.theta - 1e-5 * d, X[S], y[S])) / 2e-5
    assert abs(central - slope) < 1e-6 * slope
