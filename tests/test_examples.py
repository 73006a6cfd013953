"""The gallery examples in ``examples/`` run on small data, write their figures and print sane
numbers (the docs build runs the same scripts)."""

import runpy
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems: one BLAS / torch thread is fastest (and immune to a busy machine)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def run_example(name, tmp_path, capsys, *extra):
    module = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")
    results = module["main"](["--quick", "--output", str(tmp_path), *extra])
    png = tmp_path / module["FIGURE"]
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 20_000  # a real figure, not an empty canvas
    out = capsys.readouterr().out
    assert f"figure written to {png}" in out
    return results, out


def test_every_example_is_tested():
    scripts = sorted(p.stem for p in EXAMPLES.glob("plot_*.py"))
    tested = sorted(name[len("test_"):] for name in globals() if name.startswith("test_plot_"))
    assert scripts == tested


def test_plot_decision_boundary(tmp_path, capsys):
    results, out = run_example("plot_decision_boundary", tmp_path, capsys)
    for curvature in ("empirical_fisher", "ggn"):
        r = results[curvature]
        assert f"{curvature}: normalized parameter distance" in out
        # one step moves towards the retrained model ...
        assert 0 < r["distance_eps1"] < 0.9
        # ... but underestimates a group's effect: the best step is longer and much closer
        assert r["best_epsilon"] > 1.0
        assert r["distance_best"] < min(0.4, r["distance_eps1"])


def test_plot_epsilon_curves(tmp_path, capsys):
    results, out = run_example("plot_epsilon_curves", tmp_path, capsys)
    ggn, ef = results["ggn"], results["empirical_fisher"]
    # one fit per curvature serves every epsilon and forget set (closed-form sweep)
    assert ggn["n_fits"] == ef["n_fits"] == 1
    # GGN = the exact Hessian: the best step is about the Newton step and lands closest
    assert 0.5 <= ggn["best_epsilon"] <= 2.0
    assert ggn["best_parameter_distance"] < 0.5
    assert ggn["best_parameter_distance"] < ef["best_parameter_distance"]
    for r in (ggn, ef):
        assert 0 <= r["best_similarity_ratio"] < 0.5


def test_plot_single_class_removal(tmp_path, capsys):
    results, out = run_example("plot_single_class_removal", tmp_path, capsys, "--digit", "3")
    re = results["retrained"]
    assert re["accuracy_forgotten_class"] == 0.0
    assert "digit 3" in out
    for curvature in ("empirical_fisher", "ggn"):
        r = results[curvature]
        assert r["best_epsilon"] >= 1.0
        assert r["confusion_distance_best"] < 0.5
        assert r["accuracy_forgotten_class_best"] < 0.5
        # the other classes keep the retrained model's accuracy
        assert abs(r["accuracy_other_classes_best"] - re["accuracy_other_classes"]) < 0.05
    # a whole class needs a step well beyond the Newton step, which then erases it
    assert results["ggn"]["best_epsilon"] > 2.0
    assert results["ggn"]["accuracy_forgotten_class_best"] < 0.1


DOCS = EXAMPLES.parent / "docs"


@pytest.mark.parametrize("page", ["quickstart.rst", "user_guide.rst", "../README.md"])
def test_docs_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    """The recipes of the docs are real code: run every python block of a page in order."""
    import re

    monkeypatch.chdir(tmp_path)  # the GridSearchCV recipe writes a joblib cache folder
    path = (DOCS / page).resolve()
    text = path.read_text()
    if path.suffix == ".md":
        blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    else:
        blocks = ["\n".join(line[3:] for line in block.splitlines()) for block in
                  re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)]
    assert len(blocks) >= 2
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)
    out = capsys.readouterr().out
    if path.suffix == ".md":
        assert namespace["clf"].n_samples_ == 1327
        assert namespace["search"].best_params_ == {"epsilon": 1.0}
    elif page == "user_guide.rst":
        # the values quoted in the comments of the recipes
        assert "{'epsilon': np.float64(1.0)}" in out or "{'epsilon': 1.0}" in out
        assert "1.0 1\n" in out and "dense 2410" in out and "1287 3" in out
        assert "refused:" in out
        assert "False\ntfidfvectorizer 5\n" in out  # preprocessing="update"
    else:
        assert out.startswith("1327 ")


def test_plot_certificate(tmp_path, capsys):
    results, out = run_example("plot_certificate", tmp_path, capsys)
    bound, est = results["no intercept"], results["with intercept"]
    assert (bound["kind"], est["kind"]) == ("bound", "estimate")
    assert bound["ratio_min"] >= 1.0  # a true upper bound at every epsilon
    for r in (bound, est):
        # the certificate, computed without retraining, picks the epsilon the true distance does
        assert r["best_epsilon_certificate"] == r["best_epsilon_true"] == 1.0
        assert r["refined_certificate"] <= 1e-8 and r["refined_true_distance"] < 1e-8
