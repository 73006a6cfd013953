"""Forgetting measured in what nets predict (issue 12, item 4): SSSE on Fashion-MNIST nets
against retraining, fine-tuning and gradient ascent.

Two skorch nets (Adam, ``weight_decay``, cross-entropy on logits) on ``--n-train`` Fashion-MNIST
training images: an MLP 784-256-10 (203,530 parameters) and a small CNN (2 conv + 2 linear
layers, 20,490 parameters). Two deletions: a random 1 % of the training images and a whole
class (single-class removal). Methods:

* **retrain** x 3 seeds on the remaining rows: the reference band (what exact unlearning gives;
  the seeds differ, so the band is the seed noise);
* **fine-tune**: one epoch of the original net's optimizer on the remaining rows;
* **NegGrad**: ``--neggrad-steps`` steps of gradient ascent (Adam, ``--neggrad-lr``) on the
  forget-set loss;
* **SSSE**, one per ``--inverses`` kind (``woodbury``: low rank from ``--woodbury-m`` samples;
  ``block``: ``--block-size`` parameters per block; ``dense``: the last layer only,
  ``parameters=["fc2.*"]``; another kind, e.g. ``kfac``, is passed as ``inverse=`` to
  :class:`~sklearn_ssse.UnlearnableClassifier` as it is), built with
  :meth:`~sklearn_ssse.UnlearnableClassifier.from_fitted` on the same trained net, at
  ``epsilon = 1`` and at the epsilon that ``forget_retain_scorer`` (the default for nets of
  :func:`~sklearn_ssse.model_selection.epsilon_sweep`) selects, by its mean score, on
  ``--val-deletions`` *validation* deletions: other random 1 % sets (or the next classes) of the
  training rows, each with its own retrained reference, and ``--n-val`` images outside the
  training set as the rows that stay. The evaluation forget set and the test images are never
  used to tune.

Measures (``re_i``: the retrained nets): forget-set accuracy; mean ``KL(re_i || model)`` of the
predicted distributions on the forget set and on the test images (for the retrained nets: the
mean over the two other seeds, i.e. the seed noise); test accuracy (class removal: on the other
classes, and on the removed class); membership-inference AUC of a loss-threshold attack, forget
set against test images of the same classes (0.5: indistinguishable); wall time: setup (training,
or the curvature build of SSSE) and the forget itself.

Run (one thread, as every benchmark here)::

    OMP_NUM_THREADS=1 python benchmarks/bench_nets.py --threads 1          # ~12 min on 2 cores
    python benchmarks/bench_nets.py --quick                                # < 2 min
    python benchmarks/bench_nets.py --quick --device cuda                  # benchmarks/gpu_check.sh
    python benchmarks/bench_nets.py --inverses woodbury block dense kfac ekfac

Writes ``--out`` (markdown, default ``benchmarks/results/nets.md``; ``--quick``:
``nets_quick.md``) and the same name with ``.json``.
Data: the IDX ``.gz`` files of the Debian package ``dataset-fashion-mnist``
(``--data-dir`` or ``SKLEARN_SSSE_FASHION_MNIST``; without them the benchmark prints a "skipped"
note and exits 0).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse.datasets import load_fashion_mnist
from sklearn_ssse.metrics import forget_retain_scorer, membership_inference_auc
from sklearn_ssse.metrics._metrics import _mean_kl

RESULTS = Path(__file__).resolve().parent / "results"


# ============================================================================== nets
class MLP(nn.Module):
    """784-256-10 ReLU MLP returning logits."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class CNN(nn.Module):
    """conv 5x5 (1->8) - pool - conv 5x5 (8->16) - pool - linear 256->64 - linear 64->10."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 5)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 5)
        self.fc1 = nn.Linear(2 * channels * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


NETS = {"mlp": MLP, "cnn": CNN}


def make_net(kind: str, args, **kwargs) -> NeuralNetClassifier:
    """The skorch net, built without ``classes=`` (skorch infers them from ``y``)."""
    params = dict(module=NETS[kind], criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                  lr=args.lr[kind], optimizer__weight_decay=args.weight_decay,
                  max_epochs=args.epochs[kind], batch_size=128, train_split=None,
                  iterator_train__shuffle=True, device=args.device, verbose=0)
    params.update(kwargs)
    return NeuralNetClassifier(**params)


def n_params(net) -> int:
    return sum(p.numel() for p in net.module_.parameters())


# ============================================================================== methods
def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def fine_tune(net, X, y):
    """One epoch of the net's own optimizer (state kept) on the remaining rows."""
    tuned = copy.deepcopy(net)
    # without classes= skorch would rename the net's classes after the rows of this epoch
    # (9 names for 10 outputs on a class removal)
    tuned.classes = np.asarray(net.classes_)
    tuned.fit_loop(X, y, epochs=1)
    return tuned


