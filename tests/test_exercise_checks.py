"""A notebook's check of its code exercise accepts the answer and rejects the usual wrong ones.

The check is the cells tagged ``check`` after the exercise, read from the notebook's ``.py`` and run as a
student's copy would run it, with the student's function in its namespace. The checks of
the method's core (00's AP, 02's I* and L_ia, 03's alpha and consistency term, 04's loss)
each meet the wrong answers a student plausibly writes: a swapped sign, the wrong pairs, a
missing weight."""

import jupytext
import numpy as np
import pytest
import torch

from casn_lite.tooling.handouts import checks
from casn_lite.tooling.notebooks import notebooks


def exercise_and_check(number: str, name: str | None = None):
    """The exercise cell of notebook ``number`` (the one defining ``name``, when it has
    several) and the check cells after it (their sources; the checks' joined)."""
    cells = jupytext.read(notebooks()[number]).cells
    found = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])
             and (name is None or f"def {name}(" in c.source)]
    (i,) = found
    return cells[i].source, "\n\n".join(c.source for c in checks(cells, i))


def run_check(number: str, name: str, answer, namespace: dict | None = None) -> None:
    """Notebook ``number``'s check of the exercise ``name`` with ``answer`` as the student's
    function; raises AssertionError when the check rejects it."""
    _, check = exercise_and_check(number, name)
    exec(check, {**_imports(number), **(namespace or {}), name: answer})


def _imports(number: str) -> dict:
    """What the notebook's import cells define (the checks use the notebook's imports)."""
    cells = jupytext.read(notebooks()[number]).cells
    source = next(c.source for c in cells if c.cell_type == "code" and "from casn_lite" in c.source)
    lines = [line for line in _statements(source) if line.startswith(("import ", "from "))]
    namespace: dict = {}
    exec("\n".join(lines), namespace)
    return namespace


def _statements(source: str) -> list[str]:
    """The import statements of a cell, a parenthesised one joined onto one line."""
    out, current = [], ""
    for line in source.splitlines():
        current = f"{current} {line.strip()}" if current else line
        if current.count("(") == current.count(")"):
            out.append(current.replace("( ", "(").replace(", )", ")"))
            current = ""
    return out


def answer_of(number: str, name: str):
    """The notebook's own answer to the exercise ``name``."""
    exercise, _ = exercise_and_check(number, name)
    namespace = _imports(number)
    exec(exercise, namespace)
    return namespace[name]


def run_ap_check(average_precision) -> None:
    """Notebook 00's check of ``average_precision`` (on made-up ranked lists); raises
    AssertionError when it rejects the function."""
    _, check = exercise_and_check("00", "average_precision")
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
    exercise, _ = exercise_and_check("00", "average_precision")
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


# --------------------------------------------------------------------------- 02: I* and L_ia
def ia_erasing_the_unattended(classify, images, pids, T):
    return classify(T * images).softmax(1).gather(1, pids[:, None]).mean()  # keeps the attended part


def ia_cross_entropy(classify, images, pids, T):
    return torch.nn.functional.cross_entropy(classify(images - T * images), pids)  # -log p


def ia_best_class(classify, images, pids, T):
    return classify(images - T * images).softmax(1).amax(1).mean()  # not the true class


def ia_raw_score(classify, images, pids, T):
    return classify(images - T * images).gather(1, pids[:, None]).mean()  # the logit


def ia_sum(classify, images, pids, T):
    return classify(images - T * images).softmax(1).gather(1, pids[:, None]).sum()


def ia_mask_subtracted(classify, images, pids, T):
    return classify(images - T).softmax(1).gather(1, pids[:, None]).mean()  # I - T, not I - T * I


def test_the_ia_check_accepts_the_notebooks_answer():
    run_check("02", "my_ia_loss", answer_of("02", "my_ia_loss"))


