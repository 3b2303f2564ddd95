"""Course material for nbgrader: the notebooks as nbgrader *source* notebooks.

``python -m casn_lite nbgrader --out COURSE/source/ASSIGNMENT`` writes, from each
notebook's ``.py``, an instructor's notebook nbgrader reads as it is: each code exercise (a
cell tagged ``exercise``) becomes an *autograded answer* cell, whose ``# BEGIN SOLUTION`` /
``# END SOLUTION`` block ``nbgrader generate_assignment`` replaces by a stub in the
students' release, and each of its checks (the cells tagged ``check`` after it) becomes a
locked *autograder test* worth ``POINTS``: ``nbgrader autograde`` gives those points when the
check runs without an error. The written answers (cells tagged ``solution``) are not in it:
nbgrader has no cell that is shown to the instructor and never graded, so they become the
student copies' note, and stay in the repository's notebooks. Without outputs: students run
everything, and so does the autograder.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

from . import notebooks
from .handouts import (
    BEGIN,
    CHECK,
    PLACEHOLDER,
    HandoutError,
    _check_out,
    chosen_notebooks,
    standalone,
)
from .notebooks import INJECTED

__all__ = ["POINTS", "grader_source", "grader_sources", "autograded_answer", "autograder_test"]

POINTS = 1  # per check cell
SCHEMA = 3  # nbgrader's cell metadata version
DELIMITER = BEGIN.removeprefix("# ")  # what nbgrader looks for, in any cell, comment or not


def autograded_answer(grade_id: str) -> dict:
    """nbgrader's metadata of a code cell whose solution block is cleared in the release."""
    return {"grade": False, "solution": True, "locked": False, "grade_id": grade_id, "schema_version": SCHEMA}


def autograder_test(grade_id: str, points: int = POINTS) -> dict:
    """nbgrader's metadata of a locked test cell worth ``points`` when it runs without error."""
    return {"grade": True, "solution": False, "locked": True, "points": points, "grade_id": grade_id,
            "schema_version": SCHEMA}


def grader_source(source: Path) -> nbformat.NotebookNode:
    """The nbgrader source notebook of a jupytext ``.py``: exercises as autograded answers
    (with their answers), their checks as autograder tests, written answers as a note."""
    nb = jupytext.read(source)
    number, cells, exercise = source.name[:2], [], 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if INJECTED in tags:
            continue
        if "solution" in tags:
            cells.append(nbformat.v4.new_markdown_cell(PLACEHOLDER))
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if "exercise" not in tags and DELIMITER in cell.source:
            raise HandoutError(f"{source.name}: a cell that is not an exercise holds {DELIMITER!r}, which "
                               "nbgrader would take for an answer to clear; reword it")
        if "exercise" in tags:
            exercise, check = exercise + 1, 0
            cell.metadata["nbgrader"] = autograded_answer(f"nb{number}-exercise{exercise}")
        elif CHECK in tags:
            if exercise == 0:
                raise HandoutError(f"{source.name}: a cell tagged {CHECK!r} before any exercise")
            check += 1
            cell.metadata["nbgrader"] = autograder_test(f"nb{number}-exercise{exercise}-check{check}")
        cells.append(cell)
    return standalone(nb, cells)


def grader_sources(out: str | Path, only: list[str] | None = None, force: bool = False) -> list[Path]:
    """Write the ``NN_name.ipynb`` nbgrader source notebooks into ``out`` (an assignment's
    folder, ``COURSE/source/ASSIGNMENT``); return their paths. Refuses the notebooks' own
    folder, and files already there unless ``force``."""
    out, chosen = Path(out), chosen_notebooks(only)
    targets = {n: out / s.with_suffix(".ipynb").name for n, s in chosen.items()}
    _check_out(out, list(targets.values()), force, list(chosen.values()), keep_outputs=False)
    written = {n: grader_source(s) for n, s in chosen.items()}  # all, or none
    for n, nb in written.items():
        notebooks.write_notebook(targets[n], nb)
    return list(targets.values())
