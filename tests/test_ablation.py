"""The ablation helpers: variants by name, seed aggregation, the table, attention measured."""

import math

import pytest
import torch

from casn_lite.ablation import (
    PAPER_TABLE3,
    VARIANTS,
    aggregate,
    markdown_table,
    train_from,
    variant_loss,
)
from casn_lite.data import ImageDataset, PairDataset, PairSampler, build_transforms, load_dataset
from casn_lite.engine import TrainConfig, evaluate_attention
from casn_lite.models import build_model


def test_variants_are_flags_of_one_loss():
    for name, (ia, sa) in VARIANTS.items():
        loss = variant_loss(name, feature_dim=16)
        assert (loss.ia, loss.sa) == (ia, sa) and loss.variant == name
        assert name in PAPER_TABLE3
    with pytest.raises(ValueError, match="unknown variant"):
        variant_loss("IDE+XY")


def test_aggregate_and_table():
    records = [{"variant": "IDE", "seed": s, "rank1": r, "d": 1.0} for s, r in ((0, 0.2), (1, 0.4))]
    records.append({"variant": "CASN(IDE)", "seed": 0, "rank1": 0.5, "d": float("nan")})
    summary = aggregate(records, ["rank1", "d"])
    mean, std, n = summary["IDE"]["rank1"]
    assert (mean, n) == (pytest.approx(0.3), 2) and std == pytest.approx(math.sqrt(0.02))
    assert math.isnan(summary["CASN(IDE)"]["rank1"][1]), "one seed: no spread"
    table = markdown_table(summary, {"rank1": "rank-1 (%)", "d": "distance"}, percent={"rank1"})
    assert "| IDE | 30.0 ± 14.1 | 1.000 ± 0.000 | 85.3 / 68.5 |" in table
    assert "| CASN(IDE) | 50.0 | n/a | 92.0 / 78.0 |" in table


def test_train_from_leaves_the_start_alone_and_resumes(tiny_synth, tmp_path):
    from casn_lite.data import reid_loaders

    data = load_dataset("synthpeople", tiny_synth[0])
    loader = reid_loaders(data, 32, 16, 8, 2).train
    start = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, progress=False)
    run = train_from(start, loader, cfg, variant_loss("IDE"), torch.device("cpu"), 0, tmp_path)
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())
    again = train_from(start, loader, cfg, variant_loss("IDE"), torch.device("cpu"), 0, tmp_path)
    assert again["history"] == run["history"], "a finished run is read back, not redone"
    for a, b in zip(run["model"].state_dict().values(), again["model"].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_evaluate_attention_on_pairs_with_masks(tiny_synth):
    data = load_dataset("synthpeople", tiny_synth[0])
    images = ImageDataset(data.query + data.gallery, build_transforms(64, 32), mask_of=data.mask_path)
    pairs = torch.utils.data.DataLoader(PairDataset(images), batch_size=8,
                                        sampler=PairSampler(images.pids, images.camids, 16, 0.5, seed=0))
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=5, embed_dim=16)
    report = evaluate_attention(model, pairs, torch.device("cpu"))
    shares = {f"{p}{k}" for p in ("", "class_") for k in ("on_person", "on_cue", "person_lift", "cue_lift")}
    assert set(report) == {"positive_distance", "negative_distance", "empty", "class_empty",
                           "person_area", "cue_area", *shares}
    assert 0 <= report["empty"] <= 1 and report["positive_distance"] >= 0
    assert 0 < report["cue_area"] < report["person_area"] < 1
    for prefix in ("", "class_"):
        share, lift = report[prefix + "on_person"], report[prefix + "person_lift"]
        if not math.isnan(share):
            assert lift == pytest.approx(share / report["person_area"], rel=0.5)


def test_test_pairs_and_cross_camera_matches(tiny_synth):
    from casn_lite.data import cross_camera_matches, test_pair_loader

    data = load_dataset("synthpeople", tiny_synth[0])
    batch = next(iter(test_pair_loader(data, 64, 32, num_pairs=8, batch_size=8)))
    assert batch["mask1"].shape == (8, 64, 32) and batch["same"].sum() == 4
    assert (batch["camid1"] != batch["camid2"]).all(), "positives and negatives cross cameras"
    assert (batch["pid1"] > 0).all() and (batch["pid2"] > 0).all(), "no distractors or junk"
    matches = cross_camera_matches(data, 64, 32, count=3)
    assert matches["query"].shape == matches["match"].shape == (3, 3, 64, 32)
    assert len(set(matches["pid"].tolist())) == 3, "three different people"
