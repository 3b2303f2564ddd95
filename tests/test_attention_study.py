"""The attention study: the arms of benchmarks/attention_study.py, and its analysis
(casn_lite.tooling.study): the pre-registered primary comparisons and the adjustment of the
rest, on made-up records (no training).

Caught: IDE+SA(0) built with the paper's consistency weight (or IDE+SA with 0), the
primaries left unadjusted or adjusted by Bonferroni alone (Holm's step-down), a primary
counted again among the secondary comparisons, a comparison against the wrong control arm."""

import numpy as np
import pytest
from scipy import stats

from casn_lite.tooling import study as analysis

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


def test_the_primaries_are_paired_t_tests_adjusted_by_holm():
    result = analysis.primary(records())
    assert [cell for cell, _, _ in result] == [("control", *comparison) for comparison in analysis.PRIMARY]
    p = [stats.ttest_rel(MAP[variant], MAP[control]).pvalue for variant, control, _ in analysis.PRIMARY]
    for (_, d, _), expected in zip(result, p, strict=True):
        assert d.p == pytest.approx(expected)
        assert d.n == 5
    small, large = np.argsort(p)
    holm = {small: min(1, 2 * p[small]), large: max(min(1, 2 * p[small]), p[large])}
    for i, (_, _, h) in enumerate(result):
        assert h == pytest.approx(holm[i])
    assert result[1][1].mean == pytest.approx(np.mean(np.subtract(MAP["IDE+SA"], MAP["IDE+SA(0)"])))


def test_the_secondaries_leave_the_primaries_out():
    q, tested = analysis.adjusted(records())
    assert not any(("control", *comparison) in q for comparison in analysis.PRIMARY)
    assert ("control", "IDE+SA(0)", "IDE", "mAP") in q and ("control", "IDE+SA", "IDE", "mAP") in q
    # rank-1 holds the same numbers as mAP here: its comparisons are tested, the primaries' twins included
    assert ("control", "IDE+IA", "IDE", "rank1") in q
    assert tested == 2 * len(analysis.COMPARISONS) - 2  # mAP without its two primaries, and rank-1


def test_the_report_shows_the_primaries_with_their_verdicts():
    text = analysis.report(records() + records("base"), "python benchmarks/attention_study.py")
    assert "Primary comparisons (pre-registered)" in text
    assert "| control: IDE+SA - IDE+SA(0) | mAP | 5 |" in text
    assert "IDE+SA - IDE+SA(0)" in text.split("## base")[1], "the verification comparison on every setting"


def test_findings_say_whether_each_term_moved_its_quantity_and_which_way():
    """Made-up records: IA raises mAP and lowers the tag's lift clearly (as the paper
    expects), and flat records show no effect; a flipped expected direction, or the
    primary's Holm p swapped for a BH q, is caught."""
    rows = records()
    rng = np.random.default_rng(0)
    for r in rows:
        noise = rng.normal(0, 0.002)
        r["class_tag_lift"] = {"IDE+IA": 0.8}.get(r["variant"], 1.2) + noise
    found = {(f["data"], f["term"], f["quantity"]): f for f in analysis.findings(rows)}
    ia_map = found[("positive control", "IA (identification attention)", "mAP")]
    assert ia_map["primary"] and ia_map["adjusted_p"] == pytest.approx(analysis.primary(rows)[0][2])
    assert ia_map["verdict"] == "moved as the paper expects"
    tag = found[("positive control", "IA (identification attention)", "class_tag_lift")]
    assert tag["difference"] < 0 and tag["verdict"] == "moved as the paper expects" and not tag["primary"]
    sa_map = found[("positive control", "SA's consistency term", "mAP")]
    assert sa_map["difference"] > 0  # the made-up IDE+SA is above IDE+SA(0)
    flat = [dict(r, mAP=0.3 + rng.normal(0, 0.01)) for r in records()]
    assert all(f["verdict"] in ("no effect shown", "not tested")
               for f in analysis.findings(flat) if f["quantity"] == "mAP")
    text = "\n".join(analysis.findings_table(analysis.findings(rows)))
    assert "(primary, Holm)" in text and "| positive control | IA (identification attention) | mAP | 5 |" in text
    shown = [r for r in analysis.findings(rows) if r["term"] != "IA (identification attention)"]
    assert "(primary, Holm)" in "\n".join(analysis.findings_table(shown)), "adjusted over two, whichever rows are shown"
    version4 = [dict(r, setting={"control": "control-v4", "base": "base-v2"}[r["setting"]]) for r in rows]
    text = "\n".join(analysis.findings_table(analysis.findings(version4)))  # one primary: IDE+SA - IDE+SA(0)
    assert "(the one primary, unadjusted)" in text and "Holm" not in text


