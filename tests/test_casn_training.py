"""CASN trains end to end on CPU: the joint identity + pair loader, the loss's own weights,
and an interrupted run that resumes to exactly the weights of an uninterrupted one."""

import pytest
import torch

from casn_lite.data import load_dataset, pair_loader, reid_loaders
from casn_lite.engine import JointLoader, TrainConfig, fit, load_training_state, seed_everything
from casn_lite.losses import CASNLoss
from casn_lite.models import build_model


def loaders(root, pairs_per_batch=4, pair_batches=None):
    data = load_dataset("synthpeople", root)
    ids = reid_loaders(data, 32, 16, batch_size=8, num_instances=2, seed=0)
    pairs = pair_loader(data, 32, 16, pairs_per_batch, pair_batches or len(ids.train), seed=0)
    return data, ids, JointLoader(ids.train, pairs)


def test_joint_loader_merges_batches_and_restarts_the_pairs(tiny_synth):
    _, ids, _ = loaders(tiny_synth[0])
    joint = JointLoader(ids.train, loaders(tiny_synth[0], pair_batches=2)[2].pair_loader)
    batches = list(joint)
    assert len(batches) == len(joint) == len(ids.train) > 2
    assert {"image", "pid", "image1", "image2", "same"} <= set(batches[0])
    assert batches[0]["image"].shape == (8, 3, 32, 16) and batches[0]["image1"].shape == (4, 3, 32, 16)
    # two pair batches per pass: every later step still gets pairs (the pair loader restarts)
    assert all(b["same"].shape == (4,) for b in batches)


def stop_after(loss_fn: CASNLoss, calls: int) -> None:
    """Make the loss raise KeyboardInterrupt at its call number ``calls + 1``: the user stops
    the run there (the loss's options, hence the run's identity, are unchanged)."""
    forward, count = loss_fn.forward, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    loss_fn.forward = counting


def test_casn_run_interrupted_mid_epoch_resumes_to_the_same_weights(tiny_synth, tmp_path):
    """CASN(IDE) with every source of state an exact resume needs: the model and the Siamese
    head (checkpointed with it), SGD momentum, a warm-up and step schedule, the lambda ramp,
    in-memory identity batches (their own per-epoch generator) and pair batches read from
    disk (augmented with the global RNG)."""
    data = load_dataset("synthpeople", tiny_synth[0])
    cfg = TrainConfig(epochs=2, optimizer="sgd", lr=0.01, warmup_epochs=1, schedule="step", step_epochs=(1,),
                      progress=False, resume=True)

    def run(checkpoint_dir, interrupt_after=None):
        seed_everything(0)  # a new session: nothing in memory survives
        ids = reid_loaders(data, 32, 16, batch_size=16, num_instances=2, seed=0, in_memory=True, device="cpu")
        joint = JointLoader(ids.train, pair_loader(data, 32, 16, 4, len(ids.train), seed=0))
        model = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
        loss_fn = CASNLoss(ia=True, sa=True, feature_dim=16, hidden_dim=8, ramp_epochs=1.0)
        head_before = loss_fn.head.layers[0].weight.detach().clone()
        if interrupt_after is not None:
            stop_after(loss_fn, interrupt_after)
        history = fit(model, joint, TrainConfig(**{**cfg.__dict__, "checkpoint_dir": str(checkpoint_dir)}), loss_fn)
        return model, loss_fn, history, head_before, len(joint)

    model, loss_fn, history, head_before, steps = run(tmp_path / "straight")
    assert steps >= 2 and [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "ide", "ia", "sa", "bce", "consistency"} <= set(history[-1])
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert not torch.equal(loss_fn.head.layers[0].weight, head_before), "the head was trained"
    state = load_training_state(tmp_path / "straight")
    torch.testing.assert_close(state["loss"]["head.layers.0.weight"], loss_fn.head.layers[0].weight)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "stopped", interrupt_after=steps + 1)  # in the second epoch, after its first step
    resumed, resumed_loss, resumed_history, _, _ = run(tmp_path / "stopped")
    for straight, again in ((model, resumed), (loss_fn, resumed_loss)):
        for (name, p), q in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in history]


def test_a_test_pair_loader_yields_the_same_pairs_every_time(tiny_synth):
    from casn_lite.data import test_pair_loader

    data = load_dataset("synthpeople", tiny_synth[0])
    pairs = test_pair_loader(data, 32, 16, num_pairs=8, batch_size=8, seed=2)
    first, second = next(iter(pairs)), next(iter(pairs))
    for key in ("pid1", "pid2", "image1", "image2", "mask1"):
        assert torch.equal(first[key], second[key]), key


def test_augmentation_is_drawn_from_the_seed_epoch_and_step_not_the_global_generator(tiny_synth):
    """Two runs with one seed see identical augmented batches, whatever else drew from
    torch's global generator in between (another variant's extra passes, a head warm-up);
    a new epoch or another seed gives other augmentations."""
    from casn_lite.engine import set_epoch

    def first_batch(joint, epoch=0):
        set_epoch(joint, epoch)
        return next(iter(joint))

    def load(seed):
        data = load_dataset("synthpeople", tiny_synth[0])
        ids = reid_loaders(data, 32, 16, batch_size=8, num_instances=2, seed=seed, erase_p=0.5)
        return JointLoader(ids.train, pair_loader(data, 32, 16, 4, len(ids.train), seed=seed, erase_p=0.5))

    joint = load(0)
    torch.manual_seed(1)
    a = first_batch(joint)
    torch.manual_seed(2)
    torch.rand(1000)  # what one variant draws and another does not
    b = first_batch(joint)
    for key in ("image", "image1", "image2"):
        assert torch.equal(a[key], b[key]), f"{key}: the same augmented images at the same step"
    later, other = first_batch(joint, epoch=1), first_batch(load(1))
    assert not torch.equal(a["image"], later["image"]), "the next epoch augments anew"
    assert not torch.equal(a["image"], other["image"]), "another seed augments otherwise"
    # the loader leaves the global generator alone: what a loss draws does not depend on it
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    first_batch(joint)
    assert torch.equal(torch.rand(3), expected)
