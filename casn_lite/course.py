"""Course material: student copies of the notebooks, without the exercises' answers.

Answers live in cells tagged ``solution``. ``student_copies`` writes each notebook's
``.ipynb`` with those cells replaced by a short note and with no outputs, so students run
it themselves. Everything else (the parameters cell, the code, the exercises) is kept.
The copies never go into the folder of the sources (that would replace the executed
notebooks), and existing files are overwritten only when asked (``force``).
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat

from . import reproduce
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


def student_copies(out: str | Path, only: list[str] | None = None, force: bool = False) -> list[Path]:
    """Write ``NN_name.ipynb`` student copies into ``out``; return their paths. Refuses the
    notebooks' own folder, and files already there unless ``force``."""
    available = notebooks()
    unknown = sorted(set(only or []) - set(available))
    if unknown:
        raise ReproduceError(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    out = Path(out)
    chosen = {n: s for n, s in available.items() if not only or n in only}
    targets = {out / s.with_suffix(".ipynb").name: s for s in chosen.values()}
    _check_out(out, list(targets), force)
    for path, source in targets.items():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        nbformat.write(student_copy(source), tmp)
        os.replace(tmp, path)
    return list(targets)


def _check_out(out: Path, targets: list[Path], force: bool) -> None:
    """Refuse a folder that is a file, holds the sources, cannot be written, or (without
    ``force``) already holds one of the copies."""
    if out.exists() and not out.is_dir():
        raise ReproduceError(f"--out {out} is a file; choose a folder")
    if out.resolve() == reproduce.NOTEBOOK_DIR.resolve():
        raise ReproduceError(f"--out {out} holds the notebook sources and their executed notebooks; "
                             "choose another folder, e.g. --out handout/")
    existing = [p.name for p in targets if p.exists()]
    if existing and not force:
        raise ReproduceError(f"--out {out} already holds {', '.join(existing)}; choose another folder "
                             "or add --force to overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReproduceError(f"cannot write to --out {out}: {err.strerror or err}; choose another folder") from None
