"""Issue 23, reliability round three: one section per numbered case of the issue."""


import numpy as np
import pytest
import torch

from casn_lite.__main__ import main
from casn_lite.engine import CheckpointRefused, fit

from .test_reliability import linear_loss, settings, tiny_run


class Planted:
    """Unpickled, it creates a file: what a crafted checkpoint could do with a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def train_command(root, out, *extra):
    """The smallest ``train`` run: IDE, ResNet-18 at 32 x 16, one epoch, no workers."""
    return ["train", "--variant", "IDE", "--data-root", str(root), "--backbone", "resnet18", "--height", "32",
            "--width", "16", "--epochs", "1", "--batch-size", "8", "--num-instances", "2", "--workers", "0",
            "--lr", "1e-3", "--out", str(out), "--quiet", *extra]


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


# --------------------------------------------------------------------------- 1. last.pt runs no code
def test_a_training_checkpoint_holds_plain_values_and_resumes(tiny_synth, tmp_path):
    model, loader = tiny_run(tiny_synth[0])
    scores = lambda m: {"cmc": np.array([0.5, 1.0]), "mAP": np.float64(0.25)}  # noqa: E731  as evaluate returns
    history = fit(model, loader, settings(tmp_path), linear_loss, eval_fn=scores)
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickled objects: nothing to run
    assert state["history"][0]["cmc"] == [0.5, 1.0] and state["history"][0]["mAP"] == 0.25
    model, loader = tiny_run(tiny_synth[0])
    again = fit(model, loader, settings(tmp_path, epochs=1), linear_loss, eval_fn=scores)
    assert again[0]["loss"] == history[0]["loss"], "resumed: the recorded epoch, not a new one"


def crafted_last_pt(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "history": [], "note": Planted(marker)}, folder / "last.pt")


def test_a_crafted_last_pt_runs_no_code_in_fit(tiny_synth, tmp_path):
    marker = tmp_path / "pwned"
    crafted_last_pt(tmp_path / "ckpt", marker)
    model, loader = tiny_run(tiny_synth[0])
    with pytest.raises(CheckpointRefused, match="could run code"):
        fit(model, loader, settings(tmp_path / "ckpt"), linear_loss)
    assert not marker.exists(), "unpickling ran code from the file"


def test_a_crafted_last_pt_runs_no_code_in_train(tiny_synth, tmp_path, capsys):
    marker, out = tmp_path / "pwned", tmp_path / "run"
    crafted_last_pt(out / "checkpoints", marker)
    assert main(train_command(tiny_synth[0], out)) == 2
    one_line_error(capsys, "refused", "--restart")
    assert not marker.exists()
