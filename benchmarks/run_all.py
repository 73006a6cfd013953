"""Run every benchmark and figure, collect them into ``benchmarks/results/README.md``.

One entry point (also ``python -m sklearn_ssse bench``)::

    python benchmarks/run_all.py            # full sizes (tens of minutes)
    python benchmarks/run_all.py --quick    # small sizes (a few minutes)
    python benchmarks/run_all.py --only digits figures --out /tmp/results
    python benchmarks/run_all.py --data-dir ~/data/fashion-mnist
    python benchmarks/run_all.py --list

Each job runs in its own subprocess (a crash or the memory of one benchmark does not affect the
others), with a timeout. A job's standard output is its markdown report (the benchmark scripts
print markdown tables); it is saved as ``<out>/logs/<job>.md`` and inlined in ``<out>/README.md``
together with the PNG figures the job wrote into ``<out>``, the machine description and the wall
time of every job. Jobs whose script does not exist (yet) are reported as skipped.

Jobs:

* ``benchmarks/bench_*.py``: every benchmark script, with the arguments of :data:`ARGS` (full /
  quick) when it is listed there, else none (``--quick`` is passed in quick mode when the
  script's ``--help`` offers it; ``--figures DIR`` when it offers that, so that it can write
  PNGs next to the report);
* ``figures``: the gallery examples (``examples/plot_*.py``: the paper's Figures 1-3 on digits);
* ``cli_fmnist``: ``sklearn-ssse evaluate`` on Fashion-MNIST, single-class removal.

The jobs that need Fashion-MNIST (:data:`NEEDS_FMNIST`) read it from ``--data-dir`` (default:
``$SKLEARN_SSSE_FASHION_MNIST``, else the Debian package's ``/usr/share/datasets/fashion-mnist``);
without the files they are reported as skipped, with the reason, and the run still succeeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results"

#: arguments of the known benchmark scripts: job name -> (full, quick)
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "census": (["--seeds", "3"], ["--quick"]),
    "digits": (["--repeat", "5"], ["--repeat", "2"]),
    "grid_search": ([], ["--dataset", "cancer"]),
    "fidelity": (["--datasets", "cells", "caravan", "tissue", "mnist5k"], ["--quick"]),
    "torch_fmnist": (["--threads", "1"],
                     ["--threads", "1", "--n-train", "5000", "--epochs", "1",
                      "--woodbury-m", "512", "--block-samples", "1024", "--k", "1", "60"]),
}

#: jobs that read Fashion-MNIST (skipped, with a message, when its IDX files are absent)
NEEDS_FMNIST = {"fmnist_linear", "torch_fmnist", "cli_fmnist", "nets", "kfac", "net_line",
                "net_tuning"}
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def fmnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST folder: ``data_dir``, else the environment's or the Debian default."""
    if data_dir:
        return Path(data_dir).expanduser()
    from sklearn_ssse.datasets import FASHION_MNIST_DIR

    return Path(os.environ.get("SKLEARN_SSSE_FASHION_MNIST") or FASHION_MNIST_DIR)


@dataclass
class Job:
    """One unit of the benchmark run: a command whose stdout is markdown."""

    name: str
    title: str
    commands: list[list[str]]
    needs: list[Path] = field(default_factory=list)
    cwd: Path = ROOT
    why: str = ""  # what the files of ``needs`` are, for the skip message

    def missing(self) -> list[Path]:
        return [p for p in self.needs if not p.exists()]

    def skip_message(self) -> str:
        missing = self.missing()
        if not missing:
            return ""
        if self.why:
            return f"skipped: needs {self.why}; missing: {', '.join(p.name for p in missing)}"
        return f"skipped: {', '.join(str(p) for p in missing)} not found"


@functools.cache
def _script_help(script: Path) -> str:
    try:
        proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, timeout=120, cwd=ROOT, env=_env(1))
        return proc.stdout
    except (subprocess.SubprocessError, OSError):
        return ""


