"""Fashion-MNIST benchmark of the torch backend (issue 4): an MLP 784-128-10 (101,770 parameters).

Prints a markdown table: curvature build time and memory per inverse choice, forget latency for
k = 1 / 60 / 600 samples, and the time to retrain the net from scratch.  Run::

    python benchmarks/bench_torch_fmnist.py --threads 1     # ~3 minutes, ~9.5 GB peak RSS
    python benchmarks/bench_torch_fmnist.py --n-train 60000 --epochs 5 --woodbury-m 1024 4096

Data: the IDX ``.gz`` files of the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``; ``--data-dir`` or ``SKLEARN_SSSE_FASHION_MNIST`` to
change; without them the benchmark prints a "skipped" note and exits 0).

Inverses at this size (d = 101,770, float32):

* ``dense`` / ``sherman_morrison``: a d x d matrix is 38.6 GiB, it does not fit in memory here;
* ``block`` per parameter tensor: ``fc1.weight`` alone is a 100,352-parameter block (37.5 GiB), so
  the tensors are cut further into blocks of ``--block-size`` parameters (block-diagonal within
  each tensor); its Gram matrix is built from ``--block-samples`` gradients;
* ``woodbury``: exact inverse of ``lambda I + G^T G / m`` for ``m`` gradient rows,
  memory ``O(m d)``.

Timings are wall clock on the machine that runs it (noisy when other jobs share the cores; the
load average is printed).  The curvature is the empirical Fisher, float32, damping = the
optimizer's weight decay.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import resource
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._backends._torch import TorchBackend
from sklearn_ssse._curvature import build_operator
from sklearn_ssse.datasets import load_fashion_mnist

GIB = 1024 ** 3


class MLP(nn.Module):
    """784 - hidden - 10 ReLU MLP returning logits."""

    def __init__(self, n_in: int = 784, hidden: int = 128, n_out: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make_net(args) -> NeuralNetClassifier:
    return NeuralNetClassifier(
        MLP, module__hidden=args.hidden, criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam, lr=1e-3, optimizer__weight_decay=args.weight_decay,
        max_epochs=args.epochs, batch_size=args.batch_size, train_split=None,
        iterator_train__shuffle=True, verbose=0)


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _fmt_bytes(b: float) -> str:
    return f"{b / GIB:.2f} GiB" if b >= 0.1 * GIB else f"{b / 1024 ** 2:.0f} MiB"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", "--data", dest="data", default=None,
                        help="folder with the Fashion-MNIST IDX files (default: "
                        "$SKLEARN_SSSE_FASHION_MNIST or /usr/share/datasets/fashion-mnist); "
                        "without them the benchmark is skipped with a message")
    parser.add_argument("--n-train", type=int, default=20000,
                        help="training images used (subsample of the 60,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--woodbury-m", type=int, nargs="+", default=[1024, 4096],
                        help="gradient rows of the low-rank (woodbury) inverses")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--block-samples", type=int, default=4096,
                        help="gradients behind the block-diagonal inverse")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 60, 600],
                        help="forget-set sizes")
    parser.add_argument("--epsilons", type=float, nargs="+",
                        default=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0],
                        help="step sizes evaluated (closed form) for the largest forget set")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    try:
        X, y = load_fashion_mnist(args.data, kind="train")
        X_test, y_test = load_fashion_mnist(args.data, kind="test")
    except FileNotFoundError as exc:
        print(f"_skipped: this benchmark needs Fashion-MNIST: {exc}._")
        return ""
    idx = rng.permutation(len(X))[:args.n_train]
    X, y = X[idx].astype(np.float32), y[idx]
    X_test = X_test.astype(np.float32)
    n = len(X)

    # ---------------------------------------------------------------- fit (+ default curvature)
    m0 = args.woodbury_m[0]
    clf, t_fit = _timed(lambda: UnlearnableClassifier(
        make_net(args), inverse="woodbury", fisher_max_samples=m0,
        random_state=args.seed).fit(X, y))
    backend = clf.backend_
    d = backend.n_params
    lam = clf.damping_
    itemsize = torch.finfo(backend.dtype).bits // 8
    lines = [
        f"## Fashion-MNIST MLP {784}-{args.hidden}-10 (d={d:,} parameters, {backend.dtype}), "
        f"n={n:,} training images, {args.epochs} epochs",
        "",
        f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}",
        f"test accuracy after fit: {clf.score(X_test, y_test):.4f}",
        "",
        "### curvature (empirical Fisher) build time and memory per inverse",
        "",
        "| inverse | rows (m) | gradients s | inverse build s | operator memory | "
        "rows memory (transient) |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| dense (Cholesky) | {n:,} | - | does not fit | {_fmt_bytes(d * d * itemsize)} needed "
        "| - |",
        f"| sherman_morrison | {n:,} | - | does not fit | {_fmt_bytes(d * d * itemsize)} needed, "
        f"O(m d^2) | - |",
    ]
    natural = backend.natural_blocks
    big = max(s.stop - s.start for s in natural)
    lines.append(f"| block per tensor | - | - | does not fit (largest tensor {big:,} params) | "
                 f"{_fmt_bytes(sum((s.stop - s.start) ** 2 for s in natural) * itemsize)} "
                 "needed | - |")

    # ---------------------------------------------------------------- inverse builds
    operators = {}
    # the gradients of the largest sample once; smaller ones are prefixes of the same draw
    m_max = min(n, max(args.woodbury_m + [args.block_samples]))
    sample = rng.choice(n, size=m_max, replace=False)
    G, t_grad = _timed(lambda: backend.per_sample_gradients(X[sample], y[sample]))
    per_row = t_grad / m_max
    for m in sorted(set(min(m, n) for m in args.woodbury_m)):
        rows = G[:m] * math.sqrt(n / m)
        op, t_build = _timed(build_operator, "woodbury", rows, n, lam)
        operators[f"woodbury m={m}"] = op
        lines.append(f"| woodbury | {m:,} | {per_row * m:.2f} | {t_build:.2f} | "
                     f"{_fmt_bytes(op.nbytes)} | {_fmt_bytes(rows.numel() * itemsize)} |")
        del rows
    mb = min(n, args.block_samples)
    block_rows = G[:mb] * math.sqrt(n / mb)
    op, t_build = _timed(build_operator, "block", block_rows, n, lam, blocks=natural,
                         block_size=args.block_size)
    operators[f"block {args.block_size}"] = op
    lines.append(f"| block, {args.block_size} params per block ({len(op.ops)} blocks) | {mb:,} | "
                 f"{per_row * mb:.2f} | {t_build:.2f} | {_fmt_bytes(op.nbytes)} | "
                 f"{_fmt_bytes(block_rows.numel() * itemsize)} |")
    del block_rows, G

    # ---------------------------------------------------------------- forget latency
    lines += ["", "### forget latency (gradients of the k samples + solve), seconds", "",
              "| k | " + " | ".join(operators) + " | UnlearnableClassifier.forget (woodbury "
              f"m={m0}) |", "| --- " * (len(operators) + 2) + "|"]
    forget_sets = {}
    for k in args.k:
        S = rng.choice(n, size=k, replace=False)
        forget_sets[k] = S
        cells = []
        for op in operators.values():
            def step(op=op, S=S):
                g = backend.per_sample_gradients(X[S], y[S]).sum(0)
                return op.solve(g) / (n - len(S))

            step()  # warm-up
            cells.append(f"{_timed(step)[1]:.4f}")
        target = copy.deepcopy(clf)  # every k starts from the fitted model
        _, t_forget = _timed(lambda target=target, S=S: target.forget(X[S], y[S]))
        cells.append(f"{t_forget:.4f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")

    # ---------------------------------------------------------------- retraining baseline
    k = max(args.k)
    S = forget_sets[k]
    keep = np.setdiff1d(np.arange(n), S)
    torch.manual_seed(args.seed)
    retrained, t_retrain = _timed(lambda: make_net(args).fit(X[keep], y[keep]))
    lines += ["", "### retraining baseline", "",
              "| step | seconds |", "| --- | --- |",
              f"| fit net + woodbury m={m0} curvature (UnlearnableClassifier.fit) | {t_fit:.1f} |",
              f"| retrain from scratch on n-k={len(keep):,} ({args.epochs} epochs) | "
              f"{t_retrain:.1f} |"]

    # ---------------------------------------------------------------- quality vs epsilon
    delta = clf.forget_direction(X[S], y[S])
    theta = clf.backend_.get_parameters()
    lines += ["", f"### k={k}: accuracy on the forget set / test set (woodbury m={m0}, "
              "epsilon in closed form)", "",
              "| model | forget-set acc | test acc | norm(theta - theta_retrained) / "
              "norm(theta* - theta_retrained) |", "| --- | --- | --- | --- |"]
    theta_ref = TorchBackend(retrained).get_parameters()
    gap = float(torch.linalg.vector_norm(theta - theta_ref))

    def row(name, est, th):
        npd = float(torch.linalg.vector_norm(th - theta_ref)) / gap
        return (f"| {name} | {est.score(X[S], y[S]):.3f} | {est.score(X_test, y_test):.4f} | "
                f"{npd:.3f} |")

    lines.append(row("original", clf.estimator_, theta))
    for eps in args.epsilons:
        th = theta + eps * delta
        lines.append(row(f"SSSE epsilon={eps:g}", clf.with_parameters(th), th))
    lines.append(row("retrained", retrained, theta_ref))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    lines += ["", f"peak resident memory of the benchmark process: {_fmt_bytes(peak)}"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
