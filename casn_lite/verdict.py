"""Verdicts computed from the numbers: is a difference between two variants an effect?

The rule the notebooks and the attention study share. Two variants are compared *paired*
(same seed, same start, same batches), one difference per seed, d_1 .. d_n, and tested
with a paired t-test:

    t = mean(d) / (s / sqrt(n)),   s the sample standard deviation (ddof=1),
    p = 2 P(T_{n-1} > |t|)          (two-sided, Student's t with n - 1 degrees of freedom).

A difference is an effect when p < 0.05. When no true difference exists and the seeds'
noise is roughly normal, this fires in 5 % of comparisons for any number of seeds (the
earlier rule, "same sign on every seed and beyond 2 standard errors", fired in 18-30 %:
``benchmarks/verdict_calibration.py`` simulates both). It needs at least two seeds; with
five, a true difference of 2.4 paired standard deviations is found 97 % of the time.

Across a table of comparisons (every variant, every metric) some p-values fall under 0.05
by chance alone. ``verdict_lines`` controls the false discovery rate across them
(Benjamini-Hochberg, ``scipy.stats.false_discovery_control``) and judges each line by its
adjusted p-value, q.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "Paired", "paired_difference", "power", "seeds_needed", "adjust", "verdict",
           "verdict_lines", "earlier_rule"]

ALPHA = 0.05  # the false-positive rate the rule allows, per comparison (or the FDR, over a table)


@dataclass
class Paired:
    """The paired differences ``variant - control`` over seeds, summarised and tested."""

    diffs: np.ndarray  # one per seed
    mean: float
    se: float  # standard error of the mean, s / sqrt(n); NaN with one seed
    t: float  # mean / se
    p: float  # two-sided p-value of the paired t-test (n - 1 degrees of freedom); NaN with one seed or no spread

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def effect(self) -> bool:
        """p < 0.05 (one comparison on its own; ``verdict_lines`` judges a table by q)."""
        return self.p < ALPHA  # False for NaN

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The t interval of the mean difference over seeds: mean +- t_{df} se."""
        if self.n < 2:
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.mean - half, self.mean + half


def paired_difference(control: Sequence[float], variant: Sequence[float]) -> Paired:
    """``variant - control`` seed by seed (both in seed order), tested; seeds where either
    is NaN are left out."""
    if len(control) != len(variant):
        raise ValueError(f"one value per seed for both: got {len(control)} and {len(variant)}")
    diffs = np.asarray(variant, dtype=float) - np.asarray(control, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    n = len(diffs)
    if n == 0:
        return Paired(diffs, math.nan, math.nan, math.nan, math.nan)
    mean = float(diffs.mean())
    if n == 1:
        return Paired(diffs, mean, math.nan, math.nan, math.nan)
    se = float(diffs.std(ddof=1)) / math.sqrt(n)  # the sample standard deviation, n - 1
    if np.allclose(diffs, diffs[0], rtol=1e-9, atol=1e-12):  # every seed moved by the same amount
        # (up to rounding): the t-test cannot judge it
        # (on a discrete metric such as rank-1 over 48 queries, two or three seeds tie by
        # chance often enough that calling every tie an effect fires on noise)
        return Paired(diffs, mean, se, math.nan, math.nan)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), n - 1))  # two-sided, Student's t with n - 1 df
    return Paired(diffs, mean, se, t, p)


def earlier_rule(diffs: np.ndarray) -> bool:
    """The rule this project used first, kept only to measure it (``tests/test_verdict.py``,
    ``benchmarks/verdict_calibration.py``): the same sign on every seed and |mean| beyond two
    standard errors. On noise it calls an effect in 29 % of comparisons with two seeds and
    18 % with three; judge with ``paired_difference`` instead."""
    diffs = np.asarray(diffs, dtype=float)
    se = diffs.std(ddof=1) / math.sqrt(len(diffs))
    return bool(((diffs > 0).all() or (diffs < 0).all()) and abs(diffs.mean()) > 2 * se)


def power(effect_size: float, seeds: int, alpha: float = ALPHA) -> float:
    """How often the paired t-test finds a true difference of ``effect_size`` paired standard
    deviations (mean / sd of the per-seed differences) with ``seeds`` seeds."""
    if seeds < 2:
        return 0.0
    df, shift = seeds - 1, abs(effect_size) * math.sqrt(seeds)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(effect_size: float, target: float = 0.8, alpha: float = ALPHA, most: int = 1000) -> int | None:
    """The fewest seeds that find a true difference of ``effect_size`` paired standard
    deviations ``target`` of the time; None beyond ``most`` (or for no difference)."""
    if not effect_size or math.isnan(effect_size):
        return None
    return next((n for n in range(2, most + 1) if power(effect_size, n, alpha) >= target), None)


def adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) of a family of comparisons; NaN stays NaN
    and does not count as a comparison."""
    p = np.asarray(pvalues, dtype=float)
    q = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    return q


def adjust_holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of a small family decided in advance (the family-wise
    chance of any false positive at most alpha); NaN stays NaN and does not count."""
    p = np.asarray(pvalues, dtype=float)
    adjusted, running = np.full_like(p, np.nan), 0.0
    tested = np.flatnonzero(~np.isnan(p))
    for rank, i in enumerate(tested[np.argsort(p[tested])]):
        running = max(running, min(1.0, (len(tested) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _size(d: Paired, scale: float, unit: str, decimals: int) -> str:
    return f"{scale * d.mean:+.{decimals}f}{unit}"


def verdict(metric: str, control_name: str, variant_name: str, control: Sequence[float],
            variant: Sequence[float], higher_is_better: bool | None = True, scale: float = 100.0,
            unit: str = " points", q: float | None = None) -> str:
    """One line: the direction and size of ``variant - control`` for ``metric``, over how
    many seeds, the paired t-test's p-value and whether it is an effect. ``q``: the
    comparison's adjusted p-value within a table (``verdict_lines``), which then decides.
    ``higher_is_better=None`` for a quantity with no better direction ("higher"/"lower")."""
    d = paired_difference(control, variant)
    if d.n == 0:
        return f"{metric}: {variant_name} vs {control_name}: no values to compare"
    judge = d.p if q is None else q
    effect = judge < ALPHA
    tiny = round(scale * d.mean, 2) == 0  # it would print as +0.00 or -0.00
    if tiny and not effect:  # (a zero mean is never an effect)
        direction = "no change at two decimals"
    elif higher_is_better is None:
        direction = "higher" if d.mean > 0 else "lower"
    else:
        direction = "better" if (d.mean > 0) == higher_is_better else "worse"
    size = _size(d, scale, unit, 4 if tiny and effect else 2)
    seeds = f"{d.n} seed{'s' if d.n > 1 else ''}"
    if d.n == 1:
        needed = seeds_needed(2.4)
        judged = (f"one seed cannot show an effect (no spread to compare it with); a difference of "
                  f"2.4 seed-to-seed standard deviations needs {needed} seeds to be found 80 % of the time")
        return f"{metric}: {variant_name} vs {control_name}: {size} ({direction}), {seeds}; {judged}"
    if math.isnan(d.p):
        judged = ("every seed moved by exactly the same amount, so there is no spread to test it against: "
                  "not an effect by this rule (more seeds can tell)")
        return f"{metric}: {variant_name} vs {control_name}: {size} ({direction}), {seeds}; {judged}"
    test = f"p = {d.p:.3f}" + ("" if q is None else f", q = {q:.3f}")
    if effect:
        judged = f"an effect ({test}, paired t-test, {d.df} df)"
    else:
        judged = f"not an effect ({test}, paired t-test, {d.df} df)"
        size_sd = d.mean / (d.se * math.sqrt(d.n)) if d.se > 0 else math.nan
        needed = seeds_needed(size_sd)
        if needed is not None and needed > d.n:
            judged += f"; a true difference this size would need about {needed} seeds to be found 80 % of the time"
    return f"{metric}: {variant_name} vs {control_name}: {size} ({direction}), {seeds}; {judged}"


def verdict_lines(comparisons: Sequence[Mapping]) -> list[str]:
    """``verdict`` for each comparison (a mapping of its arguments), judged together: the
    p-values are adjusted for the number of comparisons (Benjamini-Hochberg, false discovery
    rate 5 %), and the first line says so."""
    pvalues = [paired_difference(c["control"], c["variant"]).p for c in comparisons]
    q = adjust(pvalues)
    tested = int((~np.isnan(q)).sum())
    head = (f"{tested} comparisons tested together: an effect when its Benjamini-Hochberg adjusted p-value "
            f"q < {ALPHA} (false discovery rate {100 * ALPHA:.0f} %)" if tested else
            "no comparison has two seeds or more: none can show an effect")
    lines = [head]
    for c, qi in zip(comparisons, q, strict=True):
        lines.append(verdict(**c, q=None if math.isnan(qi) else float(qi)))
    return lines
