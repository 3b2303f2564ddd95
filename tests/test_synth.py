"""SynthPeople: Market-1501 layout, masks, meta data, splits, look-alikes and determinism."""

import dataclasses
import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image

from casn_lite.data import load_dataset, synth
from casn_lite.data.synth import SynthConfig, generate

from .support import TINY

NAME = re.compile(r"^(-1|\d{4})_c(\d)s1_(\d{6})_00\.jpg$")


def parse(root, split):
    """(pid, camera) of every file in a split, checking the Market-1501 name format."""
    out = []
    for p in sorted((root / split).iterdir()):
        m = NAME.match(p.name)
        assert m, f"{p.name} is not a Market-1501 file name"
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def test_market_layout_and_counts(tiny_synth):
    root, meta = tiny_synth
    for split in synth.SPLITS:
        assert len(parse(root, split)) == meta["counts"][split] > 0
    assert json.loads((root / "meta.json").read_text())["version"] == synth.GENERATOR_VERSION


def test_splits_follow_the_market_protocol(tiny_synth):
    root, _ = tiny_synth
    train, query, gallery = (parse(root, s) for s in synth.SPLITS)
    train_ids = {p for p, _ in train}
    test_ids = {p for p, _ in query}
    assert len(train_ids) == TINY.train_ids and len(test_ids) == TINY.test_ids
    assert not train_ids & test_ids, "train and test identities must be disjoint"
    assert 0 not in train_ids | test_ids and -1 not in train_ids | test_ids
    # query: exactly one image per identity and camera
    assert len(query) == len(set(query))
    for pid in test_ids:
        cams = {c for p, c in query if p == pid}
        assert len(cams) >= 2, f"test identity {pid} seen by fewer than two cameras"
        # every query has a gallery match from another camera
        for cam in cams:
            assert any(p == pid and c != cam for p, c in gallery)
    assert sum(p == 0 for p, _ in gallery) == TINY.distractors
    assert sum(p == -1 for p, _ in gallery) == TINY.junk


def test_every_image_has_a_mask_with_person_and_only_three_labels(tiny_synth):
    root, meta = tiny_synth
    person_share = []
    for rel, info in meta["images"].items():
        img = np.array(Image.open(root / rel))
        mask = np.array(Image.open(root / "masks" / rel.replace(".jpg", ".png")))
        assert img.shape == (TINY.height, TINY.width, 3) and mask.shape == img.shape[:2]
        assert set(np.unique(mask)) <= {synth.MASK_BACKGROUND, synth.MASK_PERSON, synth.MASK_CUE}
        if not info["junk"]:
            person_share.append((mask > 0).mean())
    # a pedestrian box: the person covers a good part of it, never all of it
    assert 0.15 < np.median(person_share) < 0.6


def test_lookalike_families_share_coarse_attributes_and_differ_in_cues(tiny_synth):
    _, meta = tiny_synth
    coarse = ("upper", "lower", "lower_style", "hair", "hair_style", "skin", "shoes", "build")
    cues = (("emblem", "emblem_colour"), ("bag", "bag_colour"), ("pattern", "pattern_colour"))
    people = [p for p in meta["identities"] if p["split"] != "distractor"]
    families = {}
    for p in people:
        families.setdefault(p["family"], []).append(p)
    assert any(len(f) > 1 for f in families.values())
    for members in families.values():
        for a in members:
            assert any(a[k] != "none" for k, _ in cues), "everyone carries at least one identity cue"
            for b in members:
                if a is b:
                    continue
                assert all(a[k] == b[k] for k in coarse)
                assert sum((a[k], a[c]) != (b[k], b[c]) for k, c in cues) >= 2


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    cfg = dataclasses.replace(TINY, train_ids=3, test_ids=3, distractors=1, junk=1)

    def digest(root):
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, cfg, progress=False)
    generate(b, cfg, progress=False)
    generate(c, dataclasses.replace(cfg, seed=cfg.seed + 1), progress=False)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def render_one(person: dict, view: int, H=128, W=64):
    """Draw one person, alone, from one viewpoint; returns (image, mask)."""
    cams = [dict(synth._draw_cameras(np.random.default_rng(0), 1)[0], occluder_prob=0.0, noise=0.0, blur=0)]
    params = {
        "person": np.array([0]), "cam": np.array([0]), "view": np.array([view]),
        "facing": np.array([-1.0 if view == 1 else 1.0], np.float32),
        "ph": np.array([0.85 * H], np.float32), "top": np.array([0.07 * H], np.float32),
        "cx": np.array([W / 2], np.float32), "junk": np.array([False]), "occluder": np.array([0]),
        "occ_pos": np.zeros(1, np.float32), "occ_size": np.zeros(1, np.float32),
        "occ_colour": np.zeros((1, 3), np.float32), "second": np.array([-1]),
        "second_side": np.ones(1, np.float32), "second_scale": np.ones(1, np.float32),
        "bg_shift": np.zeros((1, 2), np.float32), "light": np.ones(1, np.float32),
        "shade": np.ones((1, 3), np.float32),
    }
    img, mask = synth.render_batch(params, [person], cams, H, W, np.random.default_rng(0))
    return img[0], mask[0]


