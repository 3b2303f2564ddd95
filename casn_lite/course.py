"""Course material: student copies of the notebooks, without the exercises' answers.

Answers live in cells tagged ``solution``. ``student_copies`` writes each notebook's
``.ipynb`` with those cells replaced by a short note and with no outputs, so students run
it themselves. Everything else (the parameters cell, the code, the exercises) is kept.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

from .reproduce import ReproduceError, notebooks

__all__ = ["student_copy", "student_copies"]

PLACEHOLDER = "*Answers: ask your instructor, or try first and compare later.*"


def student_copy(source: Path) -> nbformat.NotebookNode:
    """The notebook of a jupytext ``.py`` source without its ``solution`` cells or outputs."""
    nb = jupytext.read(source)
    cells = []
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            cells.append(nbformat.v4.new_markdown_cell(PLACEHOLDER))
        else:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("jupytext", None)  # a standalone .ipynb, not paired with our .py
    nbformat.validate(nb)
    return nb


def student_copies(out: str | Path, only: list[str] | None = None) -> list[Path]:
    """Write ``NN_name.ipynb`` student copies into ``out``; return their paths."""
    available = notebooks()
    unknown = sorted(set(only or []) - set(available))
    if unknown:
        raise ReproduceError(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, source in available.items():
        if only and number not in only:
            continue
        path = out / source.with_suffix(".ipynb").name
        nbformat.write(student_copy(source), path)
        written.append(path)
    return written
