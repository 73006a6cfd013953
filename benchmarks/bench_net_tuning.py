"""How fine must the epsilon grid be for nets? (issue 12, item 4).

``bench_nets.py`` tunes epsilon with ``forget_retain_scorer`` over ``[0, 0.01, 0.03, 0.1, 0.3, 1,
3, 10, 30, 100]`` (a factor ~3 between values). On class removal the score peaks sharply (the
step overshoots a little past the peak: ``bench_net_line.py``), so the tuned epsilon depends on
where the grid falls. This script runs the cases of ``bench_nets.py`` (same data, seeds, nets,
validation deletions and evaluation deletion), scores the union of several grids once per kind
and validation deletion (closed form: one direction per deletion), and for each grid reports the
epsilon it selects (mean score, as ``epsilon_sweep``) and what the net then does on the
evaluation deletion: forget-set accuracy, removed-class test accuracy, test accuracy on the
other classes (all classes for random deletions), mean KL(retrained || model) on the forget set
and on the test images, against the band of ``--seeds`` retrained nets.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_net_tuning.py --inverses kfac ekfac block
    OMP_NUM_THREADS=1 python benchmarks/bench_net_tuning.py --forget-class 6   # another class
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nets as bn  # noqa: E402

from sklearn_ssse import UnlearnableClassifier  # noqa: E402
from sklearn_ssse.metrics import forget_retain_scorer  # noqa: E402

GRIDS = {
    "bench 10": [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
    "4/decade": [0.0, *np.logspace(-2, 2, 17)],
    "6/decade": [0.0, *np.logspace(-2, 2, 25)],
}


def case(net_kind, scenario, X, y, X_val, y_val, X_test, y_test, args, rng, log):
    n = len(X)
    S, removed, tune = bn.deletions(scenario, y, y_val, args, rng)  # as run_case
    if net_kind not in args.nets or scenario not in args.scenarios:
        return
    keep = np.setdiff1d(np.arange(n), S)
    ev = bn.Evaluation(X, y, S, X_test, y_test, removed)
    torch.manual_seed(args.seed)
    net = bn.make_net(net_kind, args).fit(X, y)
    retrained = []
    for seed in range(args.seeds):
        torch.manual_seed(1000 + seed)
        retrained.append(bn.make_net(net_kind, args, classes=np.arange(10)).fit(X[keep],
                                                                                y[keep]))
        ev.add_reference(retrained[-1])
    band = [ev.measure(m, skip=i) for i, m in enumerate(retrained)]
    title = (f"{net_kind.upper()}, class {removed} removed (k={len(S)})" if removed is not None
             else f"{net_kind.upper()}, random 1 % (k={len(S)})")
    orig = ev.measure(net)
    print(f"\n## {title}\n\noriginal: forget acc {orig['forget_acc']:.3f}, test acc "
          f"{orig['test_acc']:.3f}" + (f", removed-class test acc "
                                       f"{orig['removed_class_test_acc']:.3f}"
                                       if removed is not None else "")
          + "; retrained: " + ", ".join(
              f"{key} {min(b[key] for b in band):.3f}-{max(b[key] for b in band):.3f}"
              for key in ("forget_acc", "test_acc", "kl_forget", "kl_test")))
    grid = np.unique(np.concatenate([np.asarray(g, float) for g in GRIDS.values()]))
    for inv in args.inverses:
        clf = UnlearnableClassifier.from_fitted(net, X, y, keep_training_data=True,
                                                random_state=args.seed,
                                                memory_budget=args.memory_budget,
                                                damping=args.damping,
                                                **bn.ssse_params(inv, args))
        torch.manual_seed(2000)
        scores = np.array([forget_retain_scorer.score_epsilons(
            clf, np.concatenate([X[S_v], X_val[keep_v]]), np.concatenate([y[S_v], y_val[keep_v]]),
            grid) for S_v, keep_v in tune])
        mean = scores.mean(axis=0)
        theta = clf.get_parameters()
        delta = clf.forget_direction(X[S], y[S])
        delta = delta.detach().cpu().numpy() if hasattr(delta, "detach") else delta
        print(f"\n### {inv}\n\nmean validation score (forget_retain, higher is better) over "
              "the union grid: " + ", ".join(f"{e:.3g}: {s:.3f}" for e, s in zip(grid, mean)))
        print("\n| grid | tuned eps | forget acc | removed-class test acc | test acc | KL forget "
              "| KL test |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, g in GRIDS.items():
            idx = [int(np.flatnonzero(np.isclose(grid, e))[0]) for e in g]
            best = float(grid[idx[int(np.argmax(mean[idx]))]])
            m = ev.measure(clf.with_parameters(theta + best * delta))
            print(f"| {name} | {best:.3g} | {m['forget_acc']:.3f} | "
                  f"{m.get('removed_class_test_acc', float('nan')):.3f} | {m['test_acc']:.3f} | "
                  f"{m['kl_forget']:.3f} | {m['kl_test']:.3f} |")
        log(f"[{net_kind}/{scenario}] {inv} done")
        del clf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", "--data", dest="data", default=None)
    p.add_argument("--inverses", nargs="+", default=["kfac", "ekfac", "block"])
    p.add_argument("--nets", nargs="+", default=["mlp", "cnn"], choices=list(bn.NETS))
    p.add_argument("--scenarios", nargs="+", default=["random", "class"],
                   choices=["random", "class"])
    p.add_argument("--forget-class", type=int, default=0)
    p.add_argument("--damping", default="auto",
                   help="damping= of the estimator ('auto': the weight decay, 5e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="small sizes (about a minute): 1,500 images, 2 epochs, 2 retrains, one "
                   "validation deletion")
    args = p.parse_args(argv)
    if args.damping != "auto":
        args.damping = float(args.damping)
    # bench_nets' defaults for everything else
    defaults = dict(n_train=10000, n_test=5000, n_val=1000, seeds=3, val_deletions=3,
                    weight_decay=5e-4, device="cpu", woodbury_leave_out=False,
                    woodbury_m=1024, memory_budget="6GiB", block_size=256, block_m=512,
                    dense_m=2048)
    if args.quick:
        defaults.update(n_train=1500, n_test=1000, n_val=300, seeds=2, val_deletions=1,
                        woodbury_m=128, block_m=64, dense_m=256)
    for key, value in defaults.items():
        setattr(args, key, value)
    args.epochs = {"mlp": 2, "cnn": 2} if args.quick else {"mlp": 5, "cnn": 3}
    args.lr = {"mlp": 1e-3, "cnn": 3e-3}
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = bn.load_data(args)
    if data is None:
        return
    rng, X, y, X_val, y_val, X_test, y_test = data

    def log(msg):
        print(f"{time.perf_counter() - t0:7.1f}s {msg}", file=sys.stderr, flush=True)

    print("# Epsilon grids for nets (Fashion-MNIST, the cases of bench_nets.py)\n\n"
          f"damping={args.damping!r}, class {args.forget_class} removed. Grids: "
          + "; ".join(f"{k}: {len(v)} values" for k, v in GRIDS.items()))
    for net_kind in ("mlp", "cnn"):          # bench_nets' order: the same random draws
        for scenario in ("random", "class"):
            case(net_kind, scenario, X, y, X_val, y_val, X_test, y_test, args, rng, log)


if __name__ == "__main__":
    main()
