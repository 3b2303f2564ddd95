"""The GPU budget: a profile's time on one GPU from its parameters and measured speeds (no training)."""

from pathlib import Path

import pytest

from casn_lite.tooling import budget, smoke

# every parameter budget.trainings reads, at sizes that make the arithmetic easy:
# 10 people x (2 + 6) / 2 cameras x 5 images = 200 training images at 256 x 128
PARAMETERS = {"seed": 0, "train_ids": 10, "test_ids": 10, "cameras": 6, "images_per_camera": 5, "height": 256,
              "width": 128, "backbone": "resnet50", "batch_size": 128, "num_instances": 4, "optimizer": "adam",
              "lr": 3e-4, "pretrained": False, "last_stride": 1, "embed_dim": None, "erase_p": 0.0,
              "pairs_per_batch": 32, "head_warmup": 100, "ide_epochs": 30, "ia_epochs": 2, "sa_epochs": 2,
              "casn_epochs": 2, "arch": "ide", "seeds": [0, 1], "data_seed": 0, "variants": None,
              "variant_epochs": 2, "checkpoint_dir": None}
EPOCH = 200 / budget.IDE_IMAGES_PER_S  # seconds of one IDE epoch
ATTENTION_EPOCH = EPOCH / budget.ATTENTION_RELATIVE_SPEED


def parameters(**changes) -> dict:
    """PARAMETERS with ``changes`` (every notebook ignores those it does not have)."""
    return PARAMETERS | changes


def test_the_shipped_gpu_profile_fits_one_command_with_margin():
    """benchmarks/gpu_run.sh runs in one command of at most 9 minutes; the budget keeps a
    minute for what it assumes."""
    whole = budget.gpu_run_budget("gpu")
    labels = [p.label for p in whole.parts]
    assert {"benchmarks/train_throughput.py", "benchmarks/evaluation.py"} <= set(labels)
    assert {"04_casn_training --arch pcb", "05_ablations --arch pcb"} <= set(labels), "the PCB half is counted"
    assert len([p for p in whole.parts if p.number is not None]) == 8, "six notebooks, then 04 and 05 with PCB"
    assert whole.seconds < 8 * 60, budget.budget_table(whole, "over 8 minutes")


def test_a_start_is_paid_once_and_attention_steps_at_their_measured_speed():
    b = budget.Budget()
    first = budget.notebook_budget("02", "02", parameters(), b)
    # the 30-epoch start, then IDE and IDE+IA for 2 epochs each
    assert first.training == pytest.approx(30 * EPOCH + 2 * EPOCH + 2 * ATTENTION_EPOCH)
    second = budget.notebook_budget("04", "04", parameters(), b)
    assert second.training == pytest.approx(2 * ATTENTION_EPOCH), "04 loads 02's start and 02's IDE run"
    ablation = budget.notebook_budget("05", "05", parameters(), b)
    # seed 0: its start, IDE and IDE+IA are 02's, CASN(IDE) 04's, so IDE+SA(0) and IDE+SA train;
    # seed 1 trains its own start and all five arms (four with attention)
    assert ablation.training == pytest.approx(2 * 2 * ATTENTION_EPOCH + 30 * EPOCH + 2 * EPOCH + 4 * 2 * ATTENTION_EPOCH)
    assert len(ablation.trainings) == 1 + 2 + 5 and ablation.evaluation > 0, "loaded runs are still evaluated"
    pcb = budget.notebook_budget("04", "04 pcb", parameters(arch="pcb", height=384), b)
    assert pcb.training == pytest.approx(1.5 * (30 * EPOCH + 2 * EPOCH + 2 * ATTENTION_EPOCH)), \
        "PCB trains its own start, at 1.5 x the pixels"


def test_data_is_drawn_once_and_checkpoints_cost_each_epoch():
    b = budget.Budget()
    first = budget.notebook_budget("02", "02", parameters(), b)
    again = budget.notebook_budget("03", "03", parameters(), b)
    # 200 training images + 200 test images with 8 % distractors and junk, at 128 x 64
    # 03's two Siamese arms (IDE+SA(0), IDE+SA) each warm their head up for 100 steps of 32 pairs
    assert first.other - again.other == pytest.approx(416 / budget.SYNTH_IMAGES_PER_S
                                                      - 2 * (2 * 100 * 32) / budget.INFERENCE_IMAGES_PER_S)
    plain = budget.notebook_budget("04", "04", parameters(), budget.Budget())
    saved = budget.notebook_budget("04", "04", parameters(checkpoint_dir="runs/x"), budget.Budget())
    assert saved.other - plain.other == pytest.approx(2 * 2 * budget.CHECKPOINT_SECONDS), \
        "IDE and CASN(IDE) save each of their 2 epochs; the cached start does not"


def test_a_training_the_budget_does_not_count_is_named():
    b = budget.Budget()
    budget.notebook_budget("04", "04_casn_training", parameters(), b)
    ran = [{"notebook": "04", "ia": False, "sa": False, "full_epochs": 30},
           {"notebook": "04", "ia": False, "sa": False, "full_epochs": 2}]
    assert smoke.plan_mismatches(b, ran + [{"notebook": "04", "ia": True, "sa": True, "full_epochs": 2}]) == []
    (line,) = smoke.plan_mismatches(b, ran + [{"notebook": "04", "ia": True, "sa": False, "full_epochs": 2}])
    assert line.startswith("04_casn_training: the smoke run trained") and "CASN x 2 epochs" in line


def test_the_docs_state_the_shipped_budget():
    stated = f"{budget.gpu_run_budget('gpu').seconds / 60:.1f} minutes"
    root = Path(__file__).resolve().parents[1]
    for doc, words in (("README.md", f"its budget is {stated}"), ("benchmarks/README.md", f"{stated} in all"),
                       ("benchmarks/gpu_run.sh", f"({stated})")):
        text = " ".join((root / doc).read_text().replace("#", " ").split())
        assert words in text, f"{doc} should say {words!r}"
