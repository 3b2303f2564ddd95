"""What a student and an instructor get: one kernel name, light committed notebooks with no
machine-specific traces, code exercises with stubs, and a hand-out that stands on its own."""

import json
import re

import jupytext
import nbformat
import pytest

from casn_lite.tooling.cli import main
from casn_lite.tooling.handouts import (
    BEGIN,
    END,
    STUB,
    HandoutError,
    checks,
    handout_readme,
    stub_solution,
    student_copies,
)
from casn_lite.tooling.kernels import KERNEL, default_kernel
from casn_lite.tooling.notebooks import ROOT, notebooks
from casn_lite.tooling.tidy import WIDGET, tidy

EXECUTED = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LIMIT_MB = 3.0  # the six committed notebooks together


# --------------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("number", list(notebooks()))
def test_every_notebook_names_the_project_kernel(number):
    source = notebooks()[number]
    assert jupytext.read(source).metadata["kernelspec"]["name"] == KERNEL
    executed = source.with_suffix(".ipynb")
    assert nbformat.read(executed, as_version=4).metadata["kernelspec"]["name"] == KERNEL


def test_make_install_registers_that_kernel():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"ipykernel install --user --name {KERNEL}\b", makefile)


def test_the_runner_uses_the_project_kernel_when_it_is_this_environment_else_python3(monkeypatch, capsys):
    import sys
    from types import SimpleNamespace

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def spec(python):
        return lambda self, name: SimpleNamespace(argv=[python, "-m", "ipykernel_launcher"])

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", spec(sys.executable))
    assert default_kernel() == KERNEL
    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", spec("/elsewhere/.venv/bin/python"))
    assert default_kernel() == "python3"
    assert "make kernel" in capsys.readouterr().out

    def missing(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", missing)
    assert default_kernel() == "python3"
    assert "make install" in capsys.readouterr().out


def test_student_copies_name_the_project_kernel(tmp_path):
    (path,) = student_copies(tmp_path, ["00"])
    assert nbformat.read(path, as_version=4).metadata.kernelspec.name == KERNEL


# --------------------------------------------------------------------------- weight and traces
def test_committed_notebooks_are_light():
    total = sum(p.stat().st_size for p in EXECUTED) / 1e6
    assert len(EXECUTED) == len(notebooks())
    assert total < LIMIT_MB, f"the committed notebooks weigh {total:.1f} MB (limit {LIMIT_MB} MB)"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name[:2])
def test_committed_notebooks_carry_no_machine_traces(path):
    nb = nbformat.read(path, as_version=4)
    text = path.read_text()
    assert str(ROOT) not in text, "an absolute path of the machine that executed it"
    assert "<IPython.core.display.JSON object>" not in text
    for cell in nb.cells:
        assert "execution" not in cell.metadata, "per-cell timestamps: `make notebooks` tidies them"
        for out in cell.get("outputs", []):
            assert WIDGET not in out.get("data", {}), "a progress widget saved at 0 %"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name[:2])
def test_the_metrics_cell_prints_them_plainly(path):
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "metrics" in c.metadata.get("tags", [])]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert isinstance(json.loads(printed), dict)


def test_tidy_drops_timestamps_widgets_and_widget_state():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"state": {}}
    cell = nbformat.v4.new_code_cell("fit(...)")
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    line = nbformat.v4.new_output("stream", name="stdout", text="epoch 1: loss 3.1 (4 s)\n")
    bar = nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "x"}, "text/plain": "  0%|"})
    cell.outputs = [bar, line]
    nb.cells = [cell]
    tidy(nb)
    assert "widgets" not in nb.metadata and "execution" not in cell.metadata
    assert cell.outputs == [line], "the plain per-epoch line stays"


def test_tidy_loads_neither_papermill_nor_yaml():
    """`make notebooks` tidies with nbformat alone: tidy reaches the notebook writer
    (tooling.notebooks.write_notebook), not the runner or the profiles. Caught: tidy importing
    ``write_notebook`` from the runner again, or ``tooling/notebooks.py`` importing papermill,
    jupytext or yaml at its top."""
    import subprocess
    import sys

    code = "import sys, casn_lite.tooling.tidy; print('papermill' in sys.modules, 'yaml' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- exercises
