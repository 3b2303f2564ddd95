"""A notebook's check of its code exercise accepts the answer and rejects the usual wrong ones.

The check is the cell after the exercise, read from the notebook's ``.py`` and run as a
student's copy would run it, with the student's function in its namespace."""

import jupytext
import numpy as np
import pytest

from casn_lite.tooling.notebooks import notebooks


def exercise_and_check(number: str):
    """The exercise cell of notebook ``number`` and the check cell after it (their sources)."""
    cells = jupytext.read(notebooks()[number]).cells
    (i,) = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
    return cells[i].source, cells[i + 1].source


def run_ap_check(average_precision) -> None:
    """Notebook 00's check of ``average_precision`` (on made-up ranked lists); raises
    AssertionError when it rejects the function."""
    _, check = exercise_and_check("00")
    exec(check, {"np": np, "average_precision": average_precision})


def reciprocal_rank(is_match):
    """1 / the rank of the first match: right on the toy (0.5), not AP."""
    ranks = np.flatnonzero(is_match) + 1
    return float(1 / ranks[0]) if len(ranks) else float("nan")


def mean_reciprocal_rank_of_every_match(is_match):
    """1 / rank averaged over the matches: forgets the count of matches above."""
    return float(np.mean(1 / (np.flatnonzero(is_match) + 1)))


def precision_at_every_rank(is_match):
    """Precision averaged over every rank, not only the matches'."""
    is_match = np.asarray(is_match, dtype=float)
    return float(np.mean(np.cumsum(is_match) / np.arange(1, len(is_match) + 1)))


def r_precision(is_match):
    """Precision at rank R, R the number of matches."""
    is_match = np.asarray(is_match, dtype=bool)
    return float(is_match[: is_match.sum()].mean())


def interpolated(is_match):
    """Each match's precision replaced by the best precision at its rank or later (PASCAL VOC)."""
    ranks = np.flatnonzero(is_match) + 1
    precision = np.arange(1, len(ranks) + 1) / ranks
    return float(np.maximum.accumulate(precision[::-1])[::-1].mean())


def divided_by_length(is_match):
    """The matches' precisions summed, then divided by the list's length instead of R."""
    ranks = np.flatnonzero(is_match) + 1
    return float((np.arange(1, len(ranks) + 1) / ranks).sum() / len(is_match))


def test_the_ap_check_accepts_the_notebooks_answer():
    exercise, _ = exercise_and_check("00")
    namespace = {"np": np}
    exec(exercise, namespace)
    run_ap_check(namespace["average_precision"])


def test_reciprocal_rank_passes_the_toy_and_fails_the_ap_check():
    assert reciprocal_rank([False, True, False, True, False]) == 0.5, "the toy alone cannot tell them apart"
    with pytest.raises(AssertionError, match="the AP of"):
        run_ap_check(reciprocal_rank)


@pytest.mark.parametrize("wrong", [mean_reciprocal_rank_of_every_match, precision_at_every_rank, r_precision,
                                   interpolated, divided_by_length], ids=lambda f: f.__name__)
def test_the_ap_check_rejects_other_plausible_wrong_answers(wrong):
    with pytest.raises(AssertionError, match="the AP of"):
        run_ap_check(wrong)
