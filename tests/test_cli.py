"""The command line: ``python -m sklearn_ssse demo|evaluate|bench``, and the library functions
behind it: :func:`sklearn_ssse.datasets.load_data`,
:func:`sklearn_ssse.model_selection.evaluate_forgetting` and
:func:`sklearn_ssse.model_selection.plot_forgetting_evaluation`."""

import gzip
import json
import runpy
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ssse import UnlearnableClassifier
from sklearn_ssse.__main__ import build_parser, main
from sklearn_ssse.datasets import load_data
from sklearn_ssse.model_selection import evaluate_forgetting, plot_forgetting_evaluation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(table: str) -> dict:
    """Parse a text table of the CLI into {first column: [other columns]}."""
    lines = [ln for ln in table.splitlines() if " | " in ln]
    out = {}
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.split(" | ")]
        out.setdefault(cells[0], []).append(cells[1:])
    return out


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    """Wine as a CSV with a header and string labels in a named, non-last column."""
    X, y = load_wine(return_X_y=True)
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    path = tmp_path_factory.mktemp("data") / "wine.csv"
    with open(path, "w") as f:
        f.write("cultivar," + ",".join(f"f{i}" for i in range(X.shape[1])) + "\n")
        for label, row in zip(names, X):
            f.write(label + "," + ",".join(f"{v:.6g}" for v in row) + "\n")
    return path


# ------------------------------------------------------------------------------------ demo
def test_demo_table_compares_original_ssse_retrained(capsys):
    assert main(["demo", "--forget-rate", "0.05", "--threads", "1"]) == 0
    report = capsys.readouterr().out
    rows = _rows(report)
    assert list(rows) == ["original", "SSSE empirical_fisher, eps=1", "SSSE ggn, eps=1",
                          "retrained (reference)"]
    # columns: log-loss S, acc S, acc test, sim. ratio, param dist, wall time
    orig, ef, ggn, re = (rows[k][0] for k in rows)
    assert float(orig[3]) == 1.0 and float(orig[4]) == 1.0
    assert float(re[3]) == 0.0 and float(re[4]) == 0.0
    # the GGN (Newton) step lands much closer to the retrained model than the original
    assert float(ggn[4]) < 0.5
    assert float(ggn[3]) < 0.5
    # forgetting raises the loss on S towards the retrained model's
    assert float(orig[0]) < float(ggn[0]) <= float(re[0]) * 1.1
    assert "k=68" in report and "x faster" in report


def test_demo_command_prints_and_is_fast(capsys):
    import time

    t0 = time.perf_counter()
    assert main(["demo", "--forget-rate", "0.02", "--markdown"]) == 0
    assert time.perf_counter() - t0 < 30
    out = capsys.readouterr().out
    assert "| original |" in out and "| retrained (reference) |" in out
    assert "| --- |" in out


def test_demo_rejects_bad_rate(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--forget-rate", "1.5"])
    assert e.value.code == 2 and "--forget-rate must be in (0, 1)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ grid
@pytest.mark.parametrize("bad", ["a,b", "-1,2", "linspace:0:1", "", "nan"])
def test_bad_epsilon_grids_are_refused_before_any_work(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "not_read.csv"), f"--epsilons={bad}", "-o", ""])
    assert e.value.code == 2 and "epsilon grid" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ data
def test_load_csv_with_header_named_target_and_string_labels(wine_csv):
    data = load_data(wine_csv, target="cultivar")
    assert data.X.shape == (178, 13) and data.X.dtype == np.float64
    assert set(data.y.tolist()) == {"barolo", "grignolino", "barbera"}
    assert data.X_test is None and data.name == "wine.csv"
    X, _ = load_wine(return_X_y=True)
    np.testing.assert_allclose(data.X, X, rtol=1e-5)
    # the same column by index; and a subset
    assert load_data(wine_csv, target="0").y.tolist() == data.y.tolist()
    sub = load_data(wine_csv, target="cultivar", n_samples=50)
    assert sub.X.shape == (50, 13) and len(set(sub.y.tolist())) == 3


