"""Course material: student copies of the notebooks, without the exercises' answers.

Answers live in cells tagged ``solution``; a code exercise is a cell tagged ``exercise``
whose answer sits between ``# BEGIN SOLUTION`` and ``# END SOLUTION``, followed by one or
more cells tagged ``check`` that test it with ``assert``s (``checks``). ``student_copies``
writes each notebook's ``.ipynb`` with the ``solution`` cells replaced by a short note and
each exercise's answer by a stub that raises ``NotImplementedError`` (so the check cell
after it fails until the student writes the code), plus a README.md for the hand-out.
Without outputs by default, so students run everything themselves; with
``keep_outputs``, the outputs of the cells before the exercises are kept (from the
executed, committed notebooks), for classes that read before they run. The copies never go
into the folder of the sources (that would replace the executed notebooks), and existing
files are overwritten only when asked (``force``).
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat

from .. import saving
from . import notebooks
from .kernels import KERNEL
from .notebooks import INJECTED
from .pairs import check_pair

__all__ = ["HandoutError", "checks", "student_copy", "student_copies", "stub_solution", "handout_readme"]

PLACEHOLDER = "*Answers: ask your instructor, or try first and compare later.*"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("exercise: write this part")'
CHECK = "check"  # the tag of a cell that tests the exercise above it


class HandoutError(ValueError):
    """A hand-out that cannot be written: an unknown notebook, an ``--out`` that is a file,
    holds the sources, already holds the copies or cannot be written, or ``--keep-outputs``
    without the executed notebook."""


def checks(cells: list, exercise: int) -> list:
    """The cells that test the exercise at index ``exercise``: those tagged ``check`` right
    after it."""
    found = []
    for cell in cells[exercise + 1:]:
        if CHECK not in cell.metadata.get("tags", []):
            break
        found.append(cell)
    return found


def stub_solution(source: str) -> str:
    """The code of an exercise cell with each BEGIN/END SOLUTION block replaced by a stub,
    indented like the block's first marker."""
    lines, out, inside = source.splitlines(), [], False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}# TODO: your code here", f"{indent}{STUB}"]
            inside = True
        elif stripped.startswith(END):
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"an exercise cell opens {BEGIN!r} without {END!r}")
    return "\n".join(out)


def student_copy(source: Path, keep_outputs: bool = False) -> nbformat.NotebookNode:
    """The notebook of a jupytext ``.py`` source without its answers: ``solution`` cells
    become a note, exercise answers a stub. Outputs are dropped, or with ``keep_outputs``
    kept (from the paired executed ``.ipynb``) for every cell before the first exercise."""
    executed = source.with_suffix(".ipynb")
    if keep_outputs and not executed.is_file():
        raise HandoutError(f"--keep-outputs needs the executed {executed.name}; run `make notebooks` first")
    nb = nbformat.read(executed, as_version=4) if keep_outputs else jupytext.read(source)
    cells, in_exercises = [], False
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        in_exercises = in_exercises or "exercise" in tags
        if INJECTED in tags:  # the profile's parameters the committed run had: students run the defaults
            continue
        if "solution" in tags:
            cells.append(nbformat.v4.new_markdown_cell(PLACEHOLDER))
            continue
        if cell.cell_type == "code":
            if "exercise" in tags:
                cell.source = stub_solution(cell.source)
            if in_exercises or not keep_outputs:
                cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    return standalone(nb, cells)


def standalone(nb: nbformat.NotebookNode, cells: list) -> nbformat.NotebookNode:
    """``nb`` with ``cells``, as a standalone ``.ipynb`` (not paired with our ``.py``) for the
    project's kernel, validated."""
    nb.cells = cells
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (casn-lite)", "language": "python"}
    nbformat.validate(nb)
    return nb


def _title_and_time(nb: nbformat.NotebookNode, fallback: str) -> tuple[str, str]:
    """A notebook's title (its first heading, else ``fallback``) and its time hint (the
    "**Time:**" sentence)."""
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    title = re.search(r"^# (?:\d\d · )?(.+)$", text, re.MULTILINE)
    time = re.search(r"\*\*Time:\*\*\s*(.+?)\s+on a 2-core", text, re.DOTALL)
    return (title.group(1).strip() if title else fallback,
            " ".join(time.group(1).split()) if time else "not measured")


