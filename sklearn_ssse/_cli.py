"""Command line: ``python -m sklearn_ssse demo|evaluate|bench`` (also the ``sklearn-ssse`` script).

Argument parsing and printing only: the work is done by the public library functions
:func:`sklearn_ssse.model_selection.evaluate_forgetting`,
:func:`sklearn_ssse.model_selection.plot_forgetting_evaluation` and
:func:`sklearn_ssse.datasets.load_data`. Heavy modules (torch, scikit-learn) are imported only
once a command runs, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path

from . import __version__

#: default epsilon grids of ``evaluate`` (random removal / single-class removal)
DEFAULT_GRID_RATE = "linspace:0:2:9"
DEFAULT_GRID_CLASS = "0,0.5,1,2,5,10,20,50,100"


@contextlib.contextmanager
def _threads(n: int | None):
    """Limit BLAS / OpenMP / torch threads to ``n`` (``None``: unchanged) inside the block, and
    silence scikit-learn's ConvergenceWarning (the retrained reference's L-BFGS)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", ConvergenceWarning)
        if n is not None:
            import torch
            from threadpoolctl import threadpool_limits

            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(n)
            stack.enter_context(threadpool_limits(limits=n))
        yield


def _fmt(c) -> str:
    if isinstance(c, str):
        return c
    if c != c:  # NaN
        return "n/a"
    return "inf" if abs(c) == float("inf") else f"{c:.4g}"


def _table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """Align ``rows`` under ``header`` as a plain text or a markdown table."""
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join(" --- " for _ in header) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_epsilons(spec: str):
    """An epsilon grid from ``"0,0.5,1"``, ``"linspace:0:2:9"`` or ``"logspace:-2:1:13"``.

    Sorted, unique, finite and ``>= 0``; a ``ValueError`` otherwise.

    >>> parse_epsilons("0,1,0.5").tolist(), parse_epsilons("logspace:-1:1:3").tolist()
    ([0.0, 0.5, 1.0], [0.1, 1.0, 10.0])
    """
    import numpy as np

    spec = spec.strip()
    try:
        if spec.startswith(("linspace:", "logspace:")):
            kind, start, stop, num = spec.split(":")
            fn = np.linspace if kind == "linspace" else np.logspace
            eps = fn(float(start), float(stop), int(num))
        else:
            eps = np.array([float(v) for v in spec.split(",") if v.strip()])
    except ValueError as exc:
        raise ValueError(f"cannot parse the epsilon grid {spec!r}: use '0,0.5,1', "
                         "'linspace:0:2:9' or 'logspace:-2:1:13'") from exc
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"the epsilon grid {spec!r} must hold finite values >= 0")
    return np.unique(eps)


def _estimator(args, **ssse):
    from sklearn.linear_model import LogisticRegression

    from ._unlearnable import UnlearnableClassifier

    base = LogisticRegression(C=args.C, max_iter=args.max_iter, tol=args.tol)
    return UnlearnableClassifier(base, random_state=args.random_state, **ssse)


# ================================================================================== demo
def demo(args) -> str:
    """The ``demo`` report: digits, a random share forgotten with each curvature, vs retraining."""
    from .datasets import load_digits_split
    from .model_selection import evaluate_forgetting

    if not 0 < args.forget_rate < 1:
        raise ValueError(f"--forget-rate must be in (0, 1), got {args.forget_rate}")
    X, X_test, y, y_test = load_digits_split(random_state=args.random_state)
    # tol=1e-6 converges in ~170 L-BFGS iterations (0.1 s): a sharp retrained target
    args.max_iter, args.tol = 2000, 1e-6
    runs = {c: evaluate_forgetting(_estimator(args, curvature=c, epsilon=args.epsilon), X, y,
                                   X_test, y_test, forget_rate=args.forget_rate,
                                   epsilons=[args.epsilon], metric="log_loss",
                                   random_state=args.random_state)
            for c in ("empirical_fisher", "ggn")}
    first = runs["empirical_fisher"]
    t_retrain = first.timings["retrain"]  # the second run reuses the cached reference

    def row(name, m, timing):
        return [name, m["log_loss_forget"], m["accuracy_forget"], m["accuracy_test"],
                m["similarity_ratio"], m["parameter_distance"], timing]

    rows = [row("original", first.reference["original"],
                f"fit + curvature {first.timings['fit_curvature']:.2f} s")]
    for curvature, res in runs.items():
        t = res.timings["forget"]
        rows.append(row(f"SSSE {curvature}, eps={args.epsilon:g}",
                        {k: res[k][0] for k in res.reference["original"]},
                        f"forget {1e3 * t:.1f} ms ({t_retrain / t:.0f}x faster)"))
    rows.append(row("retrained (reference)", first.reference["retrained"],
                    f"retrain {t_retrain:.2f} s"))
    header = ["model", "log-loss S", "acc S", "acc test", "sim. ratio", "param dist",
              "wall time"]
    title = (f"digits: n={first.n_train} training samples, forget k={first.n_forget} "
             f"({100 * args.forget_rate:g}%), LogisticRegression(C={args.C:g}); lower sim. "
             "ratio / param dist = closer to the retrained model (0 = equal, 1 = no closer than "
             "the original)")
    return title + "\n\n" + _table(header, rows, markdown=args.markdown)


