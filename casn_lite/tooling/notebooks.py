"""The notebooks the tools read and write: where they are (``notebooks/NN_name.py``, the
jupytext sources of truth), the parameters each declares in its cell tagged ``parameters``
(as papermill reads them), and writing a notebook whole (``write_notebook``).

jupytext, nbformat and papermill are imported only by the functions that need them, so that a
tool that only writes notebooks (``tidy``) does not load the runner's libraries.
"""

from __future__ import annotations

import ast
import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .. import saving

if TYPE_CHECKING:
    import nbformat

__all__ = ["ROOT", "NOTEBOOK_DIR", "INJECTED", "notebooks", "parameter_names", "parameter_defaults", "declared_parameters",
           "write_notebook"]

ROOT = Path(__file__).resolve().parents[2]  # the repository: notebooks/, profiles/, runs/
NOTEBOOK_DIR = ROOT / "notebooks"
INJECTED = "injected-parameters"  # papermill's tag on the cell it adds after the one tagged "parameters"


def notebooks() -> dict[str, Path]:
    """Notebook number ("00") -> its .py source of truth."""
    return {p.name[:2]: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))}


def parameter_names(source: Path) -> set[str]:
    """Names in the notebook's cell tagged 'parameters', as papermill reads them (read again
    whenever the file changes)."""
    return set(declared_parameters(source))


def parameter_defaults(source: Path) -> dict:
    """The notebook's parameters and their default values (None where a default is not a
    literal)."""
    return {name: default for name, (default, _) in declared_parameters(source).items()}


def declared_parameters(source: Path) -> dict[str, tuple[object, str]]:
    """Each parameter's default value (None where it is not a literal) and its comment."""
    stat = Path(source).stat()
    return {name: (_literal(default), comment)
            for name, default, comment in _inspect_parameters(str(source), stat.st_mtime_ns, stat.st_size)}


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


@functools.lru_cache(maxsize=64)
def _inspect_parameters(source: str, mtime_ns: int, size: int) -> tuple[tuple[str, str, str], ...]:
    import jupytext
    import nbformat
    import papermill

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(source).stem + ".ipynb")
        nbformat.write(jupytext.read(source), path)
        found = papermill.inspect_notebook(str(path))
        return tuple((name, p["default"], p["help"]) for name, p in found.items())


def write_notebook(path: Path, nb: nbformat.NotebookNode) -> None:
    """Write a notebook under a temporary name, then move it into place (``saving.write_text``),
    ending the file with a newline as ``nbformat.write`` does."""
    import nbformat

    saving.write_text(path, nbformat.writes(nb) + "\n")