def handout_readme(copies: dict[str, tuple[Path, nbformat.NotebookNode]], keep_outputs: bool) -> str:
    """README.md of a hand-out: set-up, the order of the notebooks, the time each takes.
    ``copies``: for each notebook number, the copy's path and the copy."""
    rows = "\n".join(f"| {number} | `{path.name}` | {title} | {time} |"
                     for number, (path, nb) in copies.items() for title, time in [_title_and_time(nb, path.stem)])
    outputs = ("The cells before each notebook's exercises keep their outputs, so you can read a "
               "notebook before you run it. Those outputs come from the course's `cpu` profile (a "
               "larger input and a longer start; the README says how long it takes); run at the "
               "defaults, as the notebooks are set, each takes a minute or a few and gives other "
               "numbers." if keep_outputs else
               "The notebooks have no outputs: run them from the top, in order.")
    return f"""# casn-lite: the notebooks

Person re-identification with consistent attentive Siamese networks (CASN, Zheng et al.,
CVPR 2019), taught in small steps on SynthPeople, a dataset the code draws for you.

## Set-up

In a clone of the casn-lite repository: `make install` creates `.venv` with everything the
notebooks need and registers the Jupyter kernel **Python (casn-lite)** (`{KERNEL}`). Open
these notebooks in Jupyter (`make lab`, or any Jupyter, choosing that kernel). Without
make: `python3 -m venv .venv && .venv/bin/pip install -e ".[notebooks]" && .venv/bin/python
-m ipykernel install --user --name {KERNEL} --display-name "Python (casn-lite)"`.

## The notebooks, in order

| # | file | topic | time (2-core laptop, defaults) |
|---|---|---|---|
{rows}

{outputs} Each notebook ends with exercises. A code exercise is a function with a
`# TODO: your code here` stub that raises `NotImplementedError`; the cell after it checks
your code with `assert`s and then uses it. The other exercises say what you should see.
Answers are with your instructor.
"""


def chosen_notebooks(only: list[str] | None) -> dict[str, Path]:
    """The notebooks' sources by number, those in ``only`` (every one for None); an unknown
    number is refused with the choices."""
    available = notebooks.notebooks()
    unknown = sorted(set(only or []) - set(available))
    if unknown:
        raise HandoutError(f"unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    return {n: s for n, s in available.items() if not only or n in only}


def student_copies(out: str | Path, only: list[str] | None = None, force: bool = False,
                   keep_outputs: bool = False) -> list[Path]:
    """Write ``NN_name.ipynb`` student copies and a README.md into ``out``; return the
    notebooks' paths. Refuses the notebooks' own folder, and files already there unless
    ``force``."""
    out, chosen = Path(out), chosen_notebooks(only)
    targets = {n: out / s.with_suffix(".ipynb").name for n, s in chosen.items()}
    readme = out / "README.md"
    _check_out(out, [*targets.values(), readme], force, list(chosen.values()), keep_outputs)
    copies = {n: (targets[n], student_copy(s, keep_outputs)) for n, s in chosen.items()}  # all, or none
    for path, nb in copies.values():
        notebooks.write_notebook(path, nb)
    saving.write_text(readme, handout_readme(copies, keep_outputs))
    return list(targets.values())


def _check_out(out: Path, targets: list[Path], force: bool, sources: list[Path], keep_outputs: bool) -> None:
    """Refuse a folder that is a file, holds the sources, cannot be written, or (without
    ``force``) already holds one of the copies; and sources whose ``.py`` and ``.ipynb``
    disagree (the copies come from the ``.ipynb`` with ``keep_outputs``, else the ``.py``)."""
    if out.exists() and not out.is_dir():
        raise HandoutError(f"--out {out} is a file; choose a folder")
    if out.resolve() == notebooks.NOTEBOOK_DIR.resolve():
        raise HandoutError(f"--out {out} holds the notebook sources and their executed notebooks; "
                             "choose another folder, e.g. --out handout/")
    existing = [p.name for p in targets if p.exists()]
    if existing and not force:
        raise HandoutError(f"--out {out} already holds {', '.join(existing)}; choose another folder "
                             "or add --force to overwrite")
    for source in sources:
        check_pair(source, stale_ipynb_ok=not keep_outputs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HandoutError(f"cannot write to --out {out}: {err.strerror or err}; choose another folder") from None