def test_load_csv_without_header_integer_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("0.1,0.2,1\n0.3,0.4,0\n0.5,0.6,1\n")
    data = load_data(path)
    assert data.X.tolist() == [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    assert data.y.tolist() == [1, 0, 1] and data.y.dtype.kind == "i"


def test_load_numpy_formats(tmp_path):
    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "a.npz", X=X[:100], y=y[:100], X_test=X[100:], y_test=y[100:])
    d = load_data(tmp_path / "a.npz")
    assert d.X.shape == (100, 4) and d.X_test.shape == (50, 4)
    assert d.y_test.tolist() == y[100:].tolist()
    np.save(tmp_path / "b.npy", np.c_[X, y])
    d = load_data(tmp_path / "b.npy")
    assert d.X.shape == (150, 4) and d.y.tolist() == y.tolist()
    np.save(tmp_path / "c.npy", X)
    np.save(tmp_path / "c_labels.npy", y)
    d = load_data(tmp_path / "c.npy", labels=tmp_path / "c_labels.npy")
    assert d.X.shape == (150, 4) and d.y.tolist() == y.tolist()


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_load_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 4, 4)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    d = load_data(tmp_path)
    assert d.X.shape == (30, 16) and d.X_test.shape == (10, 16)
    assert d.X.max() <= 1.0 and d.y.tolist() == (np.arange(30) % 3).tolist()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "missing.csv")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(ValueError, match="unknown format"):
        load_data(tmp_path / "x.parquet")
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n2,3\n")
    with pytest.raises(ValueError, match="row 3 has 2 fields"):
        load_data(tmp_path / "ragged.csv")
    (tmp_path / "reg.csv").write_text("1,0.5\n2,1.5\n")
    with pytest.raises(ValueError, match="class labels"):
        load_data(tmp_path / "reg.csv")


def _seven_columns(tmp_path):
    path = tmp_path / "seven.csv"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = (X[:, 0] > 0).astype(int)
    path.write_text("".join(",".join(f"{v:.4f}" for v in row) + f",{t}\n"
                            for row, t in zip(X, y)))
    return path


def test_target_index_out_of_range_is_an_error(tmp_path, capsys):
    path = _seven_columns(tmp_path)
    for bad in ("9", "7", "-8"):
        with pytest.raises(ValueError, match="out of range: the data has 7 columns"):
            load_data(path, target=bad)
    assert load_data(path, target="-1").target_name == "column 6"
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(path), "--target", "9", "-o", ""])
    assert e.value.code == 2 and "out of range" in capsys.readouterr().err
    np.save(tmp_path / "m.npy", np.c_[np.zeros((4, 2)), [0, 1, 0, 1]])
    with pytest.raises(ValueError, match="out of range"):
        load_data(tmp_path / "m.npy", target=3)


def test_header_only_csv_is_a_clear_error(tmp_path):
    (tmp_path / "h.csv").write_text("age,height,label\n")
    with pytest.raises(ValueError, match="header row .* but no data rows"):
        load_data(tmp_path / "h.csv")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no data"):
        load_data(tmp_path / "empty.csv")


def test_missing_values_have_their_own_message(tmp_path):
    (tmp_path / "m.csv").write_text("a,b,y\n1,,0\n2,3,1\n4,NA,0\n")
    with pytest.raises(ValueError, match=r"missing values in column\(s\) b \(2 cells, the "
                                         r"first in line 2\)"):
        load_data(tmp_path / "m.csv")
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,?\n")
    with pytest.raises(ValueError, match=r"missing values in column\(s\) y"):
        load_data(tmp_path / "t.csv")
    np.savez(tmp_path / "n.npz", X=[[1.0, np.nan], [2.0, 3.0]], y=[0, 1])
    with pytest.raises(ValueError, match="missing values"):
        load_data(tmp_path / "n.npz")