def neg_grad(net, X, y, *, steps: int, lr: float):
    """``steps`` full-batch steps of gradient ascent on the forget set's mean loss."""
    out = copy.deepcopy(net)
    module = out.module_
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    xb = torch.as_tensor(X, device=out.device)
    yb = torch.as_tensor(y, device=out.device)
    for _ in range(steps):
        opt.zero_grad()
        (-nn.functional.cross_entropy(module(xb), yb)).backward()
        opt.step()
    module.eval()
    return out


def ssse_params(kind: str, args) -> dict:
    """UnlearnableClassifier options of one ``--inverses`` kind."""
    if kind == "woodbury":
        if args.woodbury_leave_out:
            return {"inverse": "woodbury", "fisher_max_samples": args.woodbury_m}
        return {"inverse": "woodbury", "fisher_max_samples": args.woodbury_m, "step": "full",
                "update_curvature": False}
    if kind == "block":
        return {"inverse": "block", "block_size": args.block_size,
                "fisher_max_samples": args.block_m}
    if kind == "dense":
        return {"inverse": "dense", "parameters": ["fc2.*"], "fisher_max_samples": args.dense_m}
    if kind.endswith("_full"):  # e.g. kfac_full: the paper's form, the fit-time inverse as is
        return {"inverse": kind[:-len("_full")], "step": "full", "update_curvature": False}
    return {"inverse": kind}      # e.g. kfac / ekfac: the estimator validates it


# ============================================================================== measures
def _proba(model, X) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model.predict_proba(X), dtype=np.float64)


class Evaluation:
    """Everything measured on one deletion: the forget set, the test rows, the retrained band."""

    def __init__(self, X, y, S, X_test, y_test, removed_class):
        self.X_S, self.y_S = X[S], y[S]
        self.X_test, self.y_test = X_test, y_test
        self.removed = removed_class
        same = y_test == removed_class if removed_class is not None else np.ones(len(y_test), bool)
        self.X_mia, self.y_mia = X_test[same], y_test[same]   # held-out rows for the attack
        self.other = ~same if removed_class is not None else same
        self.labels = [np.arange(10)]
        self.retrained: list[tuple[np.ndarray, np.ndarray]] = []

    def _kl(self, P_ref, P):
        return _mean_kl(([P_ref], self.labels), ([P], self.labels), diverged="max")

    def add_reference(self, model) -> None:
        self.retrained.append((_proba(model, self.X_S), _proba(model, self.X_test)))

    def measure(self, model, *, skip: int | None = None) -> dict:
        """Measures of ``model``; ``skip``: index of a retrained net to leave out of the KLs."""
        P_S, P_T = _proba(model, self.X_S), _proba(model, self.X_test)
        refs = [r for i, r in enumerate(self.retrained) if i != skip]
        pred_T = P_T.argmax(1)
        out = {
            "forget_acc": float(np.mean(P_S.argmax(1) == self.y_S)),
            "kl_forget": float(np.mean([self._kl(r[0], P_S) for r in refs])),
            "kl_test": float(np.mean([self._kl(r[1], P_T) for r in refs])),
            "test_acc": float(np.mean(pred_T[self.other] == self.y_test[self.other])),
            "mia_auc": float(membership_inference_auc(model, self.X_S, self.y_S, self.X_mia,
                                                      self.y_mia, labels=np.arange(10))),
        }
        if self.removed is not None:
            out["removed_class_test_acc"] = float(np.mean(pred_T[~self.other]
                                                          == self.y_test[~self.other]))
        return out


