"""Issue 12: no silent wrong results and no lost data (one section per finding)."""

import pytest
import torch
from torch.utils.data import DataLoader

from casn_lite.data import IdentitySampler, ImageDataset, build_transforms, load_dataset
from casn_lite.engine import CheckpointMismatch, TrainConfig, fit, seed_everything


# --------------------------------------------------------------------------- 1. resume
def tiny_run(root, seed=0, samples=None):
    """A model and a loader as a notebook builds them: seeded, on the tiny set."""
    seed_everything(seed)
    data = load_dataset("synthpeople", root)
    train = ImageDataset(samples or data.train, build_transforms(32, 16, train=True, pad=2))
    loader = DataLoader(train, batch_size=8, sampler=IdentitySampler(train.pids, 8, 2, seed=seed), drop_last=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 16, data.num_train_pids))
    return model, loader


def linear_loss(model, batch, device):
    """Cross-entropy of a plain classifier: the cheapest loss fit can train."""
    loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["pid"])
    return loss, {"ide": loss.item()}


def settings(ckpt, **changes):
    return TrainConfig(**{"epochs": 1, "optimizer": "adam", "lr": 1e-3, "progress": False,
                          "checkpoint_dir": str(ckpt), "resume": True, **changes})


def test_resume_with_the_same_run_continues_it(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    first = fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    assert fit(model, loader, settings(tmp_path, desc="a new label", progress=True), linear_loss) == first


@pytest.mark.parametrize("change, named", [
    ({"lr": 2e-3}, "lr: 0.001 -> 0.002"),
    ({"epochs": 2}, "epochs: 1 -> 2"),
    ({"extra": {"dataset": "other"}}, "extra"),
])
def test_resume_refuses_other_settings(tiny_synth, tmp_path, change, named):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.raises(CheckpointMismatch, match=named) as err:
        fit(model, loader, settings(tmp_path, **change), linear_loss)
    assert "--restart" in str(err.value) and str(tmp_path) in str(err.value)


def test_resume_refuses_another_seed_or_other_data(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0], seed=1)
    with pytest.raises(CheckpointMismatch, match="starting weights"):
        fit(model, loader, settings(tmp_path), linear_loss)
    data = load_dataset("synthpeople", tiny_synth[0])
    model, loader = tiny_run(tiny_synth[0], samples=data.train[:-2])
    with pytest.raises(CheckpointMismatch, match="training data"):
        fit(model, loader, settings(tmp_path), linear_loss)


def test_resume_false_starts_fresh_over_a_mismatching_checkpoint(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    history = fit(model, loader, settings(tmp_path, lr=2e-3, resume=False), linear_loss)
    model, loader = tiny_run(tiny_synth[0])
    assert fit(model, loader, settings(tmp_path, lr=2e-3), linear_loss) == history, "the new run is the one recorded"


def test_a_truncated_checkpoint_is_set_aside_and_training_starts_again(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    fit(model, loader, settings(tmp_path), linear_loss)
    last = tmp_path / "last.pt"
    broken = last.read_bytes()[:1000]
    last.write_bytes(broken)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.warns(UserWarning, match="cannot be read"):
        history = fit(model, loader, settings(tmp_path), linear_loss)
    assert len(history) == 1 and last.is_file()
    assert (tmp_path / "last.pt.unreadable").read_bytes() == broken, "the broken file is kept, aside"