def test_text_columns_are_one_hot_encoded(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 120
    age = rng.integers(18, 70, n)
    work = rng.choice(["Private", "State-gov", "Self-emp"], n)
    edu = rng.choice(["HS-grad", "Bachelors"], n)
    income = np.where((age > 40) ^ (edu == "Bachelors"), ">50K", "<=50K")
    path = tmp_path / "adult.csv"
    path.write_text("age, workclass, education, income\n" + "".join(
        f"{a}, {w}, {e}, {t}\n" for a, w, e, t in zip(age, work, edu, income)))
    data = load_data(path)
    assert data.encoded_columns == ["workclass", "education"]
    assert data.X.shape == (n, 1 + 3 + 2) and data.target_name == "income"
    assert data.feature_names[:2] == ["age", "workclass=Private"]
    np.testing.assert_array_equal(data.X[:, 1:4].sum(axis=1), 1.0)
    assert data.encoder.categories_[1].tolist() == ["Bachelors", "HS-grad"]
    assert set(data.y.tolist()) == {">50K", "<=50K"}
    assert main(["evaluate", str(path), "--standardize", "--epsilons", "0,1", "-o", "", "-q",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "target income" in out
    assert "one-hot encoded text column(s) workclass, education into 6 features" in out


def test_output_is_checked_before_the_work(tmp_path, capsys, monkeypatch):
    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "iris.npz"), "-o", str(tmp_path / "no" / "x.png")])
    captured = capsys.readouterr()
    assert e.value.code == 2 and "folder" in captured.err and "does not exist" in captured.err
    assert captured.out == ""  # nothing was computed
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "iris.npz"), "-o", str(tmp_path)])
    assert e.value.code == 2 and "is a folder" in capsys.readouterr().err
    # without matplotlib: one line of note, the table, no figure, exit 0
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    png = tmp_path / "fig.png"
    assert main(["evaluate", str(tmp_path / "iris.npz"), "--epsilons", "0,1", "-o", str(png),
                 "-q", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "matplotlib is not installed" in out and "best epsilon" in out
    assert "figure written" not in out and not png.exists()


# ------------------------------------------------------------------------------------ evaluate
def _logistic(C=1.0, **ssse):
    return UnlearnableClassifier(LogisticRegression(C=C, max_iter=1000, tol=1e-6), **ssse)


def test_evaluate_random_removal_finds_the_newton_step():
    X, y = load_breast_cancer(return_X_y=True)
    est = make_pipeline(StandardScaler(), _logistic(C=0.1))
    res = evaluate_forgetting(est, X, y, forget_rate=0.05, epsilons=[0, 0.5, 1, 1.5])
    assert res.mode == "rate" and res.metric == "log_loss"
    assert res.n_train == 426 and res.n_forget == 22
    # epsilon = 0 is the original model; the GGN step at epsilon = 1 is the Newton step
    assert res.parameter_distance[0] == pytest.approx(1.0)
    assert res.similarity_ratio[0] == pytest.approx(1.0)
    assert res.best_epsilon == 1.0 and res.parameter_distance[2] < 0.2
    assert res.similarity_ratio[2] < 0.2
    # ||theta* + eps delta - theta_re|| is a convex function of epsilon
    d = res.parameter_distance
    assert d[1] <= (d[0] + d[2]) / 2 + 1e-12 and d[2] <= (d[1] + d[3]) / 2 + 1e-12
    assert res.reference["retrained"]["parameter_distance"] == 0.0
    assert set(res.timings) == {"fit_curvature", "retrain", "forget"}
    assert res.selected_by == "parameter_distance" and res.best_index == 2
    # the scores are those of epsilon_sweep (negated: the sweep's scores are higher-is-better)
    np.testing.assert_allclose(res.cv_results["mean_test_parameter_distance"],
                               -res.parameter_distance)
    assert res.reference["original"]["accuracy_forget"] == res.accuracy_forget[0]
    assert res.log_loss_forget[2] > res.log_loss_forget[0]  # forgetting raises the loss on S


def test_evaluate_class_removal_erases_the_class():
    X, y = load_iris(return_X_y=True)
    res = evaluate_forgetting(_logistic(), X, y, forget_class="2", epsilons=[0, 1, 100])
    assert res.mode == "class" and res.metric == "accuracy" and res.forget_class == 2
    _, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    assert res.n_forget == np.sum(y_train == 2) and res.n_train == len(y_train)
    assert res.selected_by == "confusion_distance"
    assert res.parameter_distance[0] == pytest.approx(1.0)  # on the classes the reference knows
    assert res.accuracy_forget[0] > 0.9 and res.accuracy_forget[-1] == 0.0
    assert res.confusion_distance[0] == pytest.approx(1.0)
    assert res.reference["retrained"]["accuracy_forget"] == 0.0
    with pytest.raises(ValueError, match="not a class"):
        evaluate_forgetting(_logistic(), X, y, forget_class="7")
    with pytest.raises(ValueError, match="forget_rate"):
        evaluate_forgetting(_logistic(), X, y, forget_rate=1.5)


def test_plot_evaluation_writes_png(tmp_path):
    X, y = load_iris(return_X_y=True)
    res = evaluate_forgetting(_logistic(), X, y, forget_rate=0.1,
                              epsilons=[0, 0.01, 0.1, 1, 10])
    fig = plot_forgetting_evaluation(res, tmp_path / "e.png")
    assert (tmp_path / "e.png").read_bytes()[:8] == PNG_MAGIC
    left, right = fig.axes
    assert left.get_xscale() == "symlog"  # log-spaced grid with 0
    assert "parameter distance" in right.get_ylabel()


@pytest.fixture(scope="module")
def net_evaluations():
    """``evaluate_forgetting`` of the digits MLP (tests/_nets.py) on its default grids: class 3
    (where the linear models' selection rule goes wrong on a net) and a random 5 %."""
    pytest.importorskip("skorch")
    import torch
    from _nets import digits_net, digits_split

    torch.set_num_threads(1)
    X, X_test, y, y_test = digits_split()
    out = {}
    from sklearn_ssse.model_selection._evaluate import DEFAULT_EPSILONS_CLASS

    # the class removal on the linear models' grid, to show what their selection rule picks
    # there; the random removal on the nets' own default grid
    for label, what in {"class": {"forget_class": 3, "epsilons": DEFAULT_EPSILONS_CLASS},
                        "rate": {"forget_rate": 0.05}}.items():
        torch.manual_seed(0)
        out[label] = evaluate_forgetting(UnlearnableClassifier(digits_net(), random_state=0),
                                         X, y, X_test, y_test, **what)
    return out


@pytest.mark.parametrize("mode", ["class", "rate"])
def test_evaluate_selects_a_nets_epsilon_by_its_default_scorer(net_evaluations, mode):
    """A net's epsilon is selected by forget_retain (the nets' default scorer), which keeps the
    test accuracy within 2 points of the retrained net; on the class removal the linear models'
    rule (lowest confusion distance on S) picks a step that wrecks the net."""
    from sklearn_ssse.model_selection._evaluate import DEFAULT_EPSILONS_CLASS

    res = net_evaluations[mode]
    assert res.selected_by == "forget_retain" and res.mode == mode
    assert res.best_index == int(np.nanargmin(res.forget_retain))
    acc_re = res.reference["retrained"]["accuracy_test"]
    assert res.accuracy_test[res.best_index] >= acc_re - 0.02, (res.best_epsilon, acc_re)
    # forget_retain: 1 at epsilon = 0 (the original), 0 for the retrained net
    assert res.forget_retain[0] == 1.0 == res.reference["original"]["forget_retain"]
    assert res.reference["retrained"]["forget_retain"] == 0.0
    if mode == "rate":  # the nets' default grid: 0 and six values per decade, 0.01 to 10
        np.testing.assert_allclose(res.epsilons, np.r_[0, np.logspace(-2, 1, 19)])
    if mode == "class":
        np.testing.assert_array_equal(res.epsilons, DEFAULT_EPSILONS_CLASS)
        assert res.accuracy_test[-1] < 0.5  # the largest step wrecks the net ...
        assert res.forget_retain[-1] > 2  # ... and is ranked below epsilon = 0
        old = int(np.nanargmin(res.confusion_distance))  # the selection before issue 12
        assert res.epsilons[old] == 5.0 and res.accuracy_test[old] < acc_re - 0.1
        assert res.best_epsilon < res.epsilons[old]


def test_report_and_plot_of_a_net_name_the_selecting_scorer(net_evaluations, tmp_path):
    from sklearn_ssse._cli import _report

    res = net_evaluations["class"]
    out = _report(res, "digits", markdown=False)
    rows = _rows(out)
    header = out.splitlines()[2]
    assert "forget/retain" in header and "param dist" not in header
    assert "NeuralNetClassifier, curvature=ggn" in out
    assert f"best epsilon: {res.best_epsilon:g} (selected by forget_retain" in out
    # the column shows the measure that selected (the best row has its lowest value)
    col = header.split(" | ").index("forget/retain") - 1
    best = float(rows["SSSE (best)"][0][col])
    assert best == pytest.approx(np.nanmin(res.forget_retain), rel=1e-3)
    fig = plot_forgetting_evaluation(res, tmp_path / "net.png")
    assert "forget/retain" in fig.axes[1].get_ylabel()
    np.testing.assert_array_equal(fig.axes[1].get_lines()[0].get_ydata(), res.forget_retain)


def test_evaluate_command_csv(wine_csv, tmp_path, capsys):
    png = tmp_path / "curves.png"
    code = main(["evaluate", str(wine_csv), "--target", "cultivar", "--standardize",
                 "--epsilons", "0,1,2", "--forget-rate", "0.05", "-o", str(png), "-q",
                 "--threads", "1"])
    assert code == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["original", "SSSE", "SSSE (best)", "retrained"]
    assert rows["SSSE (best)"][0][0] == "1"
    assert "best epsilon: 1" in out and png.read_bytes()[:8] == PNG_MAGIC
    assert "(selected by parameter_distance: the lowest normalized parameter distance" in out
    assert "wine.csv: target cultivar" in out


def test_evaluate_command_class_removal(tmp_path, capsys):
    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    code = main(["evaluate", str(tmp_path / "iris.npz"), "--forget-class", "0",
                 "--epsilons", "0,10,100", "-o", "", "-q", "--threads", "1", "--markdown"])
    assert code == 0
    out = capsys.readouterr().out
    assert "forget class 0" in out and "conf. dist" in out and "| retrained |" in out
    assert "figure written" not in out


def test_evaluate_progress_bar_on_stderr(tmp_path, capsys):
    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    assert main(["evaluate", str(tmp_path / "iris.npz"), "--epsilons", "0,1", "-o", "",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "fit + ggn curvature" in err and "epsilon grid" in err and "retrain" in err


def test_evaluate_command_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "missing.csv")])
    assert e.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "iris.npz", X=np.zeros((4, 2)), y=[0, 1, 0, 1])
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "iris.npz"), "--epsilons", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):  # mutually exclusive
        main(["evaluate", "a.csv", "--forget-rate", "0.1", "--forget-class", "1"])


