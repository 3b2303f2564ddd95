"""Student copies: no answers, no outputs, otherwise the same valid notebooks."""

import jupytext
import nbformat

from casn_lite.tooling.cli import main
from casn_lite.tooling.handouts import PLACEHOLDER, stub_solution, student_copies
from casn_lite.tooling.kernels import KERNEL
from casn_lite.tooling.notebooks import notebooks


def test_student_copies_drop_answers_and_keep_everything_else(tmp_path):
    written = student_copies(tmp_path)
    assert [p.name[:2] for p in written] == list(notebooks())
    for path, source in zip(written, notebooks().values(), strict=True):
        copy = nbformat.read(path, as_version=4)
        nbformat.validate(copy)
        original = jupytext.read(source)
        assert len(copy.cells) == len(original.cells)
        for mine, theirs in zip(copy.cells, original.cells, strict=True):
            if "solution" in theirs.metadata.get("tags", []):
                assert mine.source == PLACEHOLDER
            elif "exercise" in theirs.metadata.get("tags", []):
                assert mine.source == stub_solution(theirs.source) != theirs.source, "the answer became a stub"
            else:
                assert (mine.cell_type, mine.source) == (theirs.cell_type, theirs.source)
        assert sum(c.source == PLACEHOLDER for c in copy.cells) >= 1, "each notebook had answers to remove"
        assert not any("<summary>Answers" in c.source for c in copy.cells)
        assert not any(c.get("outputs") for c in copy.cells if c.cell_type == "code")
        tags = [set(c.metadata.get("tags", [])) for c in copy.cells]
        assert sum("parameters" in t for t in tags) == 1, "papermill can still run it"
        assert copy.metadata.kernelspec.name == KERNEL


def test_student_cli(tmp_path, capsys):
    assert main(["student", "--out", str(tmp_path), "--only", "01"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_ide_baseline.ipynb", "README.md"]
    assert main(["student", "--out", str(tmp_path), "--only", "42"]) == 2
    assert "unknown notebook" in capsys.readouterr().err
