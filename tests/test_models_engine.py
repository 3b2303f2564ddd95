"""IDE model shapes and weights loading; training loop: one epoch's step, learning, schedule,
NaN stop (exact resume: tests/test_casn_training.py)."""

import math

import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from casn_lite.data import IdentitySampler, ImageDataset, build_transforms, load_dataset
from casn_lite.engine import (
    TrainConfig,
    TrainingDiverged,
    evaluate,
    fit,
    make_scheduler,
    seed_everything,
    train_one_epoch,
)
from casn_lite.models import PretrainedWeightsUnavailable, build_model


@pytest.mark.parametrize("backbone, channels", [("resnet18", 512), ("resnet50", 2048)])
@pytest.mark.parametrize("last_stride, map_size", [(1, (4, 2)), (2, (2, 1))])
def test_forward_returns_map_embedding_logits(backbone, channels, last_stride, map_size):
    model = build_model(backbone=backbone, num_classes=7, last_stride=last_stride, embed_dim=32).eval()
    out = model(torch.randn(2, 3, 64, 32))
    assert out.feature_map.shape == (2, channels, *map_size)
    assert out.embedding.shape == (2, 32) and out.logits.shape == (2, 7)


def test_pretrained_weights_load_from_torch_hub_cache(tmp_path, monkeypatch):
    # stand in for ImageNet weights: a file where torchvision's weights API looks for them
    torch.hub.set_dir(str(tmp_path))
    try:
        weights = torchvision.models.get_model_weights("resnet18").DEFAULT
        reference = torchvision.models.resnet18()
        (tmp_path / "checkpoints").mkdir()
        torch.save(reference.state_dict(), tmp_path / "checkpoints" / weights.url.rsplit("/", 1)[-1])
        model = build_model(backbone="resnet18", num_classes=3, pretrained=True, last_stride=2)
        torch.testing.assert_close(model.trunk[0].weight, reference.conv1.weight)
    finally:
        torch.hub.set_dir(torch.hub._get_torch_home() + "/hub")


def test_missing_pretrained_weights_explain_the_fix(tmp_path, monkeypatch):
    torch.hub.set_dir(str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    try:
        with pytest.raises(PretrainedWeightsUnavailable, match="Download https://") as err:
            build_model(backbone="resnet18", num_classes=3, pretrained=True)
        assert str(tmp_path) in str(err.value) and "pretrained=False" in str(err.value)
        with pytest.warns(UserWarning, match="from scratch"):
            build_model(backbone="resnet18", num_classes=3, pretrained=True, fallback_to_scratch=True)
    finally:
        torch.hub.set_dir(torch.hub._get_torch_home() + "/hub")


def tiny_loaders(root):
    data = load_dataset("synthpeople", root)
    train = ImageDataset(data.train, build_transforms(32, 16, train=True, pad=2))
    loader = DataLoader(train, batch_size=8, sampler=IdentitySampler(train.pids, 8, 2, seed=0), drop_last=True)
    tf = build_transforms(32, 16)
    return data, loader, DataLoader(ImageDataset(data.query, tf), 64), DataLoader(ImageDataset(data.gallery, tf), 64)


def small_model(data):
    return build_model(backbone="resnet18", num_classes=data.num_train_pids, embed_dim=16, dropout=0.1)


def test_training_lowers_the_loss_and_records_history(tiny_synth):
    seed_everything(0)
    data, loader, ql, gl = tiny_loaders(tiny_synth[0])
    model = small_model(data)
    history = fit(model, loader, TrainConfig(epochs=4, optimizer="adam", lr=1e-3, schedule="cosine",
                                             progress=False), eval_fn=lambda m: evaluate(m, ql, gl))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"rank1", "mAP", "mINP", "lr", "images_per_s"} <= set(history[-1])


def test_nan_loss_stops_with_a_clear_error(tiny_synth):
    data, loader, _, _ = tiny_loaders(tiny_synth[0])

    def nan_loss(m, batch, device, progress=0.0):
        return m(batch["image"]).logits.sum() * float("nan"), {}

    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        fit(small_model(data), loader, TrainConfig(epochs=1, progress=False), nan_loss)


def test_train_one_epoch_updates_and_averages_over_images():
    weight = torch.nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    # the pair batch's keys first, as a dict may hold them: the images of the identity batch count
    loader = [{"same": torch.zeros(1), "image": torch.zeros(2, 3, 4, 2)},
              {"same": torch.zeros(1), "image": torch.zeros(4, 3, 4, 2)}]
    seen = []

    def step(batch, progress):
        seen.append(progress)
        loss = weight * len(batch["image"])  # d loss / d weight = batch size
        return loss, {"size": float(len(batch["image"]))}

    record = train_one_epoch(step, loader, optimizer, scheduler, epoch=3)
    assert seen == [3.0, 3.5], "progress in epochs, fractions within the epoch"
    assert weight.item() == pytest.approx(1.0 - 0.1 * 2 - 0.1 * 4), "one update per batch"
    assert record["epoch"] == 4 and record["size"] == pytest.approx((2 * 2 + 4 * 4) / 6)
    assert record["loss"] == pytest.approx((2 * 1.0 * 2 + 4 * 0.8 * 4) / 6)


def learning_rates(cfg: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    """The learning rate of every step of a run (lr 1.0: the schedule's factor)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_scheduler_factors_warm_up_step_and_cosine():
    step = learning_rates(TrainConfig(epochs=4, warmup_epochs=1, schedule="step", step_epochs=(2, 3), gamma=0.5))
    assert step[:10] == pytest.approx([0.1 + 0.9 * k / 10 for k in range(10)]), "linear from lr/10 over 1 epoch"
    assert step[10:20] == pytest.approx([1.0] * 10)
    assert step[20:30] == pytest.approx([0.5] * 10) and step[30:] == pytest.approx([0.25] * 10)
    cosine = learning_rates(TrainConfig(epochs=3, warmup_epochs=1, schedule="cosine"))
    assert cosine[9] == pytest.approx(0.91) and cosine[10] == pytest.approx(1.0)
    assert cosine[15] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 20)))
    assert cosine[20] == pytest.approx(0.5) and cosine[29] == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert learning_rates(TrainConfig(epochs=2, schedule="constant")) == pytest.approx([1.0] * 20)
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rates(TrainConfig(epochs=1, schedule="linear"))
