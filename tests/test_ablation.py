"""The ablation helpers: variants by name, seed aggregation, the table, attention measured."""

import math

import pytest
import torch

from casn_lite.ablation import (
    PAPER_TABLE3,
    VARIANTS,
    aggregate,
    arm_names,
    markdown_table,
    train_from,
    variant_loss,
    variant_names,
)
from casn_lite.attention import (
    attention_profile,
    empty_maps,
    mass_share,
    similarity_attention,
    upsample,
)
from casn_lite.attention_metrics import evaluate_attention
from casn_lite.data import load_dataset
from casn_lite.engine import TrainConfig
from casn_lite.losses import CASNSettings, attention_distance
from casn_lite.models import build_model

from .support import masked_pairs


def test_variants_are_flags_of_one_loss():
    expected = {  # the paper's names, written out: (IA, SA, architecture)
        "IDE": (False, False, "ide"), "IDE+IA": (True, False, "ide"), "IDE+SA": (False, True, "ide"),
        "CASN(IDE)": (True, True, "ide"), "PCB": (False, False, "pcb"), "PCB+IA": (True, False, "pcb"),
        "PCB+SA": (False, True, "pcb"), "CASN(PCB)": (True, True, "pcb")}
    assert list(VARIANTS) == list(expected)
    for name, (ia, sa, arch) in expected.items():
        loss = variant_loss(name, feature_dim=16)
        assert (loss.ia, loss.sa, loss.arch, loss.variant) == (ia, sa, arch, name)
        assert (loss.head is not None) == sa, "only the SA variants have a Siamese head"
        assert name in PAPER_TABLE3
    assert variant_names("ide") == list(expected)[:4] and variant_names("pcb") == list(expected)[4:]
    with pytest.raises(ValueError, match="unknown variant"):
        variant_loss("IDE+XY")


def test_the_verification_arm_is_its_sa_variant_without_consistency():
    assert arm_names("ide") == ["IDE", "IDE+IA", "IDE+SA(0)", "IDE+SA", "CASN(IDE)"]
    assert arm_names("pcb") == ["PCB", "PCB+IA", "PCB+SA(0)", "PCB+SA", "CASN(PCB)"]
    settings = CASNSettings(consistency_weight=0.3, lambda_sa=0.7)
    verification = variant_loss("IDE+SA(0)", feature_dim=16, settings=settings)
    full = variant_loss("IDE+SA", feature_dim=16, settings=settings)
    assert (verification.ia, verification.sa, verification.arch) == (False, True, "ide")
    assert verification.settings.consistency_weight == 0.0 and full.settings.consistency_weight == 0.3
    assert verification.settings.lambda_sa == 0.7, "every other setting is the SA variant's"


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
    """Every number of the report recomputed here, on the one batch, from the attention
    functions it is built from: a wrong mask, side, region, pair set or mean changes one."""
    b = masked_pairs(tiny_synth[0], 16)
    torch.manual_seed(0)
    model = build_model("ide", "resnet18", num_classes=5, embed_dim=16).eval()
    report = evaluate_attention(model, [b], torch.device("cpu"), threshold=0.2, length=32)

    same = b["same"].bool()
    sim = similarity_attention(model, b["image1"], b["image2"])
    profiles = [attention_profile(m.detach(), (64, 32), 0.2, 32)[1] for m in sim]
    distance = attention_distance(*profiles)
    valid = ~(empty_maps(sim[0]) | empty_maps(sim[1]))
    assert (same & valid).any() and (~same & valid).any()
    assert report.positive_distance == pytest.approx(distance[same & valid].mean().item(), rel=1e-5)
    assert report.negative_distance == pytest.approx(distance[~same & valid].mean().item(), rel=1e-5)
    assert report.empty == pytest.approx(torch.cat([empty_maps(m) for m in sim]).float().mean().item())
    masks = (b["mask1"], b["mask2"])
    for region, inside in (("person", lambda m: m >= 1), ("cue", lambda m: m == 2)):
        share = torch.cat([mass_share(upsample(sim[k].detach(), (64, 32)), inside(masks[k])) for k in (0, 1)])
        area = torch.cat([inside(m).flatten(1).float().mean(1) for m in masks])
        keep = ~share.isnan()
        assert keep.any()
        assert getattr(report, f"on_{region}") == pytest.approx(share[keep].mean().item(), rel=1e-5)
        assert getattr(report, f"{region}_area") == pytest.approx(area.mean().item(), rel=1e-6)
        assert getattr(report, f"{region}_lift") == pytest.approx(share[keep].mean().item() / area[keep].mean().item(),
                                                         rel=1e-5)
    assert 0 < report.cue_area < report.person_area < 1
    assert not math.isnan(report.class_on_person) and 0 <= report.class_on_person <= 1


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
    assert matches["query_mask"].shape == matches["match_mask"].shape == (3, 64, 32)