# ============================================================================== one case
def load_data(args):
    """``(rng, X, y, X_val, y_val, X_test, y_test)``: the training, validation (tuning only)
    and test images drawn with ``args.seed`` (the generator continues to the cases); ``None``
    (after a skip note) without Fashion-MNIST."""
    try:
        X, y = load_fashion_mnist(args.data, kind="train")
        X_test, y_test = load_fashion_mnist(args.data, kind="test")
    except FileNotFoundError as exc:
        print(f"_skipped: this benchmark needs Fashion-MNIST: {exc}._")
        return None
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(X))
    tr, va = perm[:args.n_train], perm[args.n_train:args.n_train + args.n_val]
    X_val, y_val = X[va].astype(np.float32), y[va].astype(np.int64)
    X, y = X[tr].astype(np.float32), y[tr].astype(np.int64)
    te = rng.permutation(len(X_test))[:args.n_test]
    X_test, y_test = X_test[te].astype(np.float32), y_test[te].astype(np.int64)
    return rng, X, y, X_val, y_val, X_test, y_test


def deletions(scenario, y, y_val, args, rng):
    """``(S, removed, tune)``: the forget set, the removed class (``None`` for a random 1 %)
    and the validation deletions ``(S_v, kept validation images)`` epsilon is tuned on."""
    n = len(y)
    if scenario == "random":
        perm = rng.permutation(n)
        k = max(1, int(round(0.01 * n)))
        # validation deletions: other random 1 % sets; all the validation images stay
        tune = [(np.sort(perm[k * (i + 1):k * (i + 2)]), np.ones(len(y_val), bool))
                for i in range(args.val_deletions)]
        return np.sort(perm[:k]), None, tune
    removed = args.forget_class
    # validation deletions: the next classes; the validation images of the others stay
    tune = [(np.flatnonzero(y == c), y_val != c)
            for c in ((removed + 1 + i) % 10 for i in range(args.val_deletions))]
    return np.flatnonzero(y == removed), removed, tune


def run_case(kind, scenario, X, y, X_val, y_val, X_test, y_test, args, rng, log) -> dict:
    n = len(X)
    S, removed, tune = deletions(scenario, y, y_val, args, rng)
    keep = np.setdiff1d(np.arange(n), S)
    ev = Evaluation(X, y, S, X_test, y_test, removed)
    rows, case = [], {"net": kind, "scenario": scenario, "n_train": n, "k": len(S)}

    torch.manual_seed(args.seed)
    net, t_train = _timed(lambda: make_net(kind, args).fit(X, y))
    case["n_params"] = n_params(net)
    case["train_s"] = t_train
    case["epoch_s"] = t_train / args.epochs[kind]
    log(f"[{kind}/{scenario}] d={case['n_params']:,} trained in {t_train:.1f} s; k={len(S)}")

    retrained, t_re = [], []
    for seed in range(args.seeds):
        torch.manual_seed(1000 + seed)
        model, t = _timed(lambda: make_net(kind, args, classes=np.arange(10)).fit(X[keep],
                                                                                  y[keep]))
        retrained.append(model)
        t_re.append(t)
        ev.add_reference(model)
    case["retrain_s"] = float(np.mean(t_re))
    for i, model in enumerate(retrained):
        rows.append({"method": f"retrain (seed {i})", "setup_s": t_re[i], "forget_s": t_re[i],
                     **ev.measure(model, skip=i)})
    rows.append({"method": "original", "setup_s": t_train, "forget_s": 0.0, **ev.measure(net)})
    model, t = _timed(lambda: fine_tune(net, X[keep], y[keep]))
    rows.append({"method": "fine-tune (1 epoch)", "setup_s": 0.0, "forget_s": t,
                 **ev.measure(model)})
    model, t = _timed(lambda: neg_grad(net, X[S], y[S], steps=args.neggrad_steps,
                                       lr=args.neggrad_lr))
    rows.append({"method": f"NegGrad ({args.neggrad_steps} steps)", "setup_s": 0.0,
                 "forget_s": t, **ev.measure(model)})
    log(f"[{kind}/{scenario}] baselines done (retrain {case['retrain_s']:.1f} s)")

    for inv in args.inverses:
        try:
            clf, t_setup = _timed(lambda inv=inv: UnlearnableClassifier.from_fitted(
                net, X, y, keep_training_data=True, random_state=args.seed,
                memory_budget=args.memory_budget, **ssse_params(inv, args)))
        except (ValueError, MemoryError, RuntimeError) as exc:
            log(f"[{kind}/{scenario}] SSSE {inv}: not run ({exc})")
            rows.append({"method": f"SSSE {inv}", "error": str(exc)[:300]})
            continue
        torch.manual_seed(2000)
        try:
            (scores, t_tune) = _timed(lambda clf=clf: np.array([
                forget_retain_scorer.score_epsilons(
                    clf, np.concatenate([X[S_v], X_val[keep_v]]),
                    np.concatenate([y[S_v], y_val[keep_v]]), args.epsilons)
                for S_v, keep_v in tune]))
        except ValueError as exc:
            log(f"[{kind}/{scenario}] SSSE {inv}: failed ({exc})")
            rows.append({"method": f"SSSE {inv}", "error": str(exc)[:300]})
            continue
        mean = scores.mean(axis=0)      # as epsilon_sweep / GridSearchCV: mean over splits
        best = float(args.epsilons[int(np.argmax(mean))])
        # epsilon = 1 in closed form (theta + delta: what forget(epsilon=1) sets, without a
        # copy of the operator), then the timed forget itself, in place, at the tuned epsilon
        measured = {}
        if best != 1.0:
            theta = clf.get_parameters()
            delta = clf.forget_direction(X[S], y[S])
            delta = delta.detach().cpu().numpy() if hasattr(delta, "detach") else delta
            measured[1.0] = ev.measure(clf.with_parameters(theta + delta))
        # keep_training_data (for the scorers) makes forget locate the rows among the kept
        # ones through a hash index built on first use (~0.1-0.5 s, once per fit): built
        # here, untimed, so that forget_s is the deletion a kept model pays every time
        _, t_index = _timed(clf._row_index)
        _, t_forget = _timed(lambda c=clf, e=best: c.forget(X[S], y[S], epsilon=e))
        measured[best] = ev.measure(clf)
        for eps, values in sorted(measured.items(), key=lambda kv: kv[0] != 1.0):
            tag = "eps=1" if eps == 1.0 else f"tuned eps={eps:.3g}"
            if eps == best and eps == 1.0:
                tag += " (tuned)"
            rows.append({"method": f"SSSE {inv}, {tag}", "epsilon": eps, "setup_s": t_setup,
                         "forget_s": t_forget, "tune_s": t_tune, "row_index_s": t_index,
                         "tune_scores": scores.round(4).tolist(), **values})
        log(f"[{kind}/{scenario}] SSSE {inv}: setup {t_setup:.1f} s, tuned eps={best:g} "
            f"(tuning {t_tune:.1f} s)")
        del clf
    case["rows"] = rows
    return case


