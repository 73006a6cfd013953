"""Peak memory of the torch path's curvature pieces (issue 12, item 6), one subprocess per case.

tracemalloc does not see torch's CPU allocations, so every case runs in a fresh interpreter and
reports its peak resident set (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus the resident
set just before the measured work (the model, the data and the interpreter).  Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_torch_memory.py            # ~1 minute, 4.5 GiB
    OMP_NUM_THREADS=1 python benchmarks/bench_torch_memory.py --quick    # ~10 s
    OMP_NUM_THREADS=1 python benchmarks/bench_torch_memory.py --root /path/to/old/checkout

Cases (MLP 784-``hidden``-10 on random inputs, float32, ``chunk_size=512`` like the estimator):

* ``ggn rows, one chunk materialised``: ``curvature_rows`` of 512 samples, what the one-pass
  accumulation held per chunk before: an ``(n, q, d)`` block, ``q = 10``;
* ``ggn rows, streamed``: the same samples through ``iter_factor_rows`` (what the accumulation
  feeds to the builder now), at most ``chunk_size`` rows (``chunk_size // q`` samples) at a time;
* ``woodbury build``: :class:`~sklearn_ssse._curvature.OperatorBuilder` of kind ``woodbury`` from
  ``m`` rows fed in chunks, against the size of the operator it returns (``nbytes``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASE = r"""
import json, resource, sys, time
import numpy as np, torch
from torch import nn
from skorch import NeuralNetClassifier
sys.path.insert(0, {root!r})
from sklearn_ssse._backends._torch import TorchBackend
from sklearn_ssse._curvature import OperatorBuilder
torch.manual_seed(0)
hidden, m, case = {hidden}, {m}, {case!r}
net = NeuralNetClassifier(nn.Sequential(nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, 10)),
                          criterion=nn.CrossEntropyLoss, max_epochs=0, train_split=None,
                          classes=list(range(10)))
net.initialize()
backend = TorchBackend(net, chunk_size=512)
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 784)).astype(np.float32)
y = rng.integers(0, 10, 512)
d = backend.n_params
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = {{"case": case, "d": d}}
if case.startswith("ggn"):
    # warm up the kernels (their workspaces are not what is measured)
    backend.curvature_rows(X[:8], y[:8], "ggn")
    base = rss()
    t = time.perf_counter()
    if case == "ggn_materialised":
        R = backend.curvature_rows(X, y, "ggn")
        out["rows"] = int(R.shape[0] * R.shape[1])
        out["block_bytes"] = R.numel() * R.element_size()
        del R
    else:
        from sklearn_ssse._streaming import iter_factor_rows
        rows = 0
        for R in iter_factor_rows(backend, X, y, "ggn"):
            rows += R.shape[0] * R.shape[1]
        out["rows"] = int(rows)
        out["block_bytes"] = 512 * d * 4
    out["seconds"] = time.perf_counter() - t
else:
    lam = torch.full((d,), 1e-3)
    torch.randn(512, d)  # (allocator warm-up)
    base = rss()
    builder = OperatorBuilder("woodbury", d, torch.float32, torch.device("cpu"))
    for a in range(0, m, 512):  # the rows, chunk by chunk as the stream delivers them
        builder.add_rows(torch.randn(min(512, m - a), d))
    op = builder.finalize(m, lam, scale=2.0)
    out["operator_bytes"] = op.nbytes
out["peak_bytes"] = rss() - base
print(json.dumps(out))
"""


def run(case: str, hidden: int, m: int, root: str) -> dict:
    code = CASE.format(root=root, hidden=hidden, m=m, case=case)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--m", type=int, default=1024, help="woodbury rows")
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), help="checkout whose sklearn_ssse is measured (e.g. an older commit's)")
    parser.add_argument("--cases", nargs="+", default=["ggn_materialised", "ggn_streamed",
                                                       "woodbury"])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (MLP 784-64-10, m=512): about 10 s, 1.2 GiB")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.m = 64, 512
    gib = 2.0**30
    print("| case | d | peak above baseline | reference |\n|---|---|---|---|")
    for case in [c for c in args.cases if c.startswith("ggn")]:
        r = run(case, args.hidden, args.m, args.root)
        print(f"| {case} ({r['rows']} rows, {r['seconds']:.1f} s) | {r['d']:,} | "
              f"{r['peak_bytes'] / gib:.2f} GiB | "
              f"{'(512, q, d) block' if case == 'ggn_materialised' else 'chunk_size x d'}: "
              f"{r['block_bytes'] / gib:.2f} GiB |")
    if "woodbury" not in args.cases:
        return
    r = run("woodbury", args.hidden, args.m, args.root)
    print(f"| woodbury build, m={args.m} | {r['d']:,} | {r['peak_bytes'] / gib:.2f} GiB | "
          f"operator: {r['operator_bytes'] / gib:.2f} GiB "
          f"(peak {r['peak_bytes'] / r['operator_bytes']:.2f}x) |")


if __name__ == "__main__":
    main()
