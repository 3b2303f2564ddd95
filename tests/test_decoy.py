"""Version 3 of the positive control (``SynthConfig(decoy=True)``, docs/positive_control.md):
a badge of three coloured stripes with an identity's code on the background at the box's
edge, at a random height, in half of the images; the person's own code in training,
another test person's in the test splits; marked in the masks (5) and measured by
``evaluate_attention`` (lift on it, and the same-person profile distance split by whether a
view shows it).

Caught: the test splits showing the person's own code (nothing would mislead), the badge
painted over the person, its flag and its mask disagreeing, the badge drawn in the
person's code instead of ``decoy_of``'s, a fixed height, the decoy counted as the person,
the distance split on the wrong pairs, and a start cache that cannot tell it from the
default data or the name-tag control."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from casn_lite.attention import attention_profile, similarity_attention
from casn_lite.attention_metrics import evaluate_attention, regions
from casn_lite.data import load_dataset
from casn_lite.data.synth import MASK_DECOY, PERSON_MASK_VALUES, SynthConfig, generate, render_batch
from casn_lite.losses import attention_distance
from casn_lite.models import build_model

from .support import TINY, masked_pairs

DECOY = dataclasses.replace(TINY, train_ids=12, test_ids=12, images_per_camera=4, decoy=True)


@pytest.fixture(scope="module")
def decoy_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoy")
    return root, generate(root, DECOY, progress=False)


def mask(root, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "masks" / name.replace(".jpg", ".png")))


def test_the_decoy_is_the_persons_own_code_in_training_and_another_test_persons_at_test(decoy_set):
    _, meta = decoy_set
    split_of = {p["index"]: p["split"] for p in meta["identities"]}
    train = [v for k, v in meta["images"].items() if k.startswith("bounding_box_train")]
    test = [v for k, v in meta["images"].items() if not k.startswith("bounding_box_train")]
    assert all(v["decoy_of"] == v["identity"] for v in train)
    assert not any(v["decoy_of"] == v["identity"] for v in test)
    assert {split_of[v["decoy_of"]] for v in test} == {"test"}
    assert 0.35 < np.mean([v["decoy"] for v in meta["images"].values()]) < 0.65
    codes = [tuple(p["decoy"]) for p in meta["identities"] if p["split"] != "distractor"]
    assert len(set(codes)) == len(codes), "one code per identity"


def test_the_decoy_is_on_the_background_where_its_flag_says_at_varying_heights(decoy_set):
    root, meta = decoy_set
    tops = []
    for name, info in meta["images"].items():
        m = mask(root, name)
        rows = np.flatnonzero((m == MASK_DECOY).any(1))
        if not info["decoy"]:
            assert len(rows) == 0, name
        elif len(rows):
            tops.append(rows[0])
    shown = sum(v["decoy"] for v in meta["images"].values())
    assert len(tops) > 0.85 * shown, "a shown decoy is in the mask unless the person covers it"
    assert np.std(tops) > 0.1 * DECOY.height, "a random height, not a fixed one"
    assert MASK_DECOY not in PERSON_MASK_VALUES
    where = regions(torch.tensor([[0, 1, 2, 3, 4, MASK_DECOY]]))
    assert where["decoy"].tolist() == [[False] * 5 + [True]] and not where["person"][0, -1]


def test_the_badge_shows_the_code_of_decoy_of_and_changes_nothing_else():
    """Two renderings that differ only in whose code the badge shows differ only on the
    badge; with the decoy hidden, not at all."""
    from casn_lite.data.synth import (
        _decoy_params,
        _draw_cameras,
        _draw_codes,
        _draw_identities,
        _image_params,
    )

    rng = np.random.default_rng(0)
    people = _draw_identities(rng, 6, 3, 0)
    _draw_codes(rng, people, "decoy")
    cams = _draw_cameras(rng, 2)
    cfg = SynthConfig(train_ids=3, test_ids=3, cameras=2, height=64, width=32)
    shots = [(3, 0), (4, 1), (5, 0)]
    params = _image_params(rng, shots, people, cams, cfg, np.arange(3, 6))
    params.update(_decoy_params(rng, "query", params["person"], np.arange(3, 6)))
    params["decoy_shown"][:] = True
    params["occluder"][:] = 0
    other = {**params, "decoy_of": np.where(params["decoy_of"] == 3, 4, 3)}
    images, masks = render_batch(params, people, cams, 64, 32, np.random.default_rng(1))
    images2, _ = render_batch(other, people, cams, 64, 32, np.random.default_rng(1))
    changed = np.abs(images.astype(int) - images2.astype(int)).sum(-1) > 30
    assert changed.any()
    near_badge = torch.nn.functional.max_pool2d(torch.tensor(masks == MASK_DECOY).float()[:, None], 5, 1, 2)[:, 0]
    assert not changed[near_badge.numpy() == 0].any(), "only the badge (and its blur) changes"
    hidden = {**params, "decoy_shown": np.zeros(3, bool)}
    hidden2 = {**other, "decoy_shown": np.zeros(3, bool)}
    a, _ = render_batch(hidden, people, cams, 64, 32, np.random.default_rng(1))
    b, _ = render_batch(hidden2, people, cams, 64, 32, np.random.default_rng(1))
    assert np.array_equal(a, b)


def test_attention_on_the_decoy_and_consistency_with_and_without_it(decoy_set):
    b = masked_pairs(decoy_set[0], 64)
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=5, embed_dim=16).eval()
    report = evaluate_attention(model, [b], torch.device("cpu"))
    sim = similarity_attention(model, b["image1"], b["image2"])
    (_, p1), (_, p2) = (attention_profile(m.detach(), (64, 32)) for m in sim)
    distance = attention_distance(p1, p2)
    valid = ~(torch.stack([m.detach().flatten(1).amax(1) <= 0 for m in sim]).any(0))
    shown = (b["mask1"] == MASK_DECOY).flatten(1).any(1) | (b["mask2"] == MASK_DECOY).flatten(1).any(1)
    same = b["same"].bool()
    assert (same & valid & shown).any() and (same & valid & ~shown).any()
    assert report.positive_distance_decoy == pytest.approx(distance[same & valid & shown].mean().item(), rel=1e-5)
    assert report.positive_distance_clear == pytest.approx(distance[same & valid & ~shown].mean().item(), rel=1e-5)
    assert report.decoy_area > 0 and report.decoy_lift is not None and report.class_decoy_lift is not None
    assert report.tag_lift is None, "no name tag in version 3"


def test_the_decoy_set_is_the_default_data_plus_the_badge_on_the_background(decoy_set, tmp_path):
    root, meta = decoy_set
    generate(tmp_path, dataclasses.replace(DECOY, decoy=False), progress=False)
    for name in meta["images"]:
        with_decoy, without = mask(root, name), mask(tmp_path, name)
        badge = with_decoy == MASK_DECOY
        assert (without[badge] == 0).all(), f"{name}: the badge covers the person"
        assert np.array_equal(with_decoy[~badge], without[~badge]), name


def test_the_decoy_trains_its_own_start(decoy_set, tmp_path):
    from casn_lite.ablation import data_fingerprint

    decoy = load_dataset("synthpeople", decoy_set[0])
    generate(tmp_path / "default", dataclasses.replace(DECOY, decoy=False), progress=False)
    generate(tmp_path / "control", dataclasses.replace(DECOY, decoy=False, control=True), progress=False)
    prints = {data_fingerprint(decoy), *(data_fingerprint(load_dataset("synthpeople", tmp_path / k))
                                         for k in ("default", "control"))}
    assert len(prints) == 3


def test_the_checks_conditions_read_every_seed_and_the_right_sign():
    """``study.shortcut_conditions`` (benchmarks/control_check.py, notebook 05): (a)
    every seed's lift at least 1.5, (b) the mean gap with minus without the decoy above 0,
    (c) mAP lower on every seed. Caught: a mean where every seed is asked, the gap's sign
    flipped, the data sets' roles swapped."""
    from casn_lite.tooling.study import shortcut_conditions as conditions

    def starts(lifts, gaps, maps):
        return [{"class_decoy_lift": lift, "positive_distance_decoy": 1.0 + gap, "positive_distance_clear": 1.0,
                 "mAP": m} for lift, gap, m in zip(lifts, gaps, maps, strict=True)]

    default = [{"mAP": 0.40}, {"mAP": 0.40}, {"mAP": 0.40}]
    lines = conditions(starts([1.6, 2.0, 1.7], [0.2, -0.05, 0.1], [0.30, 0.35, 0.38]), default)
    assert [line.endswith(": holds") for line in lines] == [True, True, True]
    lines = conditions(starts([1.6, 1.4, 3.0], [-0.2, 0.05, 0.1], [0.30, 0.41, 0.20]), default)
    assert [line.endswith(": holds") for line in lines] == [False, False, False]
