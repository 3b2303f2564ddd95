"""Verdicts computed from the numbers: is a difference between two variants an effect?

The rule the notebooks and the attention study share: compare the two variants *paired*
(same seed, same start, same batches), one difference per seed. A difference counts as an
effect only if

* it has the same sign on every seed, and
* the mean paired difference exceeds twice its standard error (std / sqrt(seeds)).

With one seed there is no spread, so nothing counts as an effect: the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Paired", "paired_difference", "verdict"]


@dataclass
class Paired:
    """The paired differences ``variant - control`` over seeds, summarised."""

    diffs: np.ndarray  # one per seed
    mean: float
    se: float  # standard error of the mean; NaN with one seed
    same_sign: bool
    effect: bool  # same sign on every seed and |mean| > 2 se

    @property
    def n(self) -> int:
        return len(self.diffs)


def paired_difference(control: Sequence[float], variant: Sequence[float]) -> Paired:
    """``variant - control`` seed by seed (both in seed order); seeds where either is NaN
    are left out."""
    if len(control) != len(variant):
        raise ValueError(f"one value per seed for both: got {len(control)} and {len(variant)}")
    diffs = np.asarray(variant, dtype=float) - np.asarray(control, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) == 0:
        return Paired(diffs, math.nan, math.nan, False, False)
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
    same_sign = bool((diffs > 0).all() or (diffs < 0).all())
    effect = len(diffs) > 1 and same_sign and abs(float(diffs.mean())) > 2 * se
    return Paired(diffs, float(diffs.mean()), se, same_sign, bool(effect))


def verdict(metric: str, control_name: str, variant_name: str, control: Sequence[float],
            variant: Sequence[float], higher_is_better: bool | None = True, scale: float = 100.0,
            unit: str = " points") -> str:
    """One line: the direction and size of ``variant - control`` for ``metric``, over how
    many seeds, and whether it is beyond the noise (the rule above). ``higher_is_better=None``
    for a quantity with no better direction: the line says "higher" or "lower"."""
    d = paired_difference(control, variant)
    if d.n == 0:
        return f"{metric}: {variant_name} vs {control_name}: no values to compare"
    tiny = round(scale * d.mean, 2) == 0  # it would print as +0.00 or -0.00
    if tiny and not d.effect:  # (a zero mean is never an effect)
        direction = "no change at two decimals"
    elif higher_is_better is None:
        direction = "higher" if d.mean > 0 else "lower"
    else:
        direction = "better" if (d.mean > 0) == higher_is_better else "worse"
    size = f"{scale * d.mean:+.{4 if tiny and d.effect else 2}f}{unit}"
    seeds = f"{d.n} seed{'s' if d.n > 1 else ''}"
    if d.n == 1:
        judged = "one seed has no spread: not evidence of an effect either way"
    elif d.effect:
        judged = f"an effect: same sign on every seed and beyond 2 standard errors ({2 * scale * d.se:.2f})"
    elif not d.same_sign:
        judged = "not an effect: the sign changes between seeds"
    else:
        judged = f"not an effect: within 2 standard errors ({2 * scale * d.se:.2f})"
    return f"{metric}: {variant_name} vs {control_name}: {size} ({direction}), {seeds}; {judged}"
