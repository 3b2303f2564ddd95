"""benchmarks/attention_study.py: its arms, its pre-registered primary comparisons and the
adjustment of the rest, on made-up records (no training).

Caught: IDE+SA(0) built with the paper's consistency weight (or IDE+SA with 0), the
primaries left unadjusted or adjusted by Bonferroni alone (Holm's step-down), a primary
counted again among the secondary comparisons, a comparison against the wrong control arm."""

import numpy as np
import pytest
from scipy import stats

from .support import load_benchmark


@pytest.fixture(scope="module")


def study():
    return load_benchmark("attention_study")


def test_the_verification_arm_differs_from_ide_sa_in_the_consistency_weight_alone(study):
    s = study.SETTINGS["control"]
    verification, paper = study.arm_loss("IDE+SA(0)", s, 16), study.arm_loss("IDE+SA", s, 16)
    assert verification.settings.consistency_weight == 0.0 and paper.settings.consistency_weight == 0.2
    assert (verification.ia, verification.sa) == (paper.ia, paper.sa) == (False, True)
    from dataclasses import replace

    assert replace(verification.settings, consistency_weight=0.2) == paper.settings
    assert study.DEPENDS_ON["IDE+SA(0)"] == study.DEPENDS_ON["IDE+SA"]
    assert study.SETTINGS["control"].control and not study.SETTINGS["base"].control


MAP = {  # per arm, five seeds; IDE+IA - IDE and IDE+SA - IDE+SA(0) differ by made-up amounts
    "IDE": [0.30, 0.32, 0.28, 0.31, 0.29],
    "IDE+IA": [0.31, 0.335, 0.285, 0.33, 0.30],
    "IDE+SA(0)": [0.25, 0.27, 0.24, 0.26, 0.28],
    "IDE+SA": [0.27, 0.28, 0.27, 0.29, 0.29],
    "CASN(IDE)": [0.30, 0.30, 0.30, 0.30, 0.31],
}


def records(setting="control"):
    from dataclasses import asdict

    knobs = asdict(load_benchmark("attention_study").SETTINGS[setting])
    return [{"setting": setting, **knobs, "seed": seed, "variant": arm, "mAP": values[seed],
             "rank1": values[seed], "start_p_true": 0.5, "protocol": 3}
            for arm, values in MAP.items() for seed in range(5)]


def test_the_primaries_are_paired_t_tests_adjusted_by_holm(study):
    result = study.primary(records())
    assert [cell for cell, _, _ in result] == list(study.PRIMARY)
    p = [stats.ttest_rel(MAP[variant], MAP[control]).pvalue for _, variant, control, _ in study.PRIMARY]
    for (_, d, _), expected in zip(result, p, strict=True):
        assert d.p == pytest.approx(expected)
        assert d.n == 5
    small, large = np.argsort(p)
    holm = {small: min(1, 2 * p[small]), large: max(min(1, 2 * p[small]), p[large])}
    for i, (_, _, h) in enumerate(result):
        assert h == pytest.approx(holm[i])
    assert result[1][1].mean == pytest.approx(np.mean(np.subtract(MAP["IDE+SA"], MAP["IDE+SA(0)"])))


def test_the_secondaries_leave_the_primaries_out(study):
    q, tested = study.adjusted(records())
    assert not any(cell in q for cell in study.PRIMARY)
    assert ("control", "IDE+SA(0)", "IDE", "mAP") in q and ("control", "IDE+SA", "IDE", "mAP") in q
    # rank-1 holds the same numbers as mAP here: its comparisons are tested, the primaries' twins included
    assert ("control", "IDE+IA", "IDE", "rank1") in q
    assert tested == 2 * len(study.COMPARISONS) - 2  # mAP without its two primaries, and rank-1


def test_the_report_shows_the_primaries_with_their_verdicts(study):
    text = study.report(records() + records("base"), "python benchmarks/attention_study.py")
    assert "Primary comparisons (pre-registered)" in text
    assert "| control: IDE+SA - IDE+SA(0) | mAP | 5 |" in text
    assert "IDE+SA - IDE+SA(0)" in text.split("## base")[1], "the verification comparison on every setting"