# ============================================================================== report
def _band(rows, key):
    vals = [r[key] for r in rows if r["method"].startswith("retrain")]
    return min(vals), max(vals)


def verdicts(case) -> list[str]:
    rows = [r for r in case["rows"] if "error" not in r]
    re = [r for r in rows if r["method"].startswith("retrain")]
    ft = next(r for r in rows if r["method"].startswith("fine-tune"))
    lo_acc = min(r["test_acc"] for r in re)
    out = []
    for r in rows:
        if not r["method"].startswith("SSSE") or "tuned" not in r["method"]:
            continue
        ratio = r["forget_s"] / case["retrain_s"]
        parts = [f"setup {r['setup_s']:.2f} s vs one training epoch {case['epoch_s']:.2f} s "
                 f"({'met' if r['setup_s'] <= case['epoch_s'] else 'NOT met'})",
                 f"forget {100 * ratio:.2f} % of a retrain "
                 f"({'met' if ratio <= 0.01 else 'NOT met'})"]
        if case["scenario"] == "class":
            lo, hi = _band(rows, "forget_acc")
            inside = lo - 1e-12 <= r["forget_acc"] <= hi + 1e-12
            within = r["test_acc"] >= lo_acc - 0.02
            parts.append(f"removed-class accuracy {r['forget_acc']:.3f} vs band "
                         f"[{lo:.3f}, {hi:.3f}] ({'met' if inside else 'NOT met'})")
            parts.append(f"other-class test accuracy {r['test_acc']:.3f} vs retrained "
                         f">= {lo_acc:.3f} - 0.02 ({'met' if within else 'NOT met'})")
        else:
            parts.append(f"test accuracy {r['test_acc']:.3f} vs retrained >= {lo_acc:.3f} - 0.02 "
                         f"({'met' if r['test_acc'] >= lo_acc - 0.02 else 'NOT met'})")
        wins = (r["kl_forget"] < ft["kl_forget"]) + (r["kl_test"] < ft["kl_test"])
        kls = (f"KL forget {r['kl_forget']:.3f} vs {ft['kl_forget']:.3f}, KL test "
               f"{r['kl_test']:.3f} vs {ft['kl_test']:.3f}")
        parts.append({2: f"closer to retraining than fine-tuning on both KLs ({kls})",
                      1: f"**mixed against fine-tuning** ({kls})",
                      0: f"**loses to fine-tuning** on both KLs ({kls})"}[wins])
        if r["epsilon"] == 0:
            parts.append("epsilon 0 selected: no step, the original net (the scorer found no "
                         "epsilon of the grid closer to retraining on the validation deletions)")
        out.append(f"- {r['method']}: " + "; ".join(parts))
    return out


