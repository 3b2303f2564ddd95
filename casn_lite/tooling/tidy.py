"""Make executed notebooks fit to commit: what only the machine that ran them needs goes.

    python -m casn_lite.tooling.tidy notebooks/[0-9]*.ipynb

* per-cell execution timestamps (``metadata.execution``, and papermill's ``metadata.papermill``),
  which change on every run, and the paths papermill read and wrote (the parameters it
  injected stay in the notebook's metadata);
* progress-bar widgets: a saved widget cannot be drawn outside a live kernel, and its text
  fallback is the bar as it was created (0 %); the plain line per epoch stays;
* the notebook's widget state.

And the cell papermill adds to set a profile's parameters (tagged ``injected-parameters``)
gets the tag ``nbval-skip``: `make test` re-executes the committed notebooks at the
parameters cell's fast defaults, whereas the outputs a reader sees come from the profile.

Each file is rewritten under a temporary name and moved into place (``notebooks.write_notebook``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from .notebooks import INJECTED, write_notebook

__all__ = ["tidy", "tidy_file"]

WIDGET = "application/vnd.jupyter.widget-view+json"
NBVAL_SKIP = "nbval-skip"  # nbval does not run a cell with this tag


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without execution timestamps, widget outputs and widget state, its injected
    parameters cell skipped by nbval (in place)."""
    nb.metadata.pop("widgets", None)
    if "papermill" in nb.metadata:
        nb.metadata["papermill"] = {"parameters": nb.metadata["papermill"].get("parameters", {})}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        tags = cell.metadata.get("tags", [])
        if INJECTED in tags and NBVAL_SKIP not in tags:
            cell.metadata["tags"] = [*tags, NBVAL_SKIP]
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if WIDGET not in out.get("data", {})]
    return nb


def tidy_file(path: str | Path) -> None:
    """Tidy one ``.ipynb`` file."""
    path = Path(path)
    write_notebook(path, tidy(nbformat.read(path, as_version=4)))


def main(paths: list[str]) -> int:
    for path in paths:
        tidy_file(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