def test_cue_visibility_depends_on_viewpoint():
    base = {**synth._draw_family(np.random.default_rng(1)), "family": 0, "emblem_colour": 0,
            "bag_colour": 1, "pattern_colour": 2, "pattern": 0}
    emblem_only = {**base, "emblem": 1, "bag": 0}
    backpack_only = {**base, "emblem": 0, "bag": 1}
    cue = lambda person, view: (render_one(person, view)[1] == synth.MASK_CUE).sum()  # noqa: E731
    assert cue(emblem_only, 0) > 0 and cue(emblem_only, 1) == 0, "a chest emblem is hidden from behind"
    # a backpack shows large from behind, only as straps from the front
    assert cue(backpack_only, 1) > 2 * cue(backpack_only, 0) > 0


def test_generated_folder_reads_as_market1501(tiny_synth):
    root, meta = tiny_synth
    data = load_dataset("market1501", root)
    assert data.num_train_pids == TINY.train_ids
    assert len(data.query) == meta["counts"]["query"]
    assert len(data.gallery) == meta["counts"]["bounding_box_test"] - TINY.junk  # junk dropped


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="images_per_camera"):
        SynthConfig(images_per_camera=1)
    with pytest.raises(ValueError, match="cameras"):
        SynthConfig(cameras=12)


def test_regenerating_replaces_the_old_set_and_never_touches_other_data(tmp_path):
    small = dataclasses.replace(TINY, train_ids=3, test_ids=3, distractors=1, junk=1)
    generate(tmp_path / "s", small, progress=False)
    generate(tmp_path / "s", dataclasses.replace(small, seed=99), progress=False)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    on_disk = {f"{p.parent.name}/{p.name}" for p in (tmp_path / "s").glob("*/*.jpg")}
    assert on_disk == set(meta["images"]), "no stale files from the first set"

    (tmp_path / "real" / "query").mkdir(parents=True)
    (tmp_path / "real" / "query" / "0001_c1s1_000001_00.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="did not write"):
        generate(tmp_path / "real", small, progress=False)
    assert (tmp_path / "real" / "query" / "0001_c1s1_000001_00.jpg").read_bytes() == b"precious"


def test_ensure_synthpeople_reuses_a_matching_set(tmp_path):
    from casn_lite.data import ensure_synthpeople

    small = dataclasses.replace(TINY, train_ids=3, test_ids=3, distractors=1, junk=1)
    ensure_synthpeople(tmp_path, small, progress=False)
    stamp = (tmp_path / "meta.json").stat().st_mtime_ns
    ensure_synthpeople(tmp_path, small, progress=False)
    assert (tmp_path / "meta.json").stat().st_mtime_ns == stamp
    ensure_synthpeople(tmp_path, dataclasses.replace(small, seed=5), progress=False)
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == 5
