"""benchmarks/step_breakdown.py times the step fit trains with: its written-out CASN step
gives CASNLoss's loss and gradients on a fixed batch, for every variant (and a written-out
step that drops a lambda, or scores the wrong class, is caught)."""


import pytest
import torch

from casn_lite.ablation import variant_loss
from casn_lite.models import build_model

from .support import load_benchmark


@pytest.fixture(scope="module")
def breakdown():
    return load_benchmark("step_breakdown")


def batch():
    torch.manual_seed(0)
    return {"image": torch.randn(4, 3, 64, 32), "pid": torch.tensor([0, 0, 1, 1]),
            "image1": torch.randn(2, 3, 64, 32), "image2": torch.randn(2, 3, 64, 32), "same": torch.tensor([1, 0])}


@pytest.mark.parametrize("variant", ["IDE", "IDE+IA", "IDE+SA", "CASN(IDE)"])
def test_the_written_out_step_is_casn_loss(breakdown, variant):
    torch.manual_seed(1)
    model = build_model("ide", "resnet18", num_classes=4, embed_dim=16)
    loss = variant_loss(variant, feature_dim=16, hidden_dim=8, lambda_ia=0.7, lambda_sa=1.3)
    assert breakdown.check_against_the_loss(model, loss, batch(), torch.device("cpu")) < 1e-3


def test_the_check_rejects_a_step_that_drops_a_weight(breakdown, monkeypatch):
    """The mutation the check exists for: the written-out step without lambda_1."""
    real = breakdown.attention_mining_loss
    monkeypatch.setattr(breakdown, "attention_mining_loss", lambda *a, **k: real(*a, **k) / 0.7)
    torch.manual_seed(1)
    model = build_model("ide", "resnet18", num_classes=4, embed_dim=16)
    with pytest.raises(AssertionError):
        breakdown.check_against_the_loss(model, variant_loss("IDE+IA", feature_dim=16, lambda_ia=0.7), batch(),
                                         torch.device("cpu"))
