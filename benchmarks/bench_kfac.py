"""K-FAC / EK-FAC curvature of torch nets on Fashion-MNIST (issue 12, item 2): setup vs one epoch.

Nets (skorch, Adam, weight decay): an MLP 784-256-10 (203,530 parameters) and a 2-conv CNN
(conv 1->8 3x3, pool, conv 8->16 3x3, pool, linear 784->20->10; 17,258 parameters).  For each
net and inverse (``kfac``, ``ekfac``; ``woodbury`` for reference unless ``--no-woodbury``) and
curvature (GGN by default: one label per sample drawn from the net's p(.|x); ``--kfac-ggn exact``
for the C rows of the exact GGN, one backward pass per class) it prints a markdown table with

* the time of one training epoch (an extra ``partial_fit`` epoch after the fit),
* the curvature build alone (``KFAC.build`` / ``EKFACNet.build`` on the fitted net) and the whole
  ``UnlearnableClassifier.from_fitted`` setup (build + row digests),
* the operator's bytes,
* the latency of ``forget`` (``step="leave_out"``: gradient sum, downdate, solve) for one
  sample, a random 1% and one whole class (the minimum of ``--repeats`` runs, each on a fresh
  copy of the model),

and a second table: that latency as a percentage of a retrain (issue 12's target: at most
1 %), the retrain being a fresh net fitted for the same epochs on the kept rows, timed in the
same process, each retrain alternating with the forgets it is compared with (the minimum of
``--repeats``).

Run (one BLAS / torch thread, so that timings mean something on a shared machine)::

    OMP_NUM_THREADS=1 env -u OPENBLAS_CORETYPE python benchmarks/bench_kfac.py  # ~3-5 minutes
    python benchmarks/bench_kfac.py --quick                        # 2,000 images, no woodbury
    python benchmarks/bench_kfac.py --device cuda --threads 4

``--setup-ratio`` (issue 12's target "curvature setup <= one training epoch"): for each net,
``--repeats`` rounds of, back to back in this process, one training epoch (``partial_fit`` on a
copy of the fitted net) and ``from_fitted(..., inverse=k)`` for ``k`` in ``kfac``, ``ekfac``; it
prints the minimum and median of each time and of the per-round ratio setup / epoch::

    OMP_NUM_THREADS=1 python benchmarks/bench_kfac.py --setup-ratio --repeats 5

Data: the IDX ``.gz`` files of the Debian package ``dataset-fashion-mnist``
(``--data-dir``, or ``SKLEARN_SSSE_FASHION_MNIST``); without them it prints a skip note and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse._backends._torch import TorchBackend
from sklearn_ssse._curvature import _kronecker_net
from sklearn_ssse._curvature._kfac import KFAC, EKFACNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_nets import MLP  # noqa: E402  (the 784-256-10 MLP of the net benchmark)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 7 * 7, 20)
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _timed(fn, *args, **kwargs):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def _mb(b):
    return f"{b / 1024 ** 2:.1f} MB"


def _net(name, args):
    torch.manual_seed(0)
    return NeuralNetClassifier(MLP if name == "mlp" else CNN, criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.Adam, lr=1e-3, optimizer__weight_decay=1e-4,
                               max_epochs=args.epochs, batch_size=128, train_split=None,
                               device=args.device, iterator_train__shuffle=True, verbose=0)


def _setup_ratio(args, X, y) -> int:
    """Setup (``from_fitted``) against one training epoch, measured back to back."""
    print("| net | inverse | epoch min / median | setup min / median | setup / epoch min / "
          "median | <= 1 epoch |")
    print("|---|---|---|---|---|---|")
    kinds = ("kfac", "ekfac")
    for name in args.nets:
        net = _net(name, args).fit(X, y)
        epochs, setups = [], {k: [] for k in kinds}
        for _ in range(args.repeats):
            _, e = _timed(copy.deepcopy(net).partial_fit, X, y, epochs=1)
            epochs.append(e)
            for k in kinds:
                _, t = _timed(UnlearnableClassifier.from_fitted, net, X, y, inverse=k,
                              curvature=args.curvature, random_state=0)
                setups[k].append(t)
        epochs = np.array(epochs)
        for k in kinds:
            t = np.array(setups[k])
            r = t / epochs
            print(f"| {name} | {k} | {epochs.min():.3f} / {np.median(epochs):.3f} s | "
                  f"{t.min():.3f} / {np.median(t):.3f} s | {r.min():.2f} / {np.median(r):.2f} | "
                  f"{'yes' if np.median(r) <= 1 else 'no'} |")
            sys.stdout.flush()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--curvature", default="ggn", choices=["ggn", "empirical_fisher"])
    parser.add_argument("--kfac-ggn", default="sampled", choices=["exact", "sampled"],
                        help="GGN rows of K-FAC/EK-FAC (the estimator's default: sampled)")
    parser.add_argument("--nets", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--no-woodbury", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2,000 images, 1 epoch, no woodbury")
    parser.add_argument("--setup-ratio", action="store_true",
                        help="only the setup / one-epoch ratios of kfac and ekfac")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of --setup-ratio; forget and retrain timings: the minimum "
                             "of this many runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.epochs, args.no_woodbury = 2000, 1, True
    torch.set_num_threads(args.threads)
    _kronecker_net.GGN_MODE_DEFAULT = args.kfac_ggn  # the estimator has no option for it
    from sklearn_ssse.datasets import load_fashion_mnist

    try:
        X, y = load_fashion_mnist(path=args.data_dir, kind="train")
    except (FileNotFoundError, OSError) as exc:
        print(f"skipped: Fashion-MNIST not found ({exc})")
        return 0
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(X))[:args.n_train]
    X, y = np.ascontiguousarray(X[idx], dtype=np.float32), y[idx].astype(np.int64)
    print(f"Fashion-MNIST, {len(X)} training images, {args.epochs} epochs, device "
          f"{args.device}, {args.threads} thread(s), curvature={args.curvature} "
          f"(K-FAC GGN: {args.kfac_ggn}); load average {os.getloadavg()[0]:.2f}\n")
    if args.setup_ratio:
        return _setup_ratio(args, X, y)
    print("| net | params | epoch | inverse | build | from_fitted | operator | forget k=1 "
          "| forget 1% | forget class 0 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    forget_sets = {"1": rng.choice(len(X), 1, replace=False),
                   "1%": rng.choice(len(X), len(X) // 100, replace=False),
                   "class": np.flatnonzero(y == 0)}
    ratios = []
    for name in args.nets:
        net, fit_s = _timed(_net(name, args).fit, X, y)
        # one steady-state epoch (skorch's first call also initialises): time an extra epoch
        # on a copy, so the net the curvature is built for stays the fitted one
        _, epoch = _timed(copy.deepcopy(net).partial_fit, X, y, epochs=1)
        d = sum(p.numel() for p in net.module_.parameters())
        kinds = ["kfac", "ekfac"] + ([] if args.no_woodbury else ["woodbury"])
        rows, ests = {}, {}
        for inverse in kinds:
            build = "-"
            if inverse != "woodbury":
                cls = KFAC if inverse == "kfac" else EKFACNet
                backend = TorchBackend(net)
                lam = backend.default_damping(len(X))
                cfg = {"curvature": args.curvature, "chunk_size": 512, "fisher_batch_size": 1,
                       "kfac_ggn": args.kfac_ggn}
                _, b_s = _timed(cls.build, backend, [(X, y)], cfg, lambda n, lam=lam: lam,
                                np.random.RandomState(0))
                build = f"{b_s:.2f} s ({b_s / epoch:.2f} epoch)"
            opts = dict(inverse=inverse, curvature=args.curvature, random_state=0,
                        chunk_size=512, memory_budget="32GB")
            ests[inverse], ff_s = _timed(UnlearnableClassifier.from_fitted, net, X, y, **opts)
            rows[inverse] = (build, ff_s)
        # each retrain (a fresh net on the kept rows) alternates with the forgets it is compared
        # with, so that both see the same load on a shared machine
        runs = {(inverse, key): [] for inverse in kinds for key in forget_sets}
        refused, retrain = {}, {key: [] for key in forget_sets}
        for key, f in forget_sets.items():
            keep = np.setdiff1d(np.arange(len(X)), f)
            for _ in range(args.repeats):
                retrain[key].append(_timed(_net(name, args).fit, X[keep], y[keep])[1])
                for inverse in kinds:
                    if (inverse, key) in refused:
                        continue
                    e = copy.deepcopy(ests[inverse])  # a fresh copy of the fitted model
                    try:
                        runs[inverse, key].append(_timed(e.forget, X[f], y[f])[1])
                    except ValueError as exc:
                        refused[inverse, key] = f"refused ({str(exc)[:40]}...)"
        for inverse in kinds:
            times = []
            for key, f in forget_sets.items():
                if (inverse, key) in refused:
                    times.append(refused[inverse, key])
                    continue
                t = min(runs[inverse, key])
                times.append(f"{t * 1000:.0f} ms")
                ratios.append((name, inverse, key, len(f), t,
                               float(np.median(runs[inverse, key])), min(retrain[key])))
            build, ff_s = rows[inverse]
            print(f"| {name} | {d:,} | {epoch:.2f} s | {inverse} | {build} | {ff_s:.2f} s | "
                  f"{_mb(ests[inverse].curvature_.nbytes)} | " + " | ".join(times) + " |")
            sys.stdout.flush()
    print(f"\nForget as a share of a retrain (min of {args.repeats}; the retrain: a fresh net, "
          f"{args.epochs} epochs on the kept rows; target <= 1 %)\n")
    print("| net | inverse | forget set | k | forget min (median) | retrain | forget / retrain "
          "| <= 1 % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, inverse, key, k, t, med, r in ratios:
        pct = 100 * t / r
        print(f"| {name} | {inverse} | {key} | {k:,} | {t * 1000:.1f} ms ({med * 1000:.1f}) | "
              f"{r:.2f} s | {pct:.2f} % | {'met' if pct <= 1 else 'NOT met'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