def discover(quick: bool, out: Path, data_dir: str | os.PathLike | None = None) -> list[Job]:
    """Every job, benchmark scripts first (sorted by name), then the figures."""
    data = fmnist_dir(data_dir)
    fmnist = dict(needs=[data / f for f in FMNIST_FILES],
                  why=f"Fashion-MNIST in {data} (pass --data-dir DIR or install the Debian "
                      "package dataset-fashion-mnist)")
    jobs = []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if name in ARGS:
            args = list(ARGS[name][1 if quick else 0])
        else:
            text = _script_help(script)
            args = ["--quick"] if quick and "--quick" in text else []
            if "--figures" in text:
                args += ["--figures", str(out)]
        doc = (script.read_text().split('"""')[1].strip().splitlines() or [name])[0]
        job = Job(name, doc, [[sys.executable, str(script), *args]], [script])
        if name in NEEDS_FMNIST:
            job.commands[0] += ["--data-dir", str(data)]
            job.needs, job.why = [script, *fmnist["needs"]], fmnist["why"]
        jobs.append(job)
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    jobs.append(Job("figures", "Figures 1-3 of the paper on digits (examples/plot_*.py)",
                    [[sys.executable, str(e), "--output", ".", *(["--quick"] * quick)]
                     for e in examples], examples, cwd=out))
    jobs.append(Job(
        "cli_fmnist", "sklearn-ssse evaluate: Fashion-MNIST, forget every training 'Bag' (8)",
        [[sys.executable, "-m", "sklearn_ssse", "evaluate", str(data), "--markdown", "-q",
          "--n-samples", "3000" if quick else "10000", "--forget-class", "8",
          "--threads", "1", "--output", "fmnist_class_removal.png"]],
        cwd=out, **fmnist))
    return jobs


def _env(threads: int | None) -> dict:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


def _machine() -> list[str]:
    import numpy
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [f"- machine: {cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}",
            f"- software: Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"scikit-learn {sklearn.__version__}, torch {torch.__version__} "
            f"(CUDA available: {torch.cuda.is_available()})",
            f"- load average at start (1, 5, 15 min): {load}"]


def run_job(job: Job, out: Path, env: dict, timeout: float) -> dict:
    """Run one job; returns its status, wall time, markdown and the PNGs it wrote."""
    if job.missing():
        return {"status": "skipped", "seconds": 0.0, "figures": [],
                "markdown": f"_{job.skip_message()}._"}
    before = {p: p.stat().st_mtime for p in out.glob("*.png")}
    start = time.perf_counter()
    parts, status = [], "ok"
    for cmd in job.commands:
        shown = " ".join(shlex.quote(str(Path(c).relative_to(ROOT)) if str(c).startswith(
            str(ROOT)) else c) for c in cmd[1:])
        tqdm.write(f"[run_all] {job.name}: python {shown}", file=sys.stderr)
        try:
            proc = subprocess.run(cmd, cwd=job.cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            text = proc.stdout.strip()
            if proc.returncode != 0:
                status = "failed"
                tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                text += f"\n\n_failed with exit code {proc.returncode}:_\n\n```\n{tail}\n```"
        except subprocess.TimeoutExpired as exc:
            status = "timeout"
            partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
            text = (partial or "").strip() + f"\n\n_timed out after {timeout:.0f} s._"
        parts.append(f"`python {shown}`\n\n{_as_markdown(text)}")
    seconds = time.perf_counter() - start
    figures = sorted(p.name for p in out.glob("*.png")
                     if p not in before or p.stat().st_mtime > before[p])
    markdown = "\n\n".join(parts)
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / f"{job.name}.md").write_text(f"# {job.title}\n\n{markdown}\n")
    return {"status": status, "seconds": seconds, "figures": figures, "markdown": markdown}


