"""benchmarks/siamese_head.py measures Siamese heads on frozen features: its ROC AUC agrees
with a hand-worked example (ties count one half; an AUC that breaks ties by order, or
swaps the labels, is caught), its warm-up is ``warm_up_siamese_head`` step by step, the
network stays frozen (a moved weight or statistic is caught), and the symmetric heads are."""

import math

import numpy as np
import pytest
import torch

from casn_lite import evaluation
from casn_lite.evaluation import roc_auc
from casn_lite.losses import SiameseHead, warm_up_siamese_head
from casn_lite.models import build_model

from .support import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("siamese_head")


# scores of 3 positives (0.35, 0.8, 0.4) and 2 negatives (0.1, 0.4), one tie across the classes.
# The 6 (positive, negative) comparisons: 0.35 > 0.1, 0.35 < 0.4, 0.8 > 0.1, 0.8 > 0.4,
# 0.4 > 0.1, 0.4 = 0.4 (one half): AUC = 4.5 / 6 = 0.75.
SCORES = [0.1, 0.4, 0.35, 0.8, 0.4]
LABELS = [0, 0, 1, 1, 1]


def check_auc(roc_auc):
    assert roc_auc(SCORES, LABELS) == pytest.approx(0.75)
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert roc_auc([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)  # all tied: chance


def test_auc_against_a_hand_worked_example():
    check_auc(roc_auc)
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 200), rng.integers(0, 2, 200)  # many ties
    pairs = [(s > t) + 0.5 * (s == t) for s, y in zip(scores, labels, strict=True) if y
             for t, z in zip(scores, labels, strict=True) if not z]
    assert roc_auc(scores, labels) == pytest.approx(np.mean(pairs))  # the definition, pair by pair
    assert roc_auc(scores, 1 - labels) == pytest.approx(1 - roc_auc(scores, labels))
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))  # one class: no AUC


def test_the_auc_check_catches_ties_broken_by_order(monkeypatch):
    """The mutation: ordinal ranks instead of shared ones (a tie counts 0 or 1, not one half)."""
    monkeypatch.setattr(evaluation, "rankdata", lambda v, method: np.argsort(np.argsort(v, kind="stable")) + 1.0)
    with pytest.raises(AssertionError):
        check_auc(roc_auc)


def test_the_auc_check_catches_swapped_labels():
    with pytest.raises(AssertionError):
        check_auc(lambda scores, labels: roc_auc(scores, 1 - np.asarray(labels)))


def pair_batches(n=3, pairs=4):
    torch.manual_seed(2)
    return [{"image1": torch.randn(pairs, 3, 64, 32), "image2": torch.randn(pairs, 3, 64, 32),
             "same": torch.tensor([1, 0] * (pairs // 2))} for _ in range(n)]


def tiny_model():
    torch.manual_seed(1)
    return build_model("ide", "resnet18", num_classes=4, embed_dim=16).train()  # train mode: BN would move


def test_the_warm_up_is_the_library_s_and_leaves_the_network_frozen(bench):
    batches = pair_batches()
    model = tiny_model()
    before = bench.snapshot(model)
    torch.manual_seed(0)
    reference = SiameseHead(16)
    expected = warm_up_siamese_head(reference, model, batches, torch.device("cpu"), steps=5)  # the list runs out: restarts
    heads = {("f1-f2", 1e-3): bench.fresh_heads(["f1-f2"], 16, 0, torch.device("cpu"))["f1-f2"]}
    losses = bench.train_warmup(heads, {("f1-f2", 1e-3): 1e-3}, model, batches, torch.device("cpu"), steps=5)
    assert losses[("f1-f2", 1e-3)] == pytest.approx(expected, rel=1e-5)
    for mine, theirs in zip(heads[("f1-f2", 1e-3)].head.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)
    assert bench.unchanged(model, before)  # weights and batch norm's running statistics
    assert model.training  # put back in the mode it had


def test_a_moved_statistic_is_caught(bench):
    model = tiny_model()
    before = bench.snapshot(model)
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 32))  # a training-mode forward moves batch norm's running mean
    assert not bench.unchanged(model, before)


def test_the_symmetric_heads_ignore_the_pair_s_order(bench):
    torch.manual_seed(3)
    d = torch.randn(8, 16)
    for kind in ("square", "abs", "average"):
        torch.manual_seed(0)
        head = bench.PairHead(kind, 16).eval()
        torch.testing.assert_close(head(d), head(-d))
    torch.manual_seed(0)
    today = bench.PairHead("difference", 16).eval()
    assert not torch.allclose(today(d), today(-d))
    torch.manual_seed(0)
    torch.testing.assert_close(today(d), SiameseHead(16).eval()(d))  # today's head is SiameseHead itself


def test_both_orders_trains_on_the_swapped_pair_too(bench):
    torch.manual_seed(4)
    f1, f2, same = torch.randn(4, 16), torch.randn(4, 16), torch.tensor([1, 0, 1, 0])
    heads = bench.fresh_heads(["f1-f2", "f1-f2, both orders"], 16, 0, torch.device("cpu"))
    seen = {}

    def keep_input(name):
        def hook(module, args, out):
            seen[name] = args[0].detach().clone()  # returns None: the output stays as it is
        return hook

    for name, head in heads.items():
        head.register_forward_hook(keep_input(name))
        bench.head_step(name, head, torch.optim.Adam(head.parameters()), f1, f2, same)
    torch.testing.assert_close(seen["f1-f2"], f1 - f2)
    torch.testing.assert_close(seen["f1-f2, both orders"], torch.cat([f1 - f2, f2 - f1]))
