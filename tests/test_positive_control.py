"""The positive control (``SynthConfig(control=True)``, docs/positive_control.md): the same
people, cameras and image plan as the default data, plus a name tag per identity shown on
every training image and a quarter of the test images, and per camera a vertical shift,
a scale and a sign, each marked in the masks (3 tag, 4 sign) and measured by
``evaluate_attention``. The default data stays byte for byte what it was.

Caught: the control's draws taken from a generator the default data uses (the default masks
change), the tag shown on test images as often as on training ones (or never), the sign's
flag and its mask disagreeing, the camera geometry not applied (or scaled about the wrong
point), the sign counted as the person, the head's AUC or L_bce computed on other pairs."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from casn_lite.attention import mass_share, upsample
from casn_lite.attention_metrics import evaluate_attention, regions
from casn_lite.data import load_dataset
from casn_lite.data.synth import MASK_SIGN, MASK_TAG, PERSON_MASK_VALUES, generate
from casn_lite.evaluation import roc_auc
from casn_lite.losses import SiameseHead, siamese_attention, siamese_bce_loss
from casn_lite.models import build_model

from .support import TINY, masked_pairs

# the masks of TINY, drawn by the generator before the control existed (commit 25478e4)
DEFAULT_MASKS_SHA256 = "8ab7086654e3a02f"
CONTROL = dataclasses.replace(TINY, train_ids=12, test_ids=12, images_per_camera=4, control=True)


def masks_digest(root) -> str:
    h = hashlib.sha256()
    for f in sorted((root / "masks").rglob("*.png")):
        h.update(f.name.encode())
        h.update(np.asarray(Image.open(f)).tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The control and the default data with the same settings: (root, meta) of each."""
    out = {}
    for name, cfg in (("control", CONTROL), ("default", dataclasses.replace(CONTROL, control=False))):
        root = tmp_path_factory.mktemp(name)
        out[name] = (root, generate(root, cfg, progress=False))
    return out


def mask(root, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "masks" / name.replace(".jpg", ".png")))


def test_the_default_data_is_what_it_was(tiny_synth):
    assert masks_digest(tiny_synth[0]) == DEFAULT_MASKS_SHA256
    assert "control" not in json.dumps(tiny_synth[1]["cameras"]) and "tag" not in tiny_synth[1]["identities"][0]


def test_the_control_keeps_the_people_the_cameras_and_the_plan(sets):
    control, default = sets["control"][1], sets["default"][1]
    assert control["images"].keys() == default["images"].keys()
    for c, d in zip(control["identities"], default["identities"], strict=True):
        assert {k: v for k, v in c.items() if k != "tag"} == d
    for c, d in zip(control["cameras"], default["cameras"], strict=True):
        assert {k: v for k, v in c.items() if k not in ("control_shift", "control_scale", "sign_colour")} == d
    train_tags = [tuple(p["tag"]) for p in control["identities"] if p["split"] == "train"]
    assert len(set(train_tags)) == len(train_tags), "one name-tag code per training identity"


def test_the_name_tag_shows_on_training_images_and_a_quarter_of_test_images(sets):
    root, meta = sets["control"]
    shown = {split: [v["tag"] for k, v in meta["images"].items() if k.startswith(split)]
             for split in ("bounding_box_train", "query", "bounding_box_test")}
    assert all(shown["bounding_box_train"])
    test = shown["query"] + shown["bounding_box_test"]
    assert 0.1 < np.mean(test) < 0.4
    in_mask = {k: (mask(root, k) == MASK_TAG).any() for k in meta["images"]}
    assert not any(in_mask[k] for k, v in meta["images"].items() if not v["tag"]), "a hidden tag is not in the mask"
    visible = [in_mask[k] for k, v in meta["images"].items() if v["tag"] and not v["junk"]]
    assert np.mean(visible) > 0.85, "a shown tag is in the mask unless something stands in front of it"


def test_the_camera_sign_is_on_the_background_where_its_flag_says(sets):
    root, meta = sets["control"]
    in_mask = {k: (mask(root, k) == MASK_SIGN).any() for k in meta["images"]}
    assert not any(in_mask[k] for k, v in meta["images"].items() if not v["sign"])
    assert np.mean([in_mask[k] for k, v in meta["images"].items() if v["sign"]]) > 0.85
    assert 0.6 < np.mean([v["sign"] for v in meta["images"].values()]) < 0.95