def test_stub_solution_replaces_only_the_marked_block():
    source = f"def f(x):\n    \"\"\"doc\"\"\"\n    {BEGIN}\n    y = x + 1\n    return y\n    {END}\n\n\nz = 1"
    stubbed = stub_solution(source)
    assert "x + 1" not in stubbed and "return y" not in stubbed
    assert f"    {STUB}" in stubbed and stubbed.startswith("def f(x):\n    \"\"\"doc\"\"\"")
    assert stubbed.endswith("\n\n\nz = 1")
    namespace: dict = {}
    exec(stubbed, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"](1)
    with pytest.raises(ValueError, match="without"):
        stub_solution(f"{BEGIN}\nx = 1")


@pytest.mark.parametrize("number", list(notebooks()))
def test_every_notebook_has_a_checked_code_exercise(number):
    cells = jupytext.read(notebooks()[number]).cells
    positions = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
    assert positions, "at least one code exercise"
    for i in positions:
        assert BEGIN in cells[i].source and END in cells[i].source
        assert checks(cells, i), "the next cell, tagged check, tests the student's code"
        for check in checks(cells, i):
            assert check.cell_type == "code" and "assert" in check.source, "a check asserts"


def test_a_stubbed_exercise_fails_its_check():
    """The student's copy of 05's exercise, run with the check's made-up numbers."""
    cells = jupytext.read(notebooks()["05"]).cells
    (exercise,) = [c for c in cells if "exercise" in c.metadata.get("tags", [])]
    namespace: dict = {}
    exec("import numpy as np\nfrom scipy import stats\n" + stub_solution(exercise.source), namespace)
    with pytest.raises(NotImplementedError):
        namespace["is_effect"]([0.3, 0.31], [0.35, 0.36])
    exec("import numpy as np\nfrom scipy import stats\n" + exercise.source, namespace)  # the instructor's version passes
    assert namespace["is_effect"]([0.30, 0.31, 0.29], [0.35, 0.36, 0.33])


# --------------------------------------------------------------------------- the hand-out
def test_the_handout_readme_lists_set_up_order_and_time(tmp_path):
    student_copies(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "make install" in readme and KERNEL in readme
    rows = [line for line in readme.splitlines() if re.match(r"\| \d\d \|", line)]
    assert [r[2:4] for r in rows] == list(notebooks()), "every notebook, in order"
    assert all(re.search(r"\| about \d+ s \|$", r) for r in rows), rows


def test_without_a_time_hint_the_readme_says_not_measured(tmp_path):
    source = tmp_path / "07_new.py"
    source.write_text("# %% [markdown]\n# # 07 · New\n\n# %%\nx = 1\n")
    copy = (tmp_path / "07_new.ipynb", jupytext.read(source))
    assert "| New | not measured |" in handout_readme({"07": copy}, keep_outputs=False)


def test_keep_outputs_keeps_them_before_the_exercises_only(tmp_path):
    (path,) = student_copies(tmp_path, ["00"], keep_outputs=True)
    cells = nbformat.read(path, as_version=4).cells
    first_exercise = next(i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", []))
    before = [c for c in cells[:first_exercise] if c.cell_type == "code"]
    after = [c for c in cells[first_exercise:] if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in before) >= 3, "the executed outputs are kept"
    assert not any(c.outputs for c in after), "nothing of the exercises' results"
    assert STUB in cells[first_exercise].source
    assert "keep their outputs" in (tmp_path / "README.md").read_text()


def test_student_cli_writes_the_readme_and_refuses_to_overwrite_it(tmp_path, capsys):
    assert main(["student", "--out", str(tmp_path), "--only", "01", "--keep-outputs"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_ide_baseline.ipynb", "README.md"]
    copy = nbformat.read(tmp_path / "01_ide_baseline.ipynb", as_version=4)
    assert not [c for c in copy.cells if "injected-parameters" in c.metadata.get("tags", [])], \
        "students run the defaults: the cpu profile's injected parameters stay out"
    assert "cpu" in (tmp_path / "README.md").read_text(), "the README says where the outputs come from"
    (tmp_path / "01_ide_baseline.ipynb").unlink()
    assert main(["student", "--out", str(tmp_path), "--only", "01"]) == 2
    assert "README.md" in capsys.readouterr().err


def test_keep_outputs_needs_the_executed_notebook(tmp_path, monkeypatch):
    source = tmp_path / "nb" / "07_new.py"
    source.parent.mkdir()
    source.write_text("# %% [markdown]\n# # 07 · New\n\n# %%\nx = 1\n")
    monkeypatch.setattr("casn_lite.tooling.notebooks.NOTEBOOK_DIR", source.parent)
    with pytest.raises(HandoutError, match="make notebooks"):
        student_copies(tmp_path / "out", keep_outputs=True)


# --------------------------------------------------------------------------- a static render shows the run
def test_epoch_line_names_the_run_its_losses_metrics_and_time():
    from casn_lite.engine import epoch_line

    record = {"epoch": 2, "loss": 2.5, "ide": 2.25, "ia": 0.125, "rank1": 0.5, "lr": 1e-3, "seconds": 12.4,
              "images_per_s": 50.0}
    assert epoch_line("IDE+IA, seed 1", record, 3) == \
        "IDE+IA, seed 1: epoch 2/3: loss 2.500, ide 2.250, ia 0.125, rank1 0.500 (12 s)"


def test_fit_prints_one_plain_line_per_epoch_only_when_showing_progress(capsys):
    import torch

    from casn_lite.engine import TrainConfig, fit

    def loss_fn(model, batch, device, progress=0.0):  # any model and loss: only the printing is tested
        return model(batch["image"]).pow(2).mean(), {}

    batches = [{"image": torch.randn(2, 3, 8, 4)} for _ in range(3)]
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 2, 3)
    cpu = torch.device("cpu")
    fit(model, batches, TrainConfig(epochs=2, optimizer="adam", lr=1e-3, desc="IDE", progress=True), loss_fn, cpu)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("IDE: epoch")]
    assert [line.split(":")[1].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("loss" in line and line.endswith(" s)") for line in lines)
    fit(model, batches, TrainConfig(epochs=1, optimizer="adam", lr=1e-3, desc="IDE", progress=False), loss_fn, cpu)
    assert "epoch" not in capsys.readouterr().out
