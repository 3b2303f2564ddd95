"""The notebooks' sources of truth (.py, jupytext percent) and their executed .ipynb twins agree."""

from pathlib import Path

import jupytext
import nbformat
import pytest

from casn_lite.tooling.pairs import differences

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))


def test_the_six_notebooks_are_the_ones_the_runner_and_course_use():
    from casn_lite.tooling.notebooks import notebooks

    assert [p.stem for p in NOTEBOOKS] == ["00_data_and_evaluation", "01_ide_baseline",
                                           "02_identification_attention", "03_siamese_attention",
                                           "04_casn_training", "05_ablations"]
    assert list(notebooks().values()) == NOTEBOOKS


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_py_and_ipynb_have_the_same_cells(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} is missing: run `make notebooks`"
    found = differences(source)  # the check reproduce, student and `make notebooks` make
    assert found is None, f"{source.name} and {paired.name} differ ({found}): run `make notebooks`"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(source):
    nb = jupytext.read(source)
    tags = [set(c.metadata.get("tags", [])) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1, "one cell tagged 'parameters' (papermill)"
    assert "metrics" in tags[-1], "the last cell, tagged 'metrics', reports the results"
    assert any("solution" in t for t in tags), "exercises have answers in a cell tagged 'solution'"
    executed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "the committed notebook ran without errors"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(source):
    """papermill skips a parameter line it cannot parse (some comments trip it) with only a
    log message; then a profile could not set that parameter."""
    import ast

    from casn_lite.tooling.notebooks import parameter_names

    cell = next(c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert parameter_names(source) == assigned


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_the_cpu_profile_run(source):
    """The committed .ipynb shows the reader's regime: papermill ran the .py with the cpu
    profile's parameters (its injected cell sets exactly them, and the runner's), and that
    cell is skipped by nbval, which re-executes the notebook at its fast defaults."""
    import ast

    from casn_lite.tooling.notebooks import INJECTED
    from casn_lite.tooling.profiles import plan
    from casn_lite.tooling.runner import default_out, runner_parameters

    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    injected = [i for i, t in enumerate(tags) if INJECTED in t]
    assert len(injected) == 1, "one cell of papermill's injected parameters: run `make notebooks`"
    (at,) = injected
    assert "parameters" in tags[at - 1], "right after the parameters cell"
    assert "nbval-skip" in tags[at], "make test runs the defaults: `python -m casn_lite.tooling.tidy` tags it"
    cell = ast.parse(nb.cells[at].source)
    injected_values = {node.targets[0].id: ast.literal_eval(node.value) for node in cell.body}
    job = next(j for j in plan("cpu") if j.source.stem == source.stem)
    expected = {**job.parameters, **runner_parameters(job, set(injected_values), "cpu", default_out("cpu"))}
    assert injected_values == expected, "the committed run had the cpu profile's parameters"
