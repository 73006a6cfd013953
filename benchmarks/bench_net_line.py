"""The SSSE step of a net along its line: why single-class removal overshoots (issue 12, item 4).

``benchmarks/bench_nets.py`` found that on Fashion-MNIST class removal the K-FAC and block
steps at ``epsilon = 1`` make the net predict the *removed* class (forget-set accuracy 0.85 ->
0.99) although, to first order, the step ``d = F_R^{-1} g_S`` (``g_S`` the summed loss gradient
of the forgotten rows, ``F_R`` the kind's curvature of the rows that remain) can only raise the
forget-set loss. This script trains the same net (same data, seeds and optimizer as
``bench_nets.py``), takes the library's direction ``d`` (``forget_direction``: ``forget(X_S,
y_S, epsilon)`` moves the parameters to ``theta + epsilon * d``) for each ``--inverses`` kind
and prints, in float64:

* along ``epsilon`` in ``--grid``: the forget-set mean loss and accuracy, the accuracy on the
  test images of the other classes and of the removed class, and the remaining objective
  ``R(theta) = sum_{i not in S} l_i + (n - k) lambda / 2 ||theta||^2`` (``lambda`` the weight
  decay: the objective the retrained net minimises, in sum form) relative to ``theta*``;
* the first-order check: the forget-set loss slope ``(L_S(theta + t d) - L_S(theta)) / t`` at
  ``t = 1e-4`` against ``g_S^T d`` (> 0 for any positive definite ``F_R``);
* the curvature along ``d``, three ways: what the kind's own ``F_R`` says (``d^T M_R d = g_S^T
  d``, ``M_R`` its sum form), the exact GGN of the remaining rows restricted to each layer's
  block (``sum_b d_b^T GGN_bb d_b``, the block-diagonal part: what a per-layer approximation
  can at best capture) and the full GGN (``d^T GGN d``, cross-layer terms included), each plus
  the damping; the slope of ``R`` along ``d`` (``grad R^T d``; ``-g_S^T d`` at an exact
  minimum of the full objective) and the epsilon that minimises ``R``'s quadratic model along
  ``d`` with the exact GGN: ``t* = -grad R^T d / (d^T (GGN + (n - k) lambda) d)``.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_net_line.py --inverses kfac block
    OMP_NUM_THREADS=1 python benchmarks/bench_net_line.py --extra-epochs 45   # closer to a minimum
    OMP_NUM_THREADS=1 python benchmarks/bench_net_line.py --lbfgs 200         # full-batch L-BFGS

Data: as ``bench_nets.py`` (Fashion-MNIST IDX files; skipped without them).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nets as bn  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse.datasets import load_fashion_mnist  # noqa: E402


def _load(args):
    X, y = load_fashion_mnist(args.data, kind="train")
    X_test, y_test = load_fashion_mnist(args.data, kind="test")
    rng = np.random.default_rng(args.seed)          # exactly as bench_nets.main
    perm = rng.permutation(len(X))
    tr = perm[:args.n_train]
    X, y = X[tr].astype(np.float32), y[tr].astype(np.int64)
    te = rng.permutation(len(X_test))[:args.n_test]
    return X, y, X_test[te].astype(np.float32), y_test[te].astype(np.int64)


def _lbfgs(net, X, y, steps, wd):
    """Full-batch L-BFGS on the mean loss + wd/2 ||theta||^2 (the objective of Adam's coupled
    weight decay), from the trained parameters."""
    module = net.module_
    xb, yb = torch.as_tensor(X), torch.as_tensor(y)
    opt = torch.optim.LBFGS(module.parameters(), lr=1, max_iter=steps, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(xb), yb)
        loss = loss + 0.5 * wd * sum((p ** 2).sum() for p in module.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    module.eval()


class Line:
    """The net in float64 as a function of its flat parameters (the backend's layout)."""

    def __init__(self, clf, theta):
        self.module = copy.deepcopy(clf.estimator_.module_).double().eval()
        be = clf.backend_
        self.names, self.shapes, self.slices = be.param_names_, be.param_shapes_, be._slices
        self.theta = torch.as_tensor(theta, dtype=torch.float64)
        # layer blocks: the parameter tensors of one module (weight + bias)
        owners = [n.rsplit(".", 1)[0] for n in self.names]
        self.blocks = {o: [s for s, n in zip(self.slices, owners) if n == o]
                       for o in dict.fromkeys(owners)}

    def params(self, theta):
        return {n: theta[s].view(sh) for n, s, sh in zip(self.names, self.slices, self.shapes)}

    def logits(self, theta, X):
        with torch.no_grad():
            return functional_call(self.module, self.params(theta), (torch.as_tensor(X).double(),))

    def loss_sum(self, theta, X, y):
        return float(nn.functional.cross_entropy(self.logits(theta, X), torch.as_tensor(y),
                                                 reduction="sum"))

    def grad_sum(self, theta, X, y):
        t = theta.clone().requires_grad_(True)
        out = functional_call(self.module, self.params(t), (torch.as_tensor(X).double(),))
        nn.functional.cross_entropy(out, torch.as_tensor(y), reduction="sum").backward()
        return t.grad.detach()

    def ggn_quad(self, X, v, chunk=2048):
        """``v^T GGN v`` (sum over the rows of ``X``): ``||J_i v||^2`` in the softmax metric."""
        total = 0.0
        for a in range(0, len(X), chunk):
            x = torch.as_tensor(X[a:a + chunk]).double()
            z, u = jvp(lambda t, x=x: functional_call(self.module, self.params(t), (x,)),
                       (self.theta,), (v,))
            p = torch.softmax(z, dim=1)
            total += float(((p * u * u).sum(1) - (p * u).sum(1) ** 2).sum())
        return total

    def linearised_loss_sum(self, X, y, v, t):
        """Summed loss of the net linearised at ``theta`` (logits ``z + t J v``)."""
        x = torch.as_tensor(X).double()
        z, u = jvp(lambda p: functional_call(self.module, self.params(p), (x,)),
                   (self.theta,), (v,))
        return float(nn.functional.cross_entropy(z + t * u, torch.as_tensor(y), reduction="sum"))

    def restricted(self, v, block):
        out = torch.zeros_like(v)
        for s in self.blocks[block]:
            out[s] = v[s]
        return out


def analyse(inv, clf, X, y, S, keep, X_test, y_test, removed, args):
    theta = clf.get_parameters()
    t0 = time.perf_counter()
    d = clf.forget_direction(X[S], y[S])
    t_dir = time.perf_counter() - t0
    d = torch.as_tensor(d.detach().cpu().numpy() if hasattr(d, "detach") else d,
                        dtype=torch.float64)
    line = Line(clf, theta)
    th = line.theta
    lam = args.weight_decay
    n_keep, k = len(keep), len(S)
    XS, yS, XR, yR = X[S], y[S], X[keep], y[keep]
    other = y_test != removed

    def R(t):      # remaining objective (sum form), the retrained net's objective
        p = th + t * d
        return line.loss_sum(p, XR, yR) + 0.5 * n_keep * lam * float(p @ p)

    gS = line.grad_sum(th, XS, yS)
    gR = line.grad_sum(th, XR, yR) + n_keep * lam * th
    gD = gR + gS + k * lam * th      # full objective's gradient (sum form)
    slope_pred = float(gS @ d)
    h = 1e-4
    slope_fd = (line.loss_sum(th + h * d, XS, yS) - line.loss_sum(th, XS, yS)) / h
    q_full = line.ggn_quad(XR, d)
    q_blocks = {b: line.ggn_quad(XR, line.restricted(d, b)) for b in line.blocks}
    damp = n_keep * lam * float(d @ d)
    gRd = float(gR @ d)
    t_star = -gRd / (q_full + damp)
    print(f"\n### {inv}: ||d|| = {float(d.norm()):.3g} (||theta|| = {float(th.norm()):.3g}); "
          f"direction {t_dir:.2f} s")
    print(f"- first order: forget-set loss slope at t={h:g}: {slope_fd:.6g} (finite "
          f"difference) vs g_S^T d = {slope_pred:.6g} (sum over the {k} rows)")
    print(f"- full-objective gradient at theta*: ||grad L_D|| = {float(gD.norm()):.3g} vs "
          f"||g_S|| = {float(gS.norm()):.3g}; slope of R along d: grad R^T d = {gRd:.4g} "
          f"(exact minimum: -g_S^T d = {-slope_pred:.4g})")
    blk = sum(q_blocks.values())
    print(f"- curvature along d (sum form, + damping {damp:.4g}): the kind's own d^T M_R d = "
          f"g_S^T d = {slope_pred:.4g}; exact GGN, per-layer blocks only "
          f"{blk + damp:.4g} ({', '.join(f'{b} {q:.4g}' for b, q in q_blocks.items())}); "
          f"exact GGN with the cross-layer terms {q_full + damp:.4g} (cross terms "
          f"{q_full - blk:+.4g})")
    print(f"- ratio exact / kind: {(q_full + damp) / slope_pred:.3g}; minimiser of R's quadratic "
          f"model (exact GGN) along d: epsilon* = {t_star:.3g}")
    rows = []
    R0 = R(0.0)
    for t in args.grid:
        p = th + t * d
        zS = line.logits(p, XS)
        zT = line.logits(p, X_test)
        pred = zT.argmax(1).numpy()
        rows.append((t, line.loss_sum(p, XS, yS) / k, float((zS.argmax(1).numpy() == yS).mean()),
                     float(np.mean(pred[other] == y_test[other])),
                     float(np.mean(pred[~other] == y_test[~other])),
                     float(np.mean(zS.argmax(1).numpy() == removed)),
                     (R(t) - R0) / n_keep,
                     (slope_pred * t + 0.0) / k))
    parts = {b: line.restricted(d, b) for b in line.blocks}
    print("\nForget set along epsilon: the whole step, the net linearised at theta* (no "
          "curvature of the logits), and each layer's part of d alone (loss / accuracy):\n")
    print("| epsilon | whole d | linearised net | " + " | ".join(f"{b} part only" for b in parts)
          + " |")
    print("| --- | --- | --- |" + " --- |" * len(parts))
    for t, lS, aS, *_ in rows:
        cells = [f"{t:g}", f"{lS:.3f} / {aS:.3f}",
                 f"{line.linearised_loss_sum(XS, yS, d, t) / k:.3f}"]
        for v in parts.values():
            z = line.logits(th + t * v, XS)
            cells.append(f"{line.loss_sum(th + t * v, XS, yS) / k:.3f} / "
                         f"{float((z.argmax(1).numpy() == yS).mean()):.3f}")
        print("| " + " | ".join(cells) + " |")
    print("\n| epsilon | forget loss | forget acc | other-class test acc | removed-class test acc "
          "| (R - R*) / (n-k) | first-order forget loss rise |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    L0 = rows[0][1]
    for t, lS, aS, aT, aR, _, dR, lin in rows:
        print(f"| {t:g} | {lS:.4f} | {aS:.3f} | {aT:.3f} | {aR:.3f} | {dR:+.4f} | "
              f"{L0 + lin:.4f} |")
    return {"inv": inv, "t_star": t_star, "ratio": (q_full + damp) / slope_pred, "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", "--data", dest="data", default=None)
    p.add_argument("--net", default="mlp", choices=list(bn.NETS))
    p.add_argument("--inverses", nargs="+", default=["kfac", "block"])
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=None, help="default: bench_nets' (5 / 3)")
    p.add_argument("--extra-epochs", type=int, default=0,
                   help="more Adam epochs at lr/10 after the usual training")
    p.add_argument("--lbfgs", type=int, default=0,
                   help="full-batch L-BFGS iterations after the usual training")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--forget-class", type=int, default=0)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--block-m", type=int, default=512)
    p.add_argument("--woodbury-m", type=int, default=1024)
    p.add_argument("--dense-m", type=int, default=2048)
    p.add_argument("--grid", type=float, nargs="+",
                   default=[0, 0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="small sizes (under a minute): 2,000 images, 5 epsilons")
    args = p.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.block_m = 2000, 1000, 64
        args.grid = [0, 0.03, 0.1, 0.3, 1.0]
    torch.set_num_threads(1)
    try:
        X, y, X_test, y_test = _load(args)
    except FileNotFoundError as exc:
        print(f"_skipped: this benchmark needs Fashion-MNIST: {exc}._")
        return None
    ep = {"mlp": 5, "cnn": 3}
    lr = {"mlp": 1e-3, "cnn": 3e-3}
    ns = argparse.Namespace(lr=lr, epochs={args.net: args.epochs or ep[args.net]},
                            weight_decay=args.weight_decay, device="cpu",
                            woodbury_leave_out=False, woodbury_m=args.woodbury_m,
                            block_size=args.block_size, block_m=args.block_m,
                            dense_m=args.dense_m)
    torch.manual_seed(args.seed)
    net = bn.make_net(args.net, ns).fit(X, y)
    if args.extra_epochs:
        net.set_params(lr=lr[args.net] / 10)
        net.partial_fit(X, y, epochs=args.extra_epochs)
    if args.lbfgs:
        _lbfgs(net, X, y, args.lbfgs, args.weight_decay)
    S = np.flatnonzero(y == args.forget_class)
    keep = np.setdiff1d(np.arange(len(X)), S)
    print(f"{args.net}: {args.n_train} images, class {args.forget_class} removed (k={len(S)}); "
          f"epochs {ns.epochs[args.net]} + {args.extra_epochs} at lr/10, L-BFGS {args.lbfgs}; "
          f"train acc {net.score(X, y):.3f}")
    out = []
    for inv in args.inverses:
        clf = UnlearnableClassifier.from_fitted(net, X, y, random_state=args.seed,
                                                memory_budget="6GiB", **bn.ssse_params(inv, ns))
        out.append(analyse(inv, clf, X, y, S, keep, X_test, y_test, args.forget_class, args))
        del clf
    return out


if __name__ == "__main__":
    main()