def test_person_lift_is_one_for_an_even_spread_and_higher_on_the_person():
    from casn_lite.attention_metrics import person_lift

    masks = torch.zeros(2, 8, 4, dtype=torch.long)
    masks[:, 2:6, 1:3] = 1  # the person: a quarter of each picture
    masks[0, 3, 1] = 2  # its cue counts as the person
    even = torch.ones(2, 1, 8, 4)
    assert person_lift(even, masks) == pytest.approx(1.0)
    on_person = (masks >= 1).float()[:, None]
    assert person_lift(on_person, masks) == pytest.approx(4.0), "all the mass on a quarter of the picture"
    background = 1 - on_person
    assert person_lift(background, masks) == pytest.approx(0.0)


class RecordingLoader:
    """A training loader that keeps the batches it hands out (what the loop trained on)."""

    def __init__(self, loader):
        self.loader, self.pair_loader, self.batches = loader, loader.pair_loader, []

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)

    def __iter__(self):
        for batch in self.loader:
            self.batches.append(batch)
            yield batch


def test_the_variants_of_a_comparison_train_on_the_same_batches_and_are_measured_on_the_same_pairs(tiny_synth):
    """The protocol as notebook 05 and the study run it: one set of loaders, the variants one
    after the other (IDE+SA warms its head up first, drawing pair batches), one test pair
    loader measured for each. Same augmented batches at every step; same test pairs."""
    from casn_lite.data import pair_loader, reid_loaders, test_pair_loader
    from casn_lite.engine import JointLoader

    data = load_dataset("synthpeople", tiny_synth[0])
    ids = reid_loaders(data, 32, 16, 8, 2, seed=0, erase_p=0.5)
    joint = JointLoader(ids.train, pair_loader(data, 32, 16, 4, len(ids.train), seed=0, erase_p=0.5))
    test_pairs = test_pair_loader(data, 32, 16, num_pairs=8, batch_size=8, seed=0)
    torch.manual_seed(0)
    start = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, progress=False)
    seen, measured = {}, {}
    for name, warmup in (("IDE", 0), ("IDE+SA", 3)):
        recording = RecordingLoader(joint)
        run = train_from(start, recording, cfg, variant_loss(name, feature_dim=16, hidden_dim=8),
                         torch.device("cpu"), 0, head_warmup=warmup)
        seen[name], measured[name] = recording.batches, evaluate_attention(run["model"], test_pairs).as_dict()
    assert len(seen["IDE"]) == len(seen["IDE+SA"]) == len(joint)
    for a, b in zip(seen["IDE"], seen["IDE+SA"], strict=True):
        for key in ("image", "image1", "image2"):
            assert torch.equal(a[key], b[key]), f"{key}: both variants train on the same augmented images"
    for key in ("person_area", "cue_area"):  # functions of the pairs alone
        assert measured["IDE"][key] == measured["IDE+SA"][key], f"{key}: measured on the same pairs"