@pytest.mark.parametrize("wrong", [ia_erasing_the_unattended, ia_cross_entropy, ia_best_class, ia_raw_score,
                                   ia_sum, ia_mask_subtracted], ids=lambda f: f.__name__)
def test_the_ia_check_rejects_plausible_wrong_answers(wrong):
    with pytest.raises(AssertionError, match="my_ia_loss disagrees"):
        run_check("02", "my_ia_loss", wrong)


# --------------------------------------------------------------------------- 03: alpha and the consistency term
def alpha_same_logit(pair_logits, f_minus):
    (g,) = torch.autograd.grad(pair_logits[:, 1].sum(), f_minus, retain_graph=True)
    return (g > 0).float()


def alpha_sign_of_difference(pair_logits, f_minus):
    return (f_minus.detach() > 0).float()


def alpha_margin_turned_round(pair_logits, f_minus):
    (g,) = torch.autograd.grad((pair_logits[:, 0] - pair_logits[:, 1]).sum(), f_minus, retain_graph=True)
    return (g > 0).float()


def test_the_indicator_check_accepts_the_notebooks_answer():
    run_check("03", "my_indicator", answer_of("03", "my_indicator"))


@pytest.mark.parametrize("wrong", [alpha_same_logit, alpha_sign_of_difference, alpha_margin_turned_round],
                         ids=lambda f: f.__name__)
def test_the_indicator_check_rejects_plausible_wrong_answers(wrong):
    with pytest.raises(AssertionError, match="my_indicator disagrees"):
        run_check("03", "my_indicator", wrong)


def consistency_every_pair(c1, c2, same, valid):
    return (c1 - c2).norm(dim=1).mean()


def consistency_negatives_too(c1, c2, same, valid):
    return (c1 - c2).norm(dim=1)[valid.bool()].mean()


def consistency_empty_maps_too(c1, c2, same, valid):
    return (c1 - c2).norm(dim=1)[same.bool()].mean()


def consistency_squared(c1, c2, same, valid):
    return ((c1 - c2) ** 2).sum(1)[same.bool() & valid.bool()].mean()


def consistency_summed(c1, c2, same, valid):
    return (c1 - c2).norm(dim=1)[same.bool() & valid.bool()].sum()


def test_the_consistency_check_accepts_the_notebooks_answer():
    run_check("03", "my_consistency", answer_of("03", "my_consistency"))


@pytest.mark.parametrize("wrong", [consistency_every_pair, consistency_negatives_too, consistency_empty_maps_too,
                                   consistency_squared, consistency_summed], ids=lambda f: f.__name__)
def test_the_consistency_check_rejects_plausible_wrong_answers(wrong):
    with pytest.raises(AssertionError, match="my_consistency disagrees"):
        run_check("03", "my_consistency", wrong)


# --------------------------------------------------------------------------- 04: CASN's loss with the ramp
def casn_ramp_on_everything(l_ide, l_ia, l_sa, lambda_ia, lambda_sa, factor):
    return factor * (l_ide + lambda_ia * l_ia + lambda_sa * l_sa)


def casn_ramp_forgotten(l_ide, l_ia, l_sa, lambda_ia, lambda_sa, factor):
    return l_ide + lambda_ia * l_ia + lambda_sa * l_sa


def casn_lambdas_swapped(l_ide, l_ia, l_sa, lambda_ia, lambda_sa, factor):
    return l_ide + factor * (lambda_sa * l_ia + lambda_ia * l_sa)


def test_the_casn_loss_check_accepts_the_notebooks_answer():
    run_check("04", "my_casn_loss", answer_of("04", "my_casn_loss"))


@pytest.mark.parametrize("wrong", [casn_ramp_on_everything, casn_ramp_forgotten, casn_lambdas_swapped],
                         ids=lambda f: f.__name__)
def test_the_casn_loss_check_rejects_plausible_wrong_answers(wrong):
    with pytest.raises(AssertionError):
        run_check("04", "my_casn_loss", wrong)