def test_each_camera_moves_the_person_by_its_shift_and_scale(sets):
    """The person's top row in the control minus the default's, image by image, is the
    camera's: the box scaled about its middle, then shifted by the camera's share of H."""
    (croot, cmeta), (droot, _) = sets["control"], sets["default"]
    H = CONTROL.height
    close = []
    for name, info in cmeta["images"].items():
        if info["junk"] or info["second_person"] or info["occluder"] != "none":
            continue
        rows = [np.flatnonzero(np.isin(mask(r, name), PERSON_MASK_VALUES).any(1)) for r in (croot, droot)]
        if not all(len(r) for r in rows):
            continue
        tops = [r[0] for r in rows]
        heights = [r[-1] - r[0] + 1 for r in rows]
        cam = cmeta["cameras"][info["camera"] - 1]
        expected = heights[1] * (1 - cam["control_scale"]) / 2 + cam["control_shift"] * H
        close.append(abs((tops[0] - tops[1]) - expected) <= 2.5)
    assert len(close) > 20 and np.mean(close) > 0.85
    shifts = [c["control_shift"] for c in cmeta["cameras"]]
    assert max(shifts) - min(shifts) > 0.02, "the cameras differ"


def test_regions_count_the_tag_as_the_person_and_the_sign_as_background():
    m = torch.tensor([[0, 1, 2, 3, 4]])
    where = regions(m)
    assert where["person"].tolist() == [[False, True, True, True, False]]
    assert where["cue"].tolist() == [[False, False, True, False, False]]
    assert where["tag"].tolist() == [[False, False, False, True, False]]
    assert where["sign"].tolist() == [[False, False, False, False, True]]


@pytest.fixture(scope="module")
def control_pairs(sets):
    return masked_pairs(sets["control"][0], 32)


def test_attention_on_the_tag_and_the_sign_is_measured_as_lift(control_pairs, tiny_synth):
    b = control_pairs
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=5, embed_dim=16).eval()
    report = evaluate_attention(model, [b], torch.device("cpu"))
    from casn_lite.attention import similarity_attention

    sim = similarity_attention(model, b["image1"], b["image2"])
    masks = (b["mask1"], b["mask2"])
    for region, value in (("tag", MASK_TAG), ("sign", MASK_SIGN)):
        share = torch.cat([mass_share(upsample(sim[k].detach(), (64, 32)), masks[k] == value) for k in (0, 1)])
        area = torch.cat([(m == value).flatten(1).float().mean(1) for m in masks])
        keep = ~share.isnan()
        assert area.sum() > 0
        assert getattr(report, f"{region}_area") == pytest.approx(area.mean().item(), rel=1e-6)
        assert getattr(report, f"{region}_lift") == pytest.approx(share[keep].mean().item() / area[keep].mean().item(),
                                                                 rel=1e-5)
    person = torch.cat([torch.isin(m, torch.tensor(PERSON_MASK_VALUES)).flatten(1).float().mean(1) for m in masks])
    assert report.person_area == pytest.approx(person.mean().item(), rel=1e-6)
    assert report.person_area < torch.cat([(m >= 1).flatten(1).float().mean(1) for m in masks]).mean().item()
    # the default data has neither: not measured rather than a lift of 0/0
    plain = evaluate_attention(model, [masked_pairs(tiny_synth[0], 16)], torch.device("cpu"))
    assert plain.tag_lift is None and plain.sign_lift is None and plain.person_lift is not None


def test_the_heads_auc_and_bce_are_on_the_measured_pairs(control_pairs):
    b = control_pairs
    torch.manual_seed(1)
    model = build_model("ide", "resnet18", num_classes=5, embed_dim=16).eval()
    head = SiameseHead(16).eval()
    half = len(b["same"]) // 2
    batches = [{k: v[:half] for k, v in b.items()}, {k: v[half:] for k, v in b.items()}]
    report = evaluate_attention(model, batches, torch.device("cpu"), head=head)
    sa = siamese_attention(model, head, b["image1"], b["image2"], "margin")
    margin = (sa.pair_logits[:, 1] - sa.pair_logits[:, 0]).detach()
    assert report.head_auc == pytest.approx(roc_auc(margin, b["same"]), abs=1e-9)
    assert report.head_bce == pytest.approx(siamese_bce_loss(sa.pair_logits, b["same"]).item(), rel=1e-5)
    assert 0 <= report.head_auc <= 1 and not math.isnan(report.head_bce)
    assert evaluate_attention(model, batches, torch.device("cpu")).head_auc is None, "no head, no AUC"