def test_the_manipulation_check_asks_whether_ide_reads_the_tag():
    """Made-up starts: on the control IDE knows its training people far better (it reads the
    tag): the check says so; with equal starts it does not. Swapping the data sets' roles
    (default - control) is caught by the sign."""
    rows = records("control") + records("base")
    for r in rows:
        control = r["setting"] == "control"  # the seeds differ by 0.6 +- 0.01 (a tie would go untested)
        r["start_p_true"] = (0.9 + 0.01 * (r["seed"] % 2) if control else 0.3) + 0.01 * r["seed"] ** 2
        r["class_tag_lift"] = 2.0
    check = {row["quantity"]: row for row in analysis.manipulation_check(rows)}
    assert check["start_p_true"]["difference"] == pytest.approx(0.604)
    assert check["start_p_true"]["verdict"].startswith("surer of its training people")
    assert check["class_tag_lift"]["difference"] == pytest.approx(2.0)
    for r in rows:
        r["start_p_true"] = 0.3 + 0.01 * r["seed"] ** 2 * (1 if r["setting"] == "control" else -1)
    assert analysis.manipulation_check(rows)[0]["verdict"].startswith("no surer")


def test_each_version_of_the_control_is_analysed_on_its_own_settings():
    """Version 2's records (control-v2 beside base-v2) give what version 1's give under the
    new names: the same primaries, findings and manipulation check. Caught: an analysis keyed
    to the name "control" (no primaries, no findings on version 2), or a version 2 control
    compared with version 1's default data. Two versions in one analysis are refused: each
    is its own pre-registered family."""
    def version2(rows):
        return [dict(r, setting={"control": "control-v2", "base": "base-v2"}[r["setting"]]) for r in rows]

    rows = records("control") + records("base")
    for r in rows:
        r["start_p_true"] = (0.6 if r["setting"] == "control" else 0.3) + 0.01 * r["seed"] ** 2 * (r["seed"] % 2)
        r["class_tag_lift"] = 1.5 + 0.1 * r["seed"]
    v1, v2 = rows, version2(rows)
    assert [(cell[1:], d.mean, h) for cell, d, h in analysis.primary(v2)] == \
        [(cell[1:], d.mean, h) for cell, d, h in analysis.primary(v1)]
    assert [cell[0] for cell, _, _ in analysis.primary(v2)] == ["control-v2", "control-v2"]
    def table(rows):  # rows as text (a nan is not equal to itself)
        return analysis.findings_table(rows)

    assert table(analysis.findings(v2)) == table(analysis.findings(v1)) and analysis.findings(v2)
    assert table(analysis.manipulation_check(v2)) == table(analysis.manipulation_check(v1))
    assert "| control-v2: IDE+IA - IDE | mAP | 5 |" in analysis.report(v2, "python benchmarks/attention_study.py")
    mixed = v2 + [dict(r, setting="base", start_p_true=0.0) for r in rows if r["setting"] == "base"]
    assert table(analysis.manipulation_check(mixed)) == table(analysis.manipulation_check(v1))  # base-v2, not base
    with pytest.raises(ValueError, match="several control versions"):
        analysis.primary(v1 + v2)


def test_records_are_appended_one_line_each_and_read_back(tmp_path):
    """``saving.append_record``, which the study and the start benchmarks resume from: a
    missing folder is made, each record is one line, earlier lines stay."""
    import json

    from casn_lite.saving import append_record

    path = tmp_path / "new" / "records.jsonl"
    append_record(path, {"seed": 0, "protocol": 3})
    append_record(path, {"seed": 1, "protocol": 2})
    assert [json.loads(line)["seed"] for line in path.read_text().splitlines()] == [0, 1]
    assert analysis.read_records(path, 3) == [{"seed": 0, "protocol": 3}]