# ------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("command, expected", [
    ([], ["demo", "evaluate", "bench"]),
    (["demo"], ["--forget-rate", "--epsilon", "--C", "--threads"]),
    (["evaluate"], ["--forget-class", "--epsilons", "--curvature", "--inverse", "--damping",
                    "--output", "similarity", "membership-inference", "IDX"]),
    (["bench"], ["--quick", "--only", "--out"]),
])
def test_help_explains_options(command, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(command + ["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in expected:
        assert word in text


def test_every_option_has_a_help_text():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 15, (name, action.dest)


def test_version(capsys):
    import sklearn_ssse

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"sklearn-ssse {sklearn_ssse.__version__}"
    assert sklearn_ssse.__version__[0].isdigit()


def test_module_and_console_script_entry_points():
    proc = subprocess.run([sys.executable, "-m", "sklearn_ssse", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "evaluate" in proc.stdout
    eps = entry_points(group="console_scripts", name="sklearn-ssse")
    assert [ep.value for ep in eps] in ([], ["sklearn_ssse._cli:main"])


# ------------------------------------------------------------------------------------ bench
def test_bench_forwards_options(tmp_path, monkeypatch, capsys):
    (tmp_path / "run_all.py").write_text(
        "def main(argv=None):\n    print('ARGV', argv)\n    return 0\n")
    monkeypatch.setenv("SKLEARN_SSSE_BENCHMARKS", str(tmp_path))
    assert main(["bench", "--quick", "--only", "digits", "torch", "--out", "res"]) == 0
    out = capsys.readouterr().out
    assert "ARGV ['--quick', '--out', 'res', '--only', 'digits', 'torch']" in out


def test_bench_without_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKLEARN_SSSE_BENCHMARKS", str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main(["bench"])
    assert e.value.code == 2 and "source checkout" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ run_all
RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"


def test_run_all_lists_the_jobs(capsys):
    module = runpy.run_path(str(RUN_ALL), run_name="run_all")
    assert module["main"](["--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "figures" in names and "cli_fmnist" in names and "digits" in names


def test_run_all_skips_what_needs_absent_data(tmp_path, capsys):
    module = runpy.run_path(str(RUN_ALL), run_name="run_all")
    absent = tmp_path / "no-fashion-mnist"
    code = module["main"](["--quick", "--only", "fmnist_linear", "cli_fmnist", "--data-dir",
                           str(absent), "--out", str(tmp_path / "out"), "--threads", "1"])
    assert code == 0  # skipped jobs do not fail the run
    err = capsys.readouterr().err
    assert f"fmnist_linear: skipped in 0.0 s: needs Fashion-MNIST in {absent}" in err
    report = (tmp_path / "out" / "README.md").read_text()
    assert report.count("| skipped |") == 2 and "--data-dir" in report
    assert module["main"](["--list", "--data-dir", str(absent)]) == 0
    assert "skipped: needs Fashion-MNIST" in capsys.readouterr().out


def test_run_all_job_report(tmp_path):
    module = runpy.run_path(str(RUN_ALL), run_name="run_all")
    Job, run_job, env = module["Job"], module["run_job"], module["_env"](1)
    table = ("import pathlib; pathlib.Path('f.png').write_bytes(b'x'); "
             "print('## title\\n| a | b |\\n| --- | --- |\\n| 1 | 2 |')")
    ok = run_job(Job("fake", "a fake job", [[sys.executable, "-c", table]], cwd=tmp_path),
                 tmp_path, env, timeout=60)
    assert ok["status"] == "ok" and ok["figures"] == ["f.png"]
    assert "### title" in ok["markdown"] and "| 1 | 2 |" in ok["markdown"]
    assert (tmp_path / "logs" / "fake.md").read_text().startswith("# a fake job")
    bad = run_job(Job("bad", "fails", [[sys.executable, "-c", "raise SystemExit(3)"]]),
                  tmp_path, env, timeout=60)
    assert bad["status"] == "failed" and "exit code 3" in bad["markdown"]
    slow = run_job(Job("slow", "hangs", [[sys.executable, "-c", "import time; time.sleep(30)"]]),
                   tmp_path, env, timeout=1)
    assert slow["status"] == "timeout"
    skipped = run_job(Job("none", "missing", [["x"]], needs=[tmp_path / "nope.py"]), tmp_path,
                      env, timeout=1)
    assert skipped["status"] == "skipped"


def test_run_all_report_keeps_the_latest_run_of_every_job(tmp_path, capsys):
    module = runpy.run_path(str(RUN_ALL), run_name="run_all")
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "a.png").write_bytes(b"x")
    for name, status in (("alpha", "ok"), ("beta", "failed")):
        (logs / f"{name}.json").write_text(json.dumps({
            "name": name, "title": f"the {name} job", "mode": "quick", "threads": 1,
            "status": status, "seconds": 2.0, "figures": ["a.png", "gone.png"],
            "markdown": f"| {name} |", "finished": "today",
            "machine": ["- machine: m", "- software: s", "- load: 1.0, 2.0, 3.0"]}))
    module["write_report"](tmp_path, ["beta", "alpha"])
    text = (tmp_path / "README.md").read_text()
    assert text.index("## beta") < text.index("## alpha")
    assert "| [alpha](#alpha) | the alpha job | quick, 1 thread(s) | ok | 2 s |" in text
    assert "![a.png](a.png)" in text and "gone.png" not in text
    assert text.count("- machine: m") == 1

