"""The SynthPeople-pretrained start (``StartConfig(pretrained="synthpeople")``), the project's
stand-in for ImageNet weights: the IDE start begins from the trunk of an IDE trained on
another SynthPeople world, and is cached apart from the scratch start and from a start of
another pretraining.

Caught: the pretrained trunk not loaded (the start's conv1 is then unrelated to it), the
pretraining left out of the cache key (a start of another pretraining is returned), the
string passed on to torchvision as if it asked for ImageNet weights."""

import dataclasses

import pytest
import torch

from casn_lite.ablation import Pretraining, StartConfig, ide_start, pretrained_trunk
from casn_lite.data import load_dataset
from casn_lite.data.synth import SynthConfig
from casn_lite.models import build_model

TINY_PRETRAINING = Pretraining(SynthConfig(train_ids=6, test_ids=3, cameras=3, images_per_camera=2, height=64,
                                           width=32, seed=5), epochs=1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_the_start_grows_from_the_pretrained_trunk_and_is_cached_apart(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("CASN_LITE_DATA", str(tmp_path / "data"))
    import casn_lite

    monkeypatch.setattr(casn_lite, "DATA_DIR", tmp_path / "data")  # the pretraining set drawn here, not in data/
    data = load_dataset("synthpeople", tiny_synth[0])
    # seed 1: the scratch start draws other initial weights than the pretraining (seed 0) did
    cfg = StartConfig(height=64, width=32, epochs=1, seed=1, batch_size=8, num_instances=2, pretrained="synthpeople")
    cpu = torch.device("cpu")
    trunk = pretrained_trunk(cfg, cpu, cache_dir=tmp_path, progress=False, pretraining=TINY_PRETRAINING)
    start, info = ide_start(data, cfg, cpu, cache_dir=tmp_path, progress=False, pretraining=TINY_PRETRAINING)
    scratch, scratch_info = ide_start(data, dataclasses.replace(cfg, pretrained=False), cpu, cache_dir=tmp_path,
                                      progress=False)
    conv1 = "trunk.0.weight"
    assert cosine(start.state_dict()[conv1], trunk[conv1]) > 0.9, "one epoch on from the pretrained trunk"
    assert abs(cosine(scratch.state_dict()[conv1], trunk[conv1])) < 0.5, "the scratch start is unrelated to it"
    other = Pretraining(dataclasses.replace(TINY_PRETRAINING.data, seed=6), epochs=1)
    _, other_info = ide_start(data, cfg, cpu, cache_dir=tmp_path, progress=False, pretraining=other)
    assert len({info["key"], scratch_info["key"], other_info["key"]}) == 3
    again, again_info = ide_start(data, cfg, cpu, cache_dir=tmp_path, progress=False, pretraining=TINY_PRETRAINING)
    assert again_info["cached"] and torch.equal(again.state_dict()[conv1], start.state_dict()[conv1])


def test_build_model_refuses_the_start_name():
    with pytest.raises(ValueError, match="synthpeople"):
        build_model("ide", "resnet18", num_classes=4, pretrained="synthpeople")


def test_the_benchmarks_report_pairs_by_seed_and_adjusts_across_quantities():
    """benchmarks/stronger_start.py's table on made-up records: the paired difference, its
    p-value (scipy's paired t-test) and the Benjamini-Hochberg q over the quantities."""
    import numpy as np
    from scipy import stats

    from .support import load_benchmark

    bench = load_benchmark("stronger_start")
    rng = np.random.default_rng(0)
    records = [{"start": start, "seed": seed, **{k: float(rng.normal(0.5 if start == "scratch" else 0.7, 0.05))
                                                for k in bench.KEYS}}
               for seed in range(4) for start in bench.STARTS]
    lines = bench.report(records)
    row = next(line for line in lines if line.startswith("| p_true |"))
    a = [r["p_true"] for r in records if r["start"] == "scratch"]
    b = [r["p_true"] for r in records if r["start"] == "synthpeople"]
    p = [stats.ttest_rel([r[k] for r in records if r["start"] == "synthpeople"],
                         [r[k] for r in records if r["start"] == "scratch"]).pvalue for k in bench.KEYS]
    q = stats.false_discovery_control(p)
    assert f"{np.mean(np.subtract(b, a)):+.2f}" in row
    assert row.rstrip(" |").endswith(f"{q[0]:.3g}") and f"{p[0]:.3g}" in row
