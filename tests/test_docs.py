"""docs/method.md names functions and notebook sections: each must exist, and nothing may
cite a design file the repository does not have."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
METHOD = (ROOT / "docs" / "method.md").read_text()


def resolve(dotted: str):
    """casn_lite.attention.grad_cam -> the function (modules imported on the way)."""
    target = importlib.import_module("casn_lite")
    for part in dotted.split(".")[1:]:
        target = getattr(target, part, None) or importlib.import_module(f"{target.__name__}.{part}")
    return target


def test_every_function_named_in_the_method_notes_exists():
    dotted = set(re.findall(r"`(casn_lite(?:\.\w+)+)`", METHOD))
    assert len(dotted) > 10
    for name in sorted(dotted):
        resolve(name)  # raises if a module or name is missing
    package = {name for m in ("models", "attention", "losses", "engine", "evaluation", "ablation",
                              "attention_metrics") for name in dir(resolve(f"casn_lite.{m}"))}
    code_lines = " ".join(re.findall(r"Code: (.*?)(?:\n\S+ in:|\n\n)", METHOD, flags=re.S))
    plain = set(re.findall(r"`([A-Za-z_]\w*)(?:\.\w+)?[`(]", code_lines))
    assert len(plain) > 15
    missing = sorted(name for name in plain if name not in package)
    assert not missing, f"docs/method.md names what casn_lite does not have: {missing}"


def test_every_notebook_section_cited_exists():
    cited = re.findall(r"`(\d\d_\w+\.py)`, \"([^\"]+)\"(?: and \"([^\"]+)\")?", METHOD.replace("\n", " "))
    assert len(cited) >= 12
    for notebook, *headings in cited:
        text = (ROOT / "notebooks" / notebook).read_text()
        for heading in filter(None, headings):
            assert f"# ## {heading}\n" in text, f"{notebook} has no section {heading!r}"


@pytest.mark.parametrize("path", [*sorted((ROOT / "casn_lite").rglob("*.py")), ROOT / "README.md"],
                         ids=lambda p: p.name)
def test_no_reference_to_a_missing_design_file(path):
    assert "DESIGN.md" not in path.read_text()


def test_the_committed_study_measured_every_variant_of_a_seed_on_the_same_pairs():
    """The studies' records: the person's share of the test images, a function of the test
    pairs alone, is the same for every arm of a setting and seed, in the attention study
    (protocol 2) and the positive control's versions 1, 2 and 4 (protocol 3); the first run's, kept in
    docs/attention_study/v1, took five values."""
    import json

    from casn_lite.tooling.study import read_records, same_pairs

    for folder, protocol in (("attention_study", 2), ("positive_control", 3), ("positive_control_v2", 3),
                             ("positive_control_v4", 3)):
        records = read_records(ROOT / "docs" / folder / "records.jsonl", protocol)
        assert len({(r["setting"], r["seed"]) for r in records}) >= 3, folder
        assert same_pairs(records) == [], folder
    old = [json.loads(line) for line in (ROOT / "docs" / "attention_study" / "v1" / "records.jsonl").read_text().splitlines()]
    assert same_pairs(old), "the check finds the first run's mismatch"
