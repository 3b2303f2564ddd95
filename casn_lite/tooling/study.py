"""The attention study's records and what they say: the analysis behind
``benchmarks/attention_study.py``'s report and notebook 05's "what we found".

A record is one arm trained from one seed's IDE start in one setting of the study, with
its retrieval and attention measured on the seed's fixed test pairs. Every comparison is
paired: an arm minus its control arm (IDE, or IDE+SA(0) for the consistency term) on the
same seed, tested by a paired t-test over the seeds (``casn_lite.verdict``). The primary
comparisons, fixed in docs/positive_control.md before the runs, are adjusted together by
Holm; every other comparison the report prints, together by Benjamini-Hochberg.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..verdict import ALPHA, adjust, adjust_holm, paired_difference

__all__ = ["ARM_NAMES", "COMPARISONS", "PRIMARY", "PRIMARY_OF", "VERSIONS", "control_setting", "primary_cells",
           "read_records", "paired", "primary", "adjusted",
           "same_pairs", "compact_table", "primary_lines", "report", "data_sets", "findings", "findings_table",
           "manipulation_check", "SHORTCUT_KEYS", "shortcut_conditions"]

# the arms, in the order a table lists them (benchmarks/attention_study.py says how each trains)
ARM_NAMES = ("IDE", "IDE+IA", "IDE+SA(0)", "IDE+SA", "CASN(IDE)")
# the paired comparisons: each arm against IDE, and consistency against verification alone
COMPARISONS = (("IDE+IA", "IDE"), ("IDE+SA(0)", "IDE"), ("IDE+SA", "IDE"), ("CASN(IDE)", "IDE"),
               ("IDE+SA", "IDE+SA(0)"))
# pre-registered in docs/positive_control.md before the runs: on the positive control, mAP,
# Holm-adjusted over these two (arm, its control arm, metric)
PRIMARY = (("IDE+IA", "IDE", "mAP"), ("IDE+SA", "IDE+SA(0)", "mAP"))
# the positive control's versions (docs/positive_control.md): the control's setting, and the
# setting of the default data run beside it in the same regime; a records file holds one version
VERSIONS = {"control": "base", "control-v2": "base-v2", "control-v3": "base-v2", "control-v4": "base-v2"}
# each version's primary comparisons, where they are not PRIMARY: versions 3 (the decoy) and 4
# (the tag at a random height) were built for SA's consistency term, and pre-registered with
# that one comparison
CONSISTENCY_ONLY = (("IDE+SA", "IDE+SA(0)", "mAP"),)
PRIMARY_OF = {"control-v3": CONSISTENCY_ONLY, "control-v4": CONSISTENCY_ONLY}

RETRIEVAL = ("mAP", "rank1")
ATTENTION = ("class_empty", "class_person_lift", "class_cue_lift", "empty", "person_lift", "cue_lift",
             "positive_distance", "class_tag_lift", "class_sign_lift", "sign_lift",
             "class_decoy_lift", "decoy_lift", "positive_distance_decoy", "positive_distance_tag",
             "negative_distance", "sa_empty", "sa_positive_distance", "head_auc", "head_bce")
COMPARED = (*RETRIEVAL, *ATTENTION[:14], "head_auc")  # the paired comparisons the report tests (the
# control's tag, sign and decoy only where its data hold them, the head's AUC only between SA arms)


def paired(records: list[dict], setting: str, variant: str, key: str, control: str = "IDE"):
    """Variant minus its control arm (IDE unless named) on each seed, tested
    (``casn_lite.verdict.paired_difference``)."""
    by = {(r["seed"], r["variant"]): r for r in records if r["setting"] == setting}
    seeds = sorted(sd for sd, v in by if v == variant and (sd, control) in by)
    return paired_difference([by[(sd, control)].get(key, math.nan) for sd in seeds],
                             [by[(sd, variant)].get(key, math.nan) for sd in seeds])


def control_setting(records: list[dict]) -> str | None:
    """The positive control's setting in ``records`` (None without one). Each version is its
    own pre-registered family, so records of two versions are refused."""
    present = [s for s in VERSIONS if any(r["setting"] == s for r in records)]
    if len(present) > 1:
        raise ValueError(f"records of several control versions ({', '.join(present)}): analyse each apart")
    return present[0] if present else None


def primary_cells(records: list[dict]) -> list[tuple[str, str, str, str]]:
    """The primary comparisons as (setting, arm, control arm, metric) on the records' control."""
    control = control_setting(records)
    return [] if control is None else [(control, *comparison) for comparison in PRIMARY_OF.get(control, PRIMARY)]


