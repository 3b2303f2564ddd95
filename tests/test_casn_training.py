"""CASN trains end to end on CPU: the joint identity + pair loader, the loss's own weights."""

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


def test_casn_trains_end_to_end_and_checkpoints_the_siamese_head(tiny_synth, tmp_path):
    seed_everything(0)
    data, _, joint = loaders(tiny_synth[0])
    model = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
    loss_fn = CASNLoss(ia=True, sa=True, feature_dim=16, hidden_dim=8)
    head_before = loss_fn.head.layers[0].weight.detach().clone()
    cfg = TrainConfig(epochs=2, optimizer="adam", lr=1e-3, progress=False, checkpoint_dir=str(tmp_path))
    history = fit(model, joint, cfg, loss_fn)
    assert {"loss", "ide", "ia", "sa", "bce", "consistency"} <= set(history[-1])
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert not torch.equal(loss_fn.head.layers[0].weight, head_before), "the head was trained"
    state = load_training_state(tmp_path)
    torch.testing.assert_close(state["loss"]["head.layers.0.weight"], loss_fn.head.layers[0].weight.cpu())

    # the same run again, resumed (nothing more to do): the head comes from the checkpoint
    seed_everything(0)
    data, _, joint = loaders(tiny_synth[0])
    model = build_model("ide", "resnet18", num_classes=data.num_train_pids, embed_dim=16)
    fresh = CASNLoss(ia=True, sa=True, feature_dim=16, hidden_dim=8)
    fit(model, joint, TrainConfig(**{**cfg.__dict__, "resume": True}), fresh)
    torch.testing.assert_close(fresh.head.layers[0].weight, loss_fn.head.layers[0].weight)