def test_the_findings_figure_draws_each_tested_difference_on_its_own_scale():
    """``viz.plot_findings`` on made-up findings: one interval per tested row (absolute rows such
    as the head's AUC left out), mAP in points on the left, the attention quantities as
    measured on the right, the primary filled. Caught: mAP left as a fraction, the absolute
    rows drawn as differences, a primary drawn hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from casn_lite.viz import plot_findings

    rows = records() + records("base")
    for r in rows:
        r["class_tag_lift"] = {"IDE+IA": 0.8}.get(r["variant"], 1.2) + 0.002 * r["seed"] ** 2
        r["head_auc"] = 0.8
    found = analysis.findings(rows)
    tested = [f for f in found if not f["verdict"].startswith("absolute")]
    fig = plot_findings(found)
    left, right = fig.axes[:2]
    mAP_rows = [f for f in tested if f["quantity"] == "mAP"]
    assert len(left.containers) == len(mAP_rows) and len(right.containers) == len(tested) - len(mAP_rows)
    assert len(tested) < len(found), "the head's AUC rows are absolute values"
    first = left.containers[0].lines[0]
    assert first.get_xdata()[0] == pytest.approx(100 * mAP_rows[0]["difference"])
    assert mAP_rows[0]["primary"] and first.get_markerfacecolor() != "white"
    tag = next(i for i, f in enumerate(f for f in tested if f["quantity"] != "mAP") if f["quantity"] == "class_tag_lift")
    assert right.containers[tag].lines[0].get_xdata()[0] == pytest.approx(-0.4, abs=0.01)
    plt.close(fig)


def test_version_3_is_version_2s_regime_with_the_decoy_and_one_primary(study):
    """The decoy control (docs/positive_control.md, version 3): version 2's regime on the
    default data plus the decoy, so that base-v2 is its default data; its one pre-registered
    primary is SA's consistency term, tested unadjusted. Caught: the decoy left out of the
    setting or of the run identity (version 2's default-data runs would be reused for it),
    the name-tag control mixed in, version 3 analysed with version 2's two primaries."""
    from dataclasses import replace

    v3 = study.SETTINGS["control-v3"]
    assert v3 == replace(study.SETTINGS["base-v2"], decoy=True) and not v3.control
    assert "decoy" in study.COMMON
    base = [dict(r, setting="base-v2") for r in records("base-v2")]
    assert not any(study.same_run(r, v3, r["seed"], r["variant"]) for r in base)
    rows = [dict(r, setting="control-v3") for r in records("control-v3")] + base
    assert analysis.data_sets(rows) == (("control-v3", "positive control"), ("base-v2", "default data"))
    result = analysis.primary(rows)
    assert [cell for cell, _, _ in result] == [("control-v3", "IDE+SA", "IDE+SA(0)", "mAP")]
    (_, d, holm), = result
    assert holm == pytest.approx(stats.ttest_rel(MAP["IDE+SA"], MAP["IDE+SA(0)"]).pvalue)
    assert holm == pytest.approx(d.p)
    for r in rows:  # the check: IDE's inconsistency with the decoy, and what retrieval pays
        r.update(positive_distance_decoy=2.0 + 0.1 * r["seed"], positive_distance_clear=1.5, class_decoy_lift=1.8,
                 start_p_true=0.4, mAP=r["mAP"] - (0.05 + 0.01 * r["seed"] if r["setting"] == "control-v3" else 0))
    check = {row["quantity"]: row for row in analysis.manipulation_check(rows)}
    assert check["positive_distance_decoy - positive_distance_clear"]["difference"] == pytest.approx(0.7)
    assert check["mAP"]["difference"] == pytest.approx(-0.07) and check["mAP"]["verdict"].startswith("pays")
    assert check["class_decoy_lift"]["difference"] == pytest.approx(1.8)


def test_version_4_is_version_2s_control_with_the_tag_moving_and_one_primary(study):
    """Version 4 (docs/positive_control.md): version 2's control setting with the name tag at
    a random height; base-v2 its default data; SA's consistency term its one primary; its
    check reads the tag's split of the profile distance. Caught: tag_moves left out of the
    run identity (version 2's control runs reused), version 2's two primaries."""
    from dataclasses import replace

    v4 = study.SETTINGS["control-v4"]
    assert v4 == replace(study.SETTINGS["control-v2"], tag_moves=True) and "tag_moves" in study.COMMON
    v2_rows = [dict(r, setting="control-v2") for r in records("control-v2")]
    assert not any(study.same_run(r, v4, r["seed"], r["variant"]) for r in v2_rows)
    rows = [dict(r, setting="control-v4") for r in records("control-v4")]
    rows += [dict(r, setting="base-v2") for r in records("base-v2")]
    assert [cell for cell, _, _ in analysis.primary(rows)] == [("control-v4", "IDE+SA", "IDE+SA(0)", "mAP")]
    for r in rows:
        r.update(positive_distance_tag=1.9, positive_distance_no_tag=1.6, start_p_true=0.4)
    check = {row["quantity"]: row for row in analysis.manipulation_check(rows)}
    assert check["positive_distance_tag - positive_distance_no_tag"]["difference"] == pytest.approx(0.3)