def _origin(records: list[dict], setting: str, variant: str) -> str:
    """The setting whose runs ``variant`` reuses in ``setting`` (itself when it trained them)."""
    origins = {r.get("reused_from", setting) for r in records if r["setting"] == setting and r["variant"] == variant}
    return origins.pop() if len(origins) == 1 else setting


def primary(records: list[dict]) -> list[tuple[tuple[str, str, str, str], object, float]]:
    """The pre-registered comparisons (``PRIMARY`` on the records' control): each with its paired
    difference and its p-value adjusted by Holm over the primaries (family-wise error at most 5 %)."""
    tests = [(cell, paired(records, cell[0], cell[1], cell[3], cell[2])) for cell in primary_cells(records)]
    holm = adjust_holm([d.p for _, d in tests])
    return [(cell, d, float(h)) for (cell, d), h in zip(tests, holm, strict=True)]


def adjusted(records: list[dict]) -> tuple[dict[tuple[str, str, str, str], float], int]:
    """q (Benjamini-Hochberg) of every secondary comparison the report prints, adjusted
    together: every setting x comparison x metric of the detailed tables but the primaries,
    a comparison that reuses another setting's runs counted once."""
    primaries = primary_cells(records)
    cells = [(setting, variant, control, key) for setting in dict.fromkeys(r["setting"] for r in records)
             for variant, control in COMPARISONS for key in COMPARED
             if (setting, variant, control, key) not in primaries]
    origin = {cell: (_origin(records, cell[0], cell[1]), _origin(records, cell[0], cell[2]), *cell[1:])
              for cell in cells}
    family = list(dict.fromkeys(origin.values()))
    by_origin = {o: cell for cell, o in reversed(list(origin.items()))}
    p = [paired(records, by_origin[o][0], o[2], o[4], o[3]).p for o in family]
    q = dict(zip(family, adjust(p).tolist(), strict=True))
    return {cell: q[origin[cell]] for cell in cells}, sum(v == v for v in p)


def same_pairs(records: list[dict]) -> list[str]:
    """The (setting, seed)s whose variants were measured on different test pairs, judged by
    the person's share of the test images, a function of the pairs alone (empty: none)."""
    areas: dict[tuple[str, int], set] = {}
    for r in records:
        if "person_area" in r:
            areas.setdefault((r["setting"], r["seed"]), set()).add(round(r["person_area"], 9))
    return [f"{s} seed {sd}" for (s, sd), values in areas.items() if len(values) > 1]


def _fmt(value: float, percent: bool) -> str:
    return "n/a" if value != value else (f"{100 * value:.1f}" if percent else f"{value:.2f}")


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else math.nan


def _difference(d, key: str) -> str:
    scale = 100 if key in RETRIEVAL else 1
    if d.n == 1:
        return f"{scale * d.mean:+.2f} (1 seed)"
    low, high = d.interval()
    return f"{scale * d.mean:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]"


def _cell(records: list[dict], setting: str, variant: str, control: str, key: str, q: dict,
          primaries: list[tuple[str, str, str, str]]) -> str:
    d = paired(records, setting, variant, key, control)
    if d.n == 0 or d.mean != d.mean:
        return "n/a"
    text = _difference(d, key)
    if (setting, variant, control, key) in primaries:
        return f"{text} (primary)"
    return f"**{text}**" if d.n > 1 and q.get((setting, variant, control, key), math.nan) < ALPHA else text


def _label(variant: str, control: str) -> str:
    return variant if control == "IDE" else f"{variant} - {control}"


