"""Hand-outs nbgrader accepts: notebook 00 as an nbgrader source, released and autograded by
nbgrader itself. A correct answer gets every point; the reciprocal rank, a common wrong
answer for average precision, passes the check on the toy and fails the other: part of them.
Notebook 00 trains nothing, so grading it twice takes about a minute."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

from casn_lite.tooling.cli import main
from casn_lite.tooling.grader import POINTS, grader_source
from casn_lite.tooling.handouts import BEGIN, END, checks
from casn_lite.tooling.notebooks import ROOT, notebooks

ASSIGNMENT = "casn00"
NOTEBOOK = notebooks()["00"].with_suffix(".ipynb").name
RECIPROCAL_RANK = """    is_match = np.asarray(is_match, dtype=bool)
    ranks = np.flatnonzero(is_match) + 1
    return float(1 / ranks[0]) if len(ranks) else float("nan")"""


def nbgrader(course: Path, *args: str) -> None:
    """Run nbgrader's command line in ``course``, as in the activated environment (nbgrader
    runs its ``alembic`` script from the PATH); its kernel is this interpreter (the
    notebooks' kernel name, casn-lite, points here) and imports this checkout."""
    kernels = course / "jupyter" / "kernels" / "casn-lite"
    kernels.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (casn-lite)", "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps(spec))
    env = {**os.environ, "JUPYTER_PATH": str(course / "jupyter"),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def submit(course: Path, student: str, answer_body: str) -> None:
    """The released notebook with ``answer_body`` in place of the exercise's stub, as
    ``student``'s submission."""
    nb = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert "raise NotImplementedError()" in cell.source, "the release holds a stub, not the answer"
    cell.source = cell.source.replace("    # YOUR CODE HERE\n    raise NotImplementedError()", answer_body)
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / NOTEBOOK)


def the_answer() -> str:
    """The body of notebook 00's exercise between its solution markers."""
    (exercise,) = [c for c in jupytext.read(notebooks()["00"]).cells if "exercise" in c.metadata.get("tags", [])]
    lines = exercise.source.splitlines()
    return "\n".join(lines[lines.index(f"    {BEGIN}") + 1: lines.index(f"    {END}")])


def test_nbgrader_releases_notebook_00_and_grades_a_right_and_a_wrong_answer(tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.Execute.timeout = 300\n")
    assert main(["nbgrader", "--out", str(course / "source" / ASSIGNMENT), "--only", "00"]) == 0
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    submit(course, "right", the_answer())
    submit(course, "wrong", RECIPROCAL_RANK)
    nbgrader(course, "autograde", ASSIGNMENT, "--create")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission(ASSIGNMENT, s) for s in ("right", "wrong")}
        points = {s: (sub.score, sub.max_score) for s, sub in scores.items()}
    assert points["right"] == (2 * POINTS, 2 * POINTS), "both checks of the AP pass"
    assert points["wrong"] == (POINTS, 2 * POINTS), "the reciprocal rank passes the toy's check only"


def test_each_exercise_is_an_answer_and_each_check_a_test_with_points():
    for number, source in notebooks().items():
        cells = jupytext.read(source).cells
        graded = grader_source(source).cells
        exercises = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
        answers = [c for c in graded if c.metadata.get("nbgrader", {}).get("solution")]
        tests = [c for c in graded if c.metadata.get("nbgrader", {}).get("grade")]
        assert [c.source for c in answers] == [cells[i].source for i in exercises], number
        assert [c.source for c in tests] == [c.source for i in exercises for c in checks(cells, i)], number
        assert all(t.metadata.nbgrader["locked"] and t.metadata.nbgrader["points"] == POINTS for t in tests)
        ids = [c.metadata.nbgrader["grade_id"] for c in answers + tests]
        assert len(set(ids)) == len(ids), f"{number}: grade ids are unique"
        assert not any("<summary>Answers" in c.source for c in graded), "no written answers"


def test_the_nbgrader_command_refuses_the_notebooks_folder(capsys):
    assert main(["nbgrader", "--out", str(ROOT / "notebooks"), "--only", "00"]) == 2
    assert "holds the notebook sources" in capsys.readouterr().err