def _as_markdown(text: str) -> str:
    """Keep markdown as is; wrap plain-text output (no table) in a code block."""
    lines = text.splitlines()
    if not lines:
        return text
    if any(line.lstrip().startswith("|") for line in lines):
        # the report's own headings go one level below the job's
        return "\n".join("#" + line if line.startswith("#") else line for line in lines)
    return "```\n" + text + "\n```"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--out", default=None,
                        help=f"results folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="run only these jobs (see --list)")
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder of the Fashion-MNIST IDX files (default: "
                        "$SKLEARN_SSSE_FASHION_MNIST or /usr/share/datasets/fashion-mnist); the "
                        f"jobs that need it ({', '.join(sorted(NEEDS_FMNIST))}) are skipped, "
                        "with a message, when it is absent")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP / OpenBLAS / MKL threads of the jobs (default 1: small "
                        "problems, and robust on a shared machine; 0 leaves the defaults)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds per command before it is stopped (default 3600)")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else DEFAULT_OUT
    (out / "logs").mkdir(parents=True, exist_ok=True)
    jobs = discover(args.quick, out, args.data_dir)
    if args.list:
        for job in jobs:
            state = "missing" if job.missing() else "ready"
            print(f"{job.name:16s} {state:8s} {job.title}")
            if job.missing():
                print(f"{'':25s} {job.skip_message()}")
        return 0
    if args.only:
        unknown = set(args.only) - {j.name for j in jobs}
        if unknown:
            parser.error(f"unknown jobs {sorted(unknown)}; known: {[j.name for j in jobs]}")
        jobs = [j for j in jobs if j.name in args.only]

    env = _env(args.threads or None)
    env["SKLEARN_SSSE_FASHION_MNIST"] = str(fmnist_dir(args.data_dir))
    machine = _machine()
    mode = "quick" if args.quick else "full"
    bar = tqdm(jobs, desc="benchmarks", unit="job", file=sys.stderr)
    failed = False
    for job in bar:
        bar.set_description(f"benchmarks: {job.name}")
        r = run_job(job, out, env, args.timeout)
        note = f": {job.skip_message().removeprefix('skipped: ')}" if r["status"] == "skipped" \
            else ""
        bar.write(f"[run_all] {job.name}: {r['status']} in {r['seconds']:.1f} s{note}",
                  file=sys.stderr)
        failed |= r["status"] not in ("ok", "skipped")
        if r["status"] != "skipped" or not (out / "logs" / f"{job.name}.json").exists():
            r.update(name=job.name, title=job.title, mode=mode, threads=args.threads,
                     finished=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                     machine=machine)
            (out / "logs" / f"{job.name}.json").write_text(json.dumps(r, indent=1))
    write_report(out, [j.name for j in discover(args.quick, out, args.data_dir)])
    print(f"[run_all] wrote {out / 'README.md'}", file=sys.stderr)
    return 1 if failed else 0


def write_report(out: Path, order: list[str]) -> None:
    """``<out>/README.md`` from the latest run of every job (``<out>/logs/<job>.json``)."""
    runs = {}
    for path in (out / "logs").glob("*.json"):
        r = json.loads(path.read_text())
        runs[r["name"]] = r
    names = [n for n in order if n in runs] + sorted(set(runs) - set(order))
    machines = sorted({"\n".join(runs[n]["machine"][:2]) for n in names})
    lines = ["# Benchmark results", "",
             "Generated by `python benchmarks/run_all.py` (also `python -m sklearn_ssse bench`; "
             "`--quick` for small sizes, `--only NAME` to rerun one job: the report keeps the "
             "latest run of every job). Each job ran in its own process. Wall-clock timings "
             "depend on the machine and on what else runs on it (load averages below); the "
             "quality numbers (distances, ratios, accuracies) do not.", ""]
    for m in machines:
        lines += [m, ""]
    lines += ["| job | what | sizes, BLAS threads | status | wall time | finished | "
              "load at start |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for n in names:
        r = runs[n]
        load = r["machine"][2].rsplit(": ", 1)[-1]
        threads = f"{r['threads']} thread(s)" if r.get("threads") else "default threads"
        lines.append(f"| [{n}](#{n.replace('_', '-')}) | {r['title']} | {r['mode']}, {threads} | "
                     f"{r['status']} | {r['seconds']:.0f} s | {r['finished']} | {load} |")
    for n in names:
        r = runs[n]
        lines += ["", f"## {n.replace('_', '-')}", "", f"_{r['title']}_", "", r["markdown"]]
        lines += [f"\n![{fig}]({fig})" for fig in r["figures"] if (out / fig).exists()]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