def compact_table(records: list[dict]) -> list[str]:
    """The headline table: per setting and comparison, the paired differences that matter most."""
    keys = ("mAP", "class_person_lift", "class_tag_lift", "sign_lift", "class_decoy_lift", "decoy_lift",
            "positive_distance_decoy", "positive_distance_tag", "positive_distance", "head_auc")
    # a shortcut's columns only where some record measured it (version 3 has a decoy, no tag)
    keys = tuple(k for k in keys if any(r.get(k, math.nan) == r.get(k, math.nan) for r in records))
    q, _ = adjusted(records)
    primaries = primary_cells(records)
    lines = ["| setting (seeds) | arm | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for setting in dict.fromkeys(r["setting"] for r in records):
        ide = [r for r in records if r["setting"] == setting and r["variant"] == "IDE"]
        absolute = [_fmt(_mean([r.get(k, math.nan) for r in ide]), k in RETRIEVAL) for k in keys]
        lines.append(f"| {setting} ({len({r['seed'] for r in ide})}) | IDE (absolute) | " + " | ".join(absolute) + " |")
        for variant, control in COMPARISONS:
            cells = [_cell(records, setting, variant, control, k, q, primaries) for k in keys]
            lines.append(f"| | {_label(variant, control)} | " + " | ".join(cells) + " |")
    return lines


def primary_lines(records: list[dict]) -> list[str]:
    """The pre-registered comparisons, with their verdicts."""
    lines = ["| comparison | metric | seeds | difference [95 % t interval] | p | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for (setting, variant, control, key), d, holm in primary(records):
        if d.n == 0:
            lines.append(f"| {setting}: {variant} - {control} | {key} | 0 | not run yet | | | |")
            continue
        verdict = ("an effect" if holm < ALPHA else "no effect shown") if d.n > 1 else "one seed: no test"
        lines.append(f"| {setting}: {variant} - {control} | {key} | {d.n} | {_difference(d, key)} | "
                     f"{d.p:.3g} | {holm:.3g} | {verdict} |")
    return lines


RULE = ("Each cell: the mean over seeds of the paired difference arm - IDE (or arm - its named control; "
        "same seed, same start, same augmented batches, same test pairs), with its 95 % t interval over "
        "seeds; mAP and rank-1 in points. The pre-registered primary comparisons (docs/positive_control.md) "
        "are tested apart, Holm-adjusted. **Bold**: a secondary effect, i.e. a paired t-test (n - 1 degrees "
        "of freedom) whose p-value, adjusted by Benjamini-Hochberg over every secondary comparison of this "
        "report ({n} of them), is below 0.05.")


def report(records: list[dict], command: str) -> str:
    """The markdown report: the primary comparisons, then per setting the arms' means and the
    paired differences."""
    q, tested = adjusted(records)
    primaries = primary_cells(records)
    rule = RULE.format(n=tested)
    mismatched = same_pairs(records)
    check = ("Every arm of a seed was measured on the same test pairs (the person's share of the "
             "test images is identical across arms)." if not mismatched else
             f"WARNING: arms measured on different test pairs in {', '.join(mismatched)}.")
    lines = ["# Attention study: results", "", f"Command: `{command}`", "", check, "", rule, ""]
    if primaries:
        lines += ["Primary comparisons (pre-registered):", "", *primary_lines(records), ""]
    lines += ["Headline: paired differences against IDE (IDE's own values on its row).",
              "", *compact_table(records), ""]
    for setting in dict.fromkeys(r["setting"] for r in records):
        rows = [r for r in records if r["setting"] == setting]
        s = rows[0]
        seeds = sorted({r["seed"] for r in rows})
        lines += [f"## {setting}", "",
                  f"{s['height']}x{s['width']}, {'positive-control' if s.get('control') or s.get('decoy') else 'default'} data, "
                  f"IDE start {s['ide_epochs']} epochs then {s['variant_epochs']}, "
                  f"lambda_ia {s['lambda_ia']}, lambda_sa {s['lambda_sa']}, ramp {s['ramp_epochs']} epochs, "
                  f"head warm-up {s['head_warmup']} steps, L_ia gradient: {s['ia_gradient']}; seeds {seeds}; "
                  f"start p(c|I) = {np.mean([r['start_p_true'] for r in rows]):.2f}", ""]
        keys = [*RETRIEVAL, *ATTENTION, "bce_after_warmup", "bce_last_epoch"]
        keys = [k for k in keys if any(r.get(k, math.nan) == r.get(k, math.nan) for r in rows)]
        lines += ["| arm | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for variant in ARM_NAMES:
            vr = [r for r in rows if r["variant"] == variant]
            if not vr:
                continue
            cells = [_fmt(_mean([r.get(k, math.nan) for r in vr]), k in RETRIEVAL) for k in keys]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        compared = [k for k in COMPARED if k in keys]
        lines += ["", "Paired differences (mean [95 % t interval] over seeds; **bold**: an effect "
                  "after the Benjamini-Hochberg adjustment):", ""]
        lines += ["| comparison | " + " | ".join(compared) + " |", "|---" * (len(compared) + 1) + "|"]
        for variant, control in COMPARISONS:
            cells = [_cell(records, setting, variant, control, key, q, primaries) for key in compared]
            lines.append(f"| {_label(variant, control)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def read_records(path: str | Path, protocol: int) -> list[dict]:
    """The records of ``protocol`` in a study's ``records.jsonl`` (one JSON object a line)."""
    lines = Path(path).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("protocol", 1) == protocol]


# --------------------------------------------------------------------------- what the study found, term by term
# each term: the arm that adds it, the arm without it, and the quantities it is meant to move
# (name, expected direction: +1 higher, -1 lower), on either data set where measured
TERMS = (
    ("IA (identification attention)", "IDE+IA", "IDE",
     (("class_tag_lift", -1), ("class_decoy_lift", -1), ("class_person_lift", +1))),
    ("SA's consistency term", "IDE+SA", "IDE+SA(0)",
     (("sign_lift", -1), ("decoy_lift", -1), ("positive_distance_decoy", -1), ("positive_distance_tag", -1),
      ("positive_distance", -1))),
    ("SA's verification loss alone (L_bce)", "IDE+SA(0)", "IDE", (("head_auc", +1),)),
    ("CASN (IA and SA together)", "CASN(IDE)", "IDE", (("class_person_lift", +1), ("positive_distance", -1))),
)


def data_sets(records: list[dict]) -> tuple[tuple[str, str], ...]:
    """The settings ``findings`` reads, with a reader's name: the records' positive control and
    the default data run beside it (version 1's when the records hold no control)."""
    control = control_setting(records) or "control"
    return (control, "positive control"), (VERSIONS[control], "default data")


def _absolute_row(data: str, term: str, key: str, values: list[float], note: str) -> dict | None:
    """A row of ``findings``' format for a quantity with no paired control: its mean and range
    over seeds (None without a value)."""
    values = [v for v in values if v == v]
    if not values:
        return None
    return {"data": data, "term": term, "quantity": key, "seeds": len(values), "difference": float(np.mean(values)),
            "low": float(np.min(values)), "high": float(np.max(values)), "adjusted_p": math.nan,
            "verdict": f"absolute value ({note}); range over seeds"}


def findings(records: list[dict]) -> list[dict]:
    """For each CASN term and data set: whether it moved its own attention quantity and
    whether retrieval (mAP) followed, each a paired difference over seeds with its adjusted
    p-value (Holm for a primary comparison, Benjamini-Hochberg otherwise) and its verdict.
    ``head_auc`` of the verification arm is its absolute value (IDE has no head)."""
    q, _ = adjusted(records)
    holm = {cell: h for cell, _, h in primary(records)}
    settings = {r["setting"] for r in records}
    rows = []
    for setting, data_name in data_sets(records):
        if setting not in settings:
            continue
        for term, variant, control, quantities in TERMS:
            for key, direction in (*quantities, ("mAP", +1)):
                cell = (setting, variant, control, key)
                if key == "head_auc" and control == "IDE":  # no head in IDE: the verifier's own AUC
                    values = [r.get(key, math.nan) for r in records if r["setting"] == setting and r["variant"] == variant]
                    rows.append(_absolute_row(data_name, term, key, values, "0.5 is chance"))
                    continue
                d = paired(records, setting, variant, key, control)
                if d.n == 0 or d.mean != d.mean:
                    continue
                is_primary = cell in holm
                p_adj = holm[cell] if is_primary else q.get(cell, math.nan)
                low, high = d.interval() if d.n > 1 else (math.nan, math.nan)
                if d.n < 2 or p_adj != p_adj:
                    verdict = "not tested"
                elif p_adj < ALPHA:
                    verdict = "moved as the paper expects" if d.mean * direction > 0 else "moved against the paper's expectation"
                else:
                    verdict = "no effect shown"
                rows.append({"data": data_name, "term": term, "quantity": key, "seeds": d.n,
                             "difference": d.mean, "low": low, "high": high, "adjusted_p": p_adj,
                             "primary": is_primary, "primaries": len(holm), "verdict": verdict})
    return [row for row in rows if row is not None]


def findings_table(rows: list[dict]) -> list[str]:
    """``findings`` as a markdown table: mAP in points, the rest as measured. A primary
    comparison's p is Holm's over the primaries; a lone primary's is its own (Holm over one)."""
    lines = ["| data | term | quantity | seeds | difference [95 % t interval], or value [range] | adjusted p | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        tag = " (primary, Holm)" if r.get("primaries", 1) > 1 else " (the one primary, unadjusted)"
        scale = 100 if r["quantity"] in RETRIEVAL else 1
        sign = "" if r["verdict"].startswith("absolute") else "+"  # a value, or a signed difference
        span = "" if r["low"] != r["low"] else f" [{scale * r['low']:{sign}.2f}, {scale * r['high']:{sign}.2f}]"
        value = f"{scale * r['difference']:{sign}.2f}"
        p = "" if r["adjusted_p"] != r["adjusted_p"] else f"{r['adjusted_p']:.3g}" + (tag if r.get("primary") else "")
        lines.append(f"| {r['data']} | {r['term']} | {r['quantity']} | {r['seeds']} | {value}{span} | {p} | {r['verdict']} |")
    return lines


def manipulation_check(records: list[dict]) -> list[dict]:
    """Is the failure built into the positive control there at all? IDE on the control
    against IDE on the default data, paired by seed: the start's mean p(true class | image)
    (the name tag, or version 3's decoy, identifies a training person, so a start that reads
    it is surer), IDE's test mAP after its epochs (an IDE that relies on a shortcut the test
    images hide or falsify retrieves worse), and IDE's class attention on the tag, the camera sign and the
    decoy as lift (above 1: attended more than an even spread), absolute, over seeds; on
    version 3 also IDE's same-person profile distance on pairs where a view shows the decoy
    minus where neither does (above 0: the decoy makes attention inconsistent). Rows in
    ``findings``' format."""
    (control, _), (base, _) = data_sets(records)
    ide = {(r["setting"], r["seed"]): r for r in records if r["variant"] == "IDE"}
    seeds = sorted(sd for (s, sd) in ide if s == control and (base, sd) in ide)
    rows = []
    # (term, quantity, the sign of a difference that shows the failure, what it then shows, else)
    paired_checks = (
        ("the IDE start", "start_p_true", +1, "surer of its training people", "no surer of its training people shown"),
        ("IDE", "mAP", -1, "pays for the shortcut in retrieval", "no retrieval cost shown"))
    for term, key, sign, shown, not_shown in paired_checks if seeds else ():
        d = paired_difference([ide[(base, sd)][key] for sd in seeds], [ide[(control, sd)][key] for sd in seeds])
        low, high = d.interval() if d.n > 1 else (math.nan, math.nan)
        verdict = (f"{shown} (one check, p unadjusted)" if d.p < ALPHA and d.mean * sign > 0 else
                   f"{not_shown} (one check, p unadjusted)" if d.n > 1 else "not tested")
        rows.append({"data": "positive control - default", "term": term, "quantity": key, "seeds": d.n,
                     "difference": d.mean, "low": low, "high": high, "adjusted_p": d.p, "verdict": verdict})
    own = sorted(sd for (s, sd) in ide if s == control)
    for key in ("class_tag_lift", "class_sign_lift", "class_decoy_lift"):
        values = [ide[(control, sd)].get(key, math.nan) for sd in own]
        rows.append(_absolute_row("positive control", "IDE", key, values, "1.0: an even spread"))
    for shortcut, (_, with_it, without) in SHORTCUT_KEYS.items():  # where the records split the distance
        gaps = [ide[(control, sd)].get(with_it, math.nan) - ide[(control, sd)].get(without, math.nan) for sd in own]
        rows.append(_absolute_row("positive control", "IDE", f"{with_it} - {without}", gaps,
                                  f"above 0: the {shortcut} makes attention inconsistent"))
    return [row for row in rows if row is not None]


# the check of versions 3 and 4 (docs/positive_control.md): per shortcut, IDE's class attention
# lift on it, and the same-person profile distance on pairs where a view shows it / neither does
SHORTCUT_KEYS = {"decoy": ("class_decoy_lift", "positive_distance_decoy", "positive_distance_clear"),
                 "tag": ("class_tag_lift", "positive_distance_tag", "positive_distance_no_tag")}


def shortcut_conditions(starts: list[dict], default: list[dict], shortcut: str = "decoy") -> list[str]:
    """The three conditions of versions 3 (``shortcut`` "decoy") and 4 ("tag"), each with its
    numbers, from the starts on the control and on the default data of the same seeds: (a)
    IDE's class attention lift on the shortcut at least 1.5 on every seed; (b) the same-person
    profile distance where a view shows it minus where neither does, above 0 on average; (c)
    the start's test mAP lower on the control on every seed."""
    lift, with_it, without = SHORTCUT_KEYS[shortcut]
    lifts = [r[lift] for r in starts]
    gaps = [r[with_it] - r[without] for r in starts]
    costs = [b["mAP"] - a["mAP"] for a, b in zip(default, starts, strict=True)]
    def holds(ok: bool) -> str:
        return "holds" if ok else "does not hold"

    return [f"(a) class lift on the {shortcut} {', '.join(f'{v:.2f}' for v in lifts)}: {holds(min(lifts) >= 1.5)}",
            f"(b) profile distance with the {shortcut} - without {', '.join(f'{v:+.3f}' for v in gaps)} "
            f"(mean {sum(gaps) / len(gaps):+.3f}): {holds(sum(gaps) > 0)}",
            f"(c) mAP control - default {', '.join(f'{100 * v:+.1f}' for v in costs)} points: "
            f"{holds(max(costs) < 0)}"]