def test_a_runs_key_holds_everything_that_shapes_its_weights():
    """The mutations: a key without the arm (IDE's run loaded as IDE+IA), the start (another
    seed's), a CASN setting, the batches or the schedule; and a key that changes with how the
    machine runs it (a progress bar, a description, a checkpoint folder) would never be found."""
    from dataclasses import replace

    from casn_lite.ablation import run_key
    from casn_lite.engine import Runtime

    finetune = TrainConfig(epochs=2, optimizer="adam", lr=1e-4, schedule="cosine", warmup_epochs=0.5)
    settings, batches = CASNSettings(), {"pairs_per_batch": 8, "positive_fraction": 0.5}
    key = run_key("start-a", "IDE+IA", finetune, settings, batches, 0)
    assert key == run_key("start-a", "IDE+IA", replace(finetune, desc="x", progress=False, checkpoint_dir="c",
                                                       resume=True, runtime=Runtime(channels_last="always")),
                          settings, batches, 0)
    others = [run_key("start-b", "IDE+IA", finetune, settings, batches, 0),
              run_key("start-a", "IDE", finetune, settings, batches, 0),
              run_key("start-a", "IDE+IA", replace(finetune, epochs=3), settings, batches, 0),
              run_key("start-a", "IDE+IA", replace(finetune, lr=1e-3), settings, batches, 0),
              run_key("start-a", "IDE+IA", finetune, replace(settings, lambda_ia=0.5), batches, 0),
              run_key("start-a", "IDE+IA", finetune, settings, {**batches, "pairs_per_batch": 4}, 0),
              run_key("start-a", "IDE+IA", finetune, settings, batches, 100),
              run_key("start-a", "IDE+IA", finetune, settings, batches, 0, {"bf16": True})]
    assert len({key, *others}) == len(others) + 1


def test_arms_over_seeds_trains_each_run_once_and_loads_it_whole(tiny_synth, tmp_path):
    """Two seeds, two arms: one record per arm and seed, every arm of a seed measured on the
    same test pairs; called again (a later notebook), every run comes from the cache with
    the same weights and the same Siamese head (the head's AUC on the pairs is the same),
    so the records are the same. The mutation: a cache that keeps the network but not the
    head (a fresh head gives another AUC), or trains again."""
    from casn_lite.ablation import StartConfig, arms_over_seeds
    from casn_lite.data import test_pair_loader
    from casn_lite.engine import Runtime

    data = load_dataset("synthpeople", tiny_synth[0])
    start = StartConfig(height=32, width=16, epochs=1, batch_size=8, num_instances=2, embed_dim=16)
    finetune = TrainConfig(epochs=1, optimizer="adam", lr=1e-3, progress=False)
    pairs = test_pair_loader(data, 32, 16, num_pairs=8, batch_size=8, seed=0)
    args = (data, start, [0, 1], ["IDE", "IDE+SA"], finetune, CASNSettings(), torch.device("cpu"),
            Runtime(in_memory=False), pairs)
    first, runs = arms_over_seeds(*args, pairs_per_batch=4, head_warmup=2, cache_dir=tmp_path)
    assert [(r["variant"], r["seed"], r["cached"]) for r in first] == [
        ("IDE", 0, False), ("IDE+SA", 0, False), ("IDE", 1, False), ("IDE+SA", 1, False)]
    assert len({r["person_area"] for r in first}) == 1, "every run measured on the same pairs"
    assert not torch.equal(runs[("IDE", 0)]["model"].embed[0].weight, runs[("IDE", 1)]["model"].embed[0].weight)
    again, _ = arms_over_seeds(*args, pairs_per_batch=4, head_warmup=2, cache_dir=tmp_path)
    assert all(r["cached"] for r in again)
    keys = ("mAP", "rank1", "positive_distance", "class_person_lift", "head_auc", "head_bce", "train_seconds")
    for a, b in zip(first, again, strict=True):
        assert {k: a.get(k) for k in keys} == pytest.approx({k: b.get(k) for k in keys}, nan_ok=True)
    other, _ = arms_over_seeds(*args, pairs_per_batch=2, head_warmup=2, cache_dir=tmp_path)
    assert not any(r["cached"] for r in other), "other batches: other runs"