# ================================================================================== evaluate
def _check_output(args, say) -> None:
    """Before any work: the figure's folder must be writable and matplotlib importable."""
    if not args.output:
        return
    out = Path(args.output)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"--output {out} is a folder, not a file name")
    if not folder.is_dir():
        raise ValueError(f"cannot write the figure {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"cannot write the figure {out}: permission denied")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        say("note: matplotlib is not installed, so no figure is written "
            "(pip install 'sklearn-ssse[plot]')")
        args.output = ""


#: table column of each measure that can select epsilon (``result.selected_by``)
_SELECTION_COLUMNS = {"parameter_distance": "param dist", "confusion_distance": "conf. dist",
                      "forget_retain": "forget/retain", "similarity_ratio": "sim. ratio"}


def _report(result, name: str, markdown: bool) -> str:
    from .model_selection._evaluate import SELECTION_LABELS

    header = ["model", "epsilon", f"sim. ratio ({result.metric})",
              _SELECTION_COLUMNS[result.selected_by], "certificate", "acc S", "acc test",
              "MIA AUC"]

    def row(label, eps, m):
        return [label, eps, m["similarity_ratio"], m[result.selected_by], m["certificate"],
                m["accuracy_forget"], m["accuracy_test"], m["mia_auc"]]

    keys = list(result.reference["original"])
    rows = [row("original", "-", result.reference["original"])]
    for i, eps in enumerate(result.epsilons):
        label = "SSSE" + (" (best)" if i == result.best_index else "")
        rows.append(row(label, eps, {k: result[k][i] for k in keys}))
    rows.append(row("retrained", "-", result.reference["retrained"]))
    what = (f"class {result.forget_class!r}" if result.mode == "class"
            else f"{100 * result.forget_rate:g}% at random")
    est, t = result.estimator, result.timings
    model = est.estimator[-1] if hasattr(est.estimator, "steps") else est.estimator
    C = getattr(model, "C", None)
    title = (f"{name}: forget {what}: k={result.n_forget} of n={result.n_train} training "
             f"samples; {type(model).__name__}{'' if C is None else f'(C={C:g})'}, "
             f"curvature={est.curvature}, inverse={result.inverse}. fit + curvature "
             f"{t['fit_curvature']:.2f} s, retrain {t['retrain']:.2f} s, SSSE step "
             f"{1e3 * t['forget']:.1f} ms")
    return (f"{title}\n\n{_table(header, rows, markdown)}\n\nbest epsilon: "
            f"{result.best_epsilon:g} (selected by {result.selected_by}: the lowest "
            f"{SELECTION_LABELS[result.selected_by]} to the retrained model)")


def evaluate(args) -> int:
    """The ``evaluate`` command: load, check, evaluate, print, plot."""
    say = print
    _check_output(args, say)
    epsilons = None if args.epsilons is None else parse_epsilons(args.epsilons)
    damping = args.damping if args.damping == "auto" else float(args.damping)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .datasets import load_data
    from .model_selection import evaluate_forgetting, plot_forgetting_evaluation

    data = load_data(args.data, target=args.target, labels=args.labels,
                     n_samples=args.n_samples, random_state=args.random_state)
    if data.target_name is not None:
        say(f"{data.name}: target {data.target_name}")
    if data.encoded_columns:
        say(f"{data.name}: one-hot encoded text column(s) {', '.join(data.encoded_columns)} "
            f"into {data.X.shape[1]} features")
    est = _estimator(args, curvature=args.curvature, inverse=args.inverse, damping=damping,
                     fisher_batch_size=args.fisher_batch_size,
                     fisher_max_samples=args.fisher_max_samples)
    if args.standardize:
        est = make_pipeline(StandardScaler(), est)
    with _threads(args.threads):
        result = evaluate_forgetting(
            est, data.X, data.y, data.X_test, data.y_test,
            forget_rate=None if args.forget_class is not None else args.forget_rate,
            forget_class=args.forget_class, epsilons=epsilons, metric=args.metric,
            test_size=args.test_size, random_state=args.random_state, progress=not args.quiet)
    say(_report(result, data.name, args.markdown))
    if args.output:
        plot_forgetting_evaluation(
            result, args.output, title=f"{data.name}: SSSE over epsilon ({result.n_forget} of "
                                       f"{result.n_train} samples forgotten)")
        say(f"figure written to {args.output}")
    return 0