def to_markdown(report) -> str:
    a = report["args"]
    lines = [
        "# Forgetting measured in what nets predict (Fashion-MNIST)",
        "",
        f"`{report['command']}`",
        "",
        f"Machine: {report['machine']}; torch {report['torch']}, device {a['device']}, "
        f"{report['threads']} thread(s); load average at start {report['load']}. "
        f"Total wall time {report['wall_s']:.0f} s.",
        "",
        f"{a['n_train']:,} training images, {a['n_test']:,} test images, {a['n_val']:,} "
        f"validation images (tuning only). Adam lr {a['lr']}, weight_decay={a['weight_decay']}, "
        f"batch 128, epochs {a['epochs']}. SSSE: GGN curvature (the default), damping from "
        f"the weight decay; woodbury m={a['woodbury_m']}, block {a['block_size']} params per "
        f"block from {a['block_m']} samples, dense = last layer (`fc2.*`) only, from "
        f"{a['dense_m']} samples. Epsilon tuned "
        f"with `forget_retain_scorer` over {len(a['epsilons'])} values in "
        f"[{min(a['epsilons']):g}, {max(a['epsilons']):g}] (mean score) on "
        f"{a['val_deletions']} validation deletions (other random 1 % sets / the next "
        "classes), each with its own retrained reference. NegGrad: "
        f"{a['neggrad_steps']} full-batch Adam steps, lr={a['neggrad_lr']}.",
        "",
        f"Columns: KL = mean KL(retrained_i || model) over the {a['seeds']} retrained nets "
        f"(retrained rows: over the {a['seeds'] - 1} others, the seed noise); test acc (class "
        "removal: on the 9 other classes); "
        "MIA = loss-threshold attack AUC, forget set vs test images of the same classes; setup "
        "= training or curvature build, forget = the deletion itself (seconds; one run, on the "
        "model tuned with kept training rows, whose row hash index, built once per fit on the "
        "first forget, is built beforehand; NAME_full: `step='full'` without a curvature "
        "downdate, the paper's form).",
    ]
    for case in report["cases"]:
        cls = case["scenario"] == "class"
        title = (f"single-class removal (class {a['forget_class']}, k={case['k']:,})" if cls
                 else f"random 1 % (k={case['k']:,})")
        lines += ["", f"## {case['net'].upper()} ({case['n_params']:,} parameters), {title}",
                  "", f"Training {case['train_s']:.1f} s ({case['epoch_s']:.1f} s per epoch), "
                  f"retrain {case['retrain_s']:.1f} s.", ""]
        head = ["method", "forget acc", "KL forget", "KL test", "test acc"]
        if cls:
            head.append("removed-class test acc")
        head += ["MIA AUC", "setup s", "forget s"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in case["rows"]:
            if "error" in r:
                lines.append(f"| {r['method']} | not run: {r['error']} |" + " |" *
                             (len(head) - 2))
                continue
            cells = [r["method"], f"{r['forget_acc']:.3f}", f"{r['kl_forget']:.3f}",
                     f"{r['kl_test']:.3f}", f"{r['test_acc']:.3f}"]
            if cls:
                cells.append(f"{r['removed_class_test_acc']:.3f}")
            cells += [f"{r['mia_auc']:.3f}", f"{r['setup_s']:.2f}", f"{r['forget_s']:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Targets:", ""] + verdicts(case)
    return "\n".join(lines) + "\n"


# ============================================================================== main
def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", "--data", dest="data", default=None)
    p.add_argument("--quick", action="store_true",
                   help="small sizes (< 2 minutes): 3,000 images, 1-2 epochs, 2 retrains")
    p.add_argument("--device", default="cpu", help="torch device of the nets (cpu, cuda, ...)")
    p.add_argument("--inverses", nargs="+",
                   default=["kfac", "ekfac", "kfac_full", "ekfac_full", "woodbury", "block",
                            "dense"],
                   help="SSSE inverse kinds (dense: last layer only; NAME_full, e.g. kfac_full: "
                   "step='full' without a curvature downdate; others as inverse=)")
    p.add_argument("--nets", nargs="+", default=["mlp", "cnn"], choices=list(NETS))
    p.add_argument("--scenarios", nargs="+", default=["random", "class"],
                   choices=["random", "class"])
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--n-val", type=int, default=1000,
                   help="images outside the training set, used only to tune epsilon")
    p.add_argument("--epochs-mlp", type=int, default=5)
    p.add_argument("--epochs-cnn", type=int, default=3)
    p.add_argument("--lr-mlp", type=float, default=1e-3)
    p.add_argument("--lr-cnn", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seeds", type=int, default=3, help="retrained nets (reference band)")
    p.add_argument("--woodbury-m", type=int, default=1024)
    p.add_argument("--woodbury-leave-out", action="store_true",
                   help="woodbury with the estimator's defaults (leave-out step, curvature "
                   "downdate); without it step='full', update_curvature=False, because the "
                   "downdate of the float32 low-rank factor (sampled GGN rows) fails its "
                   "positive-definiteness check on these nets")
    p.add_argument("--memory-budget", default="6GiB",
                   help="memory_budget= of the estimator (woodbury m=1024 on the MLP needs "
                   "3.1 GiB)")
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--block-m", type=int, default=512)
    p.add_argument("--dense-m", type=int, default=2048,
                   help="samples behind the last layer's dense curvature")
    # 6 values per decade: on class removal the score peaks sharply and the grid
    # [0, 0.01, 0.03, 0.1, 0.3, 1, ...] straddled the peak (bench_net_tuning.py)
    p.add_argument("--epsilons", type=float, nargs="+",
                   default=[0.0, *np.logspace(-2, 2, 25).round(6).tolist()],
                   help="grid epsilon is tuned on (default: 0 and 6 values per decade from "
                   "0.01 to 100)")
    p.add_argument("--val-deletions", type=int, default=3,
                   help="validation deletions epsilon is tuned on (mean score), each with its "
                   "own retrained reference")
    p.add_argument("--neggrad-steps", type=int, default=5)
    p.add_argument("--neggrad-lr", type=float, default=1e-3)
    p.add_argument("--forget-class", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="markdown report (.json next to it)")
    p.add_argument("--from-json", default=None,
                   help="only render the markdown of a saved .json report (to stdout)")
    args = p.parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        print(to_markdown(report), end="")
        return report
    if args.quick:
        args.n_train, args.n_test, args.n_val = 1500, 1000, 300
        args.epochs_mlp, args.epochs_cnn, args.seeds, args.val_deletions = 2, 2, 2, 1
        args.epsilons = [0.0, 0.01, 0.1, 1.0, 10.0]
        args.woodbury_m, args.block_m, args.dense_m = 128, 64, 256
    args.epochs = {"mlp": args.epochs_mlp, "cnn": args.epochs_cnn}
    args.lr = {"mlp": args.lr_mlp, "cnn": args.lr_cnn}
    if args.out is None:
        args.out = str(RESULTS / ("nets_quick.md" if args.quick else "nets.md"))
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    data = load_data(args)
    if data is None:
        return None
    rng, X, y, X_val, y_val, X_test, y_test = data
    args.epsilons = sorted(set(args.epsilons))

    def log(msg):
        print(f"{time.perf_counter() - t_start:7.1f}s {msg}", file=sys.stderr, flush=True)

    cases = []
    for kind in args.nets:
        for scenario in args.scenarios:
            cases.append(run_case(kind, scenario, X, y, X_val, y_val, X_test, y_test, args,
                                  rng, log))
    report = {
        "command": "python benchmarks/bench_nets.py " + " ".join(argv if argv is not None
                                                                 else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"
                   + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda")
                      else ""),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load": load,
        "wall_s": time.perf_counter() - t_start,
        "args": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "cases": cases,
    }
    md = to_markdown(report)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


if __name__ == "__main__":
    main()