def test_the_control_and_the_default_data_train_different_starts(sets):
    """They share file names, identities and cameras; the start cache must still tell them
    apart (it once returned the default data's start for the control), and the default
    data's fingerprint keeps the value it always had (its cached starts stay valid)."""
    import hashlib

    from casn_lite.ablation import data_fingerprint
    from casn_lite.data.datasets import sample_keys

    control, default = (load_dataset("synthpeople", sets[k][0]) for k in ("control", "default"))
    assert sample_keys(control.train) == sample_keys(default.train)
    assert data_fingerprint(control) != data_fingerprint(default)
    old = hashlib.sha256(json.dumps([default.name, sample_keys(default.train)]).encode()).hexdigest()[:16]
    assert data_fingerprint(default) == old


def test_a_larger_tag_is_larger_and_trains_another_start(tmp_path, sets):
    """``tag_scale`` (the control's version 2): the tag's mask grows, about the same centre;
    the set's fingerprint, so the start cache, tells it from the size-1 control; and it is
    refused without the control. The mutations: the scale ignored in drawing, or left out
    of the fingerprint (the size-1 control's start would be reused)."""
    from casn_lite.ablation import data_fingerprint
    from casn_lite.data.synth import SynthConfig

    big = dataclasses.replace(CONTROL, tag_scale=2.0)
    generate(tmp_path, big, progress=False)
    small_root = sets["control"][0]

    def tag_rows(root):
        masks = [mask(root, f"bounding_box_train/{p.name}") for p in sorted((root / "masks" / "bounding_box_train").glob("*.png"))]
        return [np.flatnonzero((m == MASK_TAG).any(1)) for m in masks]

    small, large = tag_rows(small_root), tag_rows(tmp_path)
    pairs = [(s, b) for s, b in zip(small, large, strict=True) if len(s) and len(b)]
    assert len(pairs) > 20
    assert np.mean([len(b) / len(s) for s, b in pairs]) > 1.6, "twice as tall"
    assert np.mean([abs(b.mean() - s.mean()) for s, b in pairs]) < 1.0, "about the same centre"
    assert (data_fingerprint(load_dataset("synthpeople", tmp_path))
            != data_fingerprint(load_dataset("synthpeople", small_root)))
    with pytest.raises(ValueError, match="tag_scale"):
        SynthConfig(tag_scale=2.0)


def test_version_4_moves_the_tag_and_nothing_else(tmp_path, sets):
    """``tag_moves`` (version 4): the tag's rows vary from image to image far more than at
    the belt, every other pixel's label is the control's, the start cache tells the two
    apart, and it is refused without the control. Caught: the offset not applied, drawn
    before the control's other draws (every image would change), left out of the
    fingerprint."""
    from casn_lite.ablation import data_fingerprint
    from casn_lite.data.synth import SynthConfig

    generate(tmp_path, dataclasses.replace(CONTROL, tag_moves=True), progress=False)
    root, meta = sets["control"]
    centres = {0: [], 1: []}
    for name, info in meta["images"].items():
        fixed, moved = mask(root, name), mask(tmp_path, name)
        tag = (fixed == MASK_TAG) | (moved == MASK_TAG)
        outside = ~tag & ~np.isin(fixed, PERSON_MASK_VALUES) & ~np.isin(moved, PERSON_MASK_VALUES)
        assert np.array_equal(fixed[outside], moved[outside]), name
        assert np.array_equal(fixed == 0, moved == 0) or info["junk"] or info["second_person"], name
        for k, m in enumerate((fixed, moved)):
            rows = np.flatnonzero((m == MASK_TAG).any(1))
            if len(rows) and info["view"] == "front" and not info["junk"]:
                centres[k].append(rows.mean() - np.flatnonzero(np.isin(m, PERSON_MASK_VALUES).any(1))[0])
    assert len(centres[1]) > 10 and np.std(centres[1]) > 3 * np.std(centres[0]) + 1
    assert (data_fingerprint(load_dataset("synthpeople", tmp_path))
            != data_fingerprint(load_dataset("synthpeople", root)))
    with pytest.raises(ValueError, match="tag_moves"):
        SynthConfig(tag_moves=True)