# ================================================================================== bench
def bench(argv: list[str]) -> int:
    """Run ``benchmarks/run_all.py`` of the source checkout with ``argv``."""
    import runpy

    env = os.environ.get("SKLEARN_SSSE_BENCHMARKS")
    here = Path(env) if env else Path(__file__).resolve().parent.parent / "benchmarks"
    script = here / "run_all.py"
    if not script.exists():
        raise FileNotFoundError(
            f"{script} not found: `bench` runs the benchmarks of a source checkout (git clone "
            "the repository, or set SKLEARN_SSSE_BENCHMARKS to its benchmarks/ folder)")
    module = runpy.run_path(str(script), run_name="sklearn_ssse_bench")
    return int(module["main"](argv) or 0)


# ================================================================================== parser
_EPILOG = """\
examples:
  sklearn-ssse demo
  sklearn-ssse evaluate data.csv --target label --forget-rate 0.05
  sklearn-ssse evaluate /usr/share/datasets/fashion-mnist --n-samples 10000 \\
      --forget-class 8 --epsilons 0,1,5,10,50 --output fmnist_class8.png
  sklearn-ssse bench --quick
"""


def _wrap(*paragraphs: str) -> str:
    import textwrap

    return "\n\n".join(textwrap.fill(p, 79, break_on_hyphens=False) for p in paragraphs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sklearn-ssse``."""
    parser = argparse.ArgumentParser(
        prog="sklearn-ssse", epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Single-step sample erasure (SSSE): forget training samples from a fitted "
                    "classifier with one preconditioned step instead of retraining it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version of sklearn-ssse and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="bundled digits: original / SSSE / retrained table (a few seconds)",
        description="Fit a LogisticRegression on scikit-learn's bundled digits data (no "
                    "download), forget a random share of the training set with one SSSE step "
                    "(empirical Fisher and GGN curvature) and compare with the model retrained "
                    "from scratch without those samples.")
    p.add_argument("--forget-rate", type=float, default=0.05, metavar="R",
                   help="share of the training set to forget (default: 0.05)")
    p.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength of the LogisticRegression (default: 1.0)")
    p.add_argument("--epsilon", type=float, default=1.0,
                   help="SSSE step size; 1 is the Newton step with --curvature ggn (default: 1)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the split and of the forget set (default: 0)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS / torch threads; one is fastest on this small problem (default: 1)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")

    e = sub.add_parser(
        "evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="your data: forget a share or a class over an epsilon grid, table + PNG",
        description=_wrap(
            "Fit a LogisticRegression wrapped in UnlearnableClassifier on a data set, forget a "
            "random share of the training samples or a whole class, evaluate every epsilon of "
            "a grid in closed form, compare with the model retrained from scratch, print a "
            "table and write a PNG of the similarity ratio and the normalized parameter "
            "distance against epsilon. The best epsilon is the one with the lowest parameter "
            "distance (class removal: confusion distance); the library's evaluate_forgetting "
            "selects a net's epsilon by forget_retain instead, the prediction distance to the "
            "retrained net on S and on kept rows.",
            "Columns: sim. ratio = d(SSSE, retrained) / (d(SSSE, original) + d(SSSE, "
            "retrained)) with d the difference of the performance on S (0 = behaves like the "
            "retrained model, 1 = like the original); param dist = ||theta_SSSE - "
            "theta_retrained|| / ||theta_original - theta_retrained|| (class removal: the "
            "normalized confusion distance on S instead); MIA AUC = loss-based "
            "membership-inference attack, S against the test set (class removal: the test "
            "samples of the class); about 0.5 = S looks unseen."))
    e.add_argument("data", help="a .csv/.tsv/.txt file (target: last column or --target; text "
                   "columns are one-hot encoded), a "
                   ".npz with arrays X, y (optional X_test, y_test), a .npy matrix (target: last "
                   "column or --labels), or a folder of Fashion-MNIST IDX .gz files")
    g = e.add_argument_group("data")
    g.add_argument("--target", default=None, metavar="COL",
                   help="CSV: name or index of the target column; .npy: its index; "
                   "negative indices count from the end (default: the last column)")
    g.add_argument("--labels", default=None, metavar="FILE",
                   help=".npy data only: a separate .npy / text file of labels")
    g.add_argument("--n-samples", type=int, default=None, metavar="N",
                   help="use a random stratified subset of N training samples (default: all)")
    g.add_argument("--test-size", type=float, default=0.25, metavar="F",
                   help="held-out share when the data has no test set (default: 0.25)")
    g.add_argument("--standardize", action="store_true",
                   help="standardize the features (fitted on all training data)")
    g = e.add_argument_group("what to forget (one of)")
    mx = g.add_mutually_exclusive_group()
    mx.add_argument("--forget-rate", type=float, default=0.05, metavar="R",
                    help="forget this share of the training samples, at random (default: 0.05)")
    mx.add_argument("--forget-class", default=None, metavar="LABEL",
                    help="forget every training sample of this class (single-class removal)")
    g = e.add_argument_group("SSSE and model")
    g.add_argument("--epsilons", default=None, metavar="GRID",
                   help="epsilon grid: '0,0.5,1,2', 'linspace:0:2:9' or 'logspace:-2:1:13' "
                   f"(default: {DEFAULT_GRID_RATE} for --forget-rate, "
                   f"{DEFAULT_GRID_CLASS} for --forget-class)")
    g.add_argument("--curvature", choices=["ggn", "empirical_fisher"], default="ggn",
                   help="ggn: the exact Hessian for logistic regression (default); "
                   "empirical_fisher: the paper's mean outer product of gradients")
    from ._curvature._registry import auto_order, choices

    g.add_argument("--inverse", default="auto", choices=list(choices()),
                   help="how F^-1 is held (default: auto = the first of "
                   f"{', '.join(auto_order())} that fits the estimator's 2 GiB memory budget)")
    g.add_argument("--damping", default="auto", metavar="LAMBDA",
                   help="'auto' (the model's own L2 penalty 1/(C n)) or a number (default: auto)")
    g.add_argument("--fisher-batch-size", type=int, default=1, metavar="B",
                   help="mini-batch Fisher: average gradients over B samples (default: 1)")
    g.add_argument("--fisher-max-samples", type=int, default=None, metavar="M",
                   help="build the curvature from M random samples (default: all)")
    g.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength of the LogisticRegression (default: 1.0)")
    g.add_argument("--max-iter", type=int, default=1000, metavar="N",
                   help="L-BFGS iterations of the LogisticRegression (default: 1000)")
    g.add_argument("--tol", type=float, default=1e-6,
                   help="L-BFGS tolerance; the retrained reference must be well converged for "
                   "the distances to mean something (default: 1e-6)")
    g.add_argument("--metric", default="auto", choices=["auto", "log_loss", "accuracy",
                                                        "roc_auc"],
                   help="performance measure of the similarity ratio (default: auto = log_loss "
                   "for --forget-rate, accuracy for --forget-class)")
    g = e.add_argument_group("output")
    g.add_argument("--output", "-o", default="ssse_evaluate.png", metavar="PNG",
                   help="figure to write (default: ssse_evaluate.png); '' writes none; "
                   "without matplotlib none is written, with a note")
    g.add_argument("--markdown", action="store_true", help="print a markdown table")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    g.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the split, subset and forget set (default: 0)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="limit BLAS / torch threads (default: library defaults)")

    b = sub.add_parser(
        "bench", help="run every benchmark (benchmarks/run_all.py of a source checkout)",
        description="Run the benchmark scripts of benchmarks/ and write their markdown tables "
                    "and figures to benchmarks/results/ (needs a source checkout). Options are "
                    "those of benchmarks/run_all.py.")
    b.add_argument("--quick", action="store_true", help="small sizes (minutes, not hours)")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default: benchmarks/results)")
    b.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run only these benchmarks (e.g. digits fmnist_linear)")
    b.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder of the Fashion-MNIST IDX files (default: "
                   "$SKLEARN_SSSE_FASHION_MNIST or /usr/share/datasets/fashion-mnist); the "
                   "benchmarks that need absent data are skipped with a message")
    return parser



# ================================================================================== main
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sklearn_ssse`` and of the ``sklearn-ssse`` script.

    Returns 0 on success; exits with status 2 and a message on stderr on a bad input.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            with _threads(args.threads):
                print(demo(args))
            return 0
        if args.command == "bench":
            forward = ((["--quick"] if args.quick else []) + (["--out", args.out] if args.out
                                                               else [])
                       + (["--data-dir", args.data_dir] if args.data_dir else []))
            if args.only:
                forward += ["--only", *args.only]
            return bench(forward)
        return evaluate(args)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"sklearn-ssse {args.command}: error: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
