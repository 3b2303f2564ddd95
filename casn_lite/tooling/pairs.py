"""A notebook's two files agree: the jupytext ``.py`` (the source of truth) and its executed,
paired ``.ipynb`` hold the same cells.

    python -m casn_lite.tooling.pairs notebooks/[0-9]*.py    # what `make notebooks` runs first

They drift apart when one is edited without the other (a cell added in a Jupyter that does
not pair them, an answer typed into the ``.ipynb``). Then ``reproduce`` would run the ``.py``
without the ``.ipynb``'s change, ``make notebooks`` would delete it, and ``student
--keep-outputs`` would build the hand-out from the ``.ipynb`` (an answer there, or a removed
``solution`` tag, would reach the students). Each refuses, naming the notebook and the
command that brings the two together:

* the ``.ipynb`` is newer: its change is not in the ``.py``; ``jupytext --sync`` copies it
  (jupytext updates the older file of a pair from the newer);
* the ``.py`` is newer: the ``.ipynb`` has not been rebuilt; ``make notebooks`` does so.
  ``reproduce`` and ``make notebooks`` (which run the ``.py``) accept this case.

The committed ``.ipynb`` is the ``.py`` run by papermill with the ``cpu`` profile's
parameters: it holds one more cell, tagged ``injected-parameters``, which sets them. That
cell is the one difference allowed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

from .notebooks import INJECTED

__all__ = ["PairDrift", "cells", "differences", "check_pair", "main"]


class PairDrift(ValueError):
    """A notebook's ``.py`` and ``.ipynb`` hold different cells."""


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What must agree: each cell's type, source and tags, in order. The cell papermill adds
    to a committed ``.ipynb`` (it was run with the ``cpu`` profile's parameters, which that
    cell sets) is not part of the source."""
    return [(c.cell_type, c.source.strip(), tuple(sorted(c.metadata.get("tags", [])))) for c in nb.cells
            if INJECTED not in c.metadata.get("tags", [])]


def differences(source: Path) -> str | None:
    """How ``source`` (.py) and its ``.ipynb`` differ, in words; None when they agree or the
    ``.ipynb`` does not exist."""
    source = Path(source)
    paired = source.with_suffix(".ipynb")
    if not paired.is_file():
        return None
    try:
        theirs = cells(nbformat.read(paired, as_version=4))
    except (OSError, ValueError) as err:
        return f"the .ipynb cannot be read as a notebook: {str(err).splitlines()[0] if str(err) else err}"
    mine = cells(jupytext.read(source))
    if mine == theirs:
        return None
    only_ipynb = sum(1 for c in theirs if c not in mine)
    only_py = sum(1 for c in mine if c not in theirs)
    parts = [f"{n} cell{'s' if n != 1 else ''} only in the {where}"
             for n, where in ((only_ipynb, ".ipynb"), (only_py, ".py")) if n]
    return ", ".join(parts) or "the same cells in another order"


def check_pair(source: Path, stale_ipynb_ok: bool = True) -> None:
    """Refuse a pair that disagrees, naming the command that syncs it. With
    ``stale_ipynb_ok``, an ``.ipynb`` older than its ``.py`` passes (it is rebuilt from the
    ``.py``, as ``make notebooks`` does and ``reproduce`` runs)."""
    source = Path(source)
    found = differences(source)
    if found is None:
        return
    paired = source.with_suffix(".ipynb")
    if paired.stat().st_mtime_ns > source.stat().st_mtime_ns:
        raise PairDrift(f"{paired} has changes its paired {source.name} lacks ({found}); copy them into the "
                        f".py first: jupytext --sync {paired}")
    if not stale_ipynb_ok:
        raise PairDrift(f"{paired} is older than {source.name} and differs ({found}); rebuild it: make notebooks")


def main(paths: list[str]) -> int:
    """Check each ``.py`` given against its ``.ipynb``; exit 2 with one line per pair that
    disagrees and whose ``.ipynb`` is the newer."""
    problems = []
    for path in paths:
        try:
            check_pair(Path(path))
        except PairDrift as err:
            problems.append(str(err))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
