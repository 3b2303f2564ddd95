"""The knobs of the attention regime reach what they set: random erasing in both loaders
and in the IDE start's cache key."""

import torch
from torchvision.transforms import v2

from casn_lite.ablation import StartConfig, _start_key
from casn_lite.data import SynthConfig, load_or_generate, pair_loader, reid_loaders

TINY = SynthConfig(train_ids=4, test_ids=4, cameras=2, images_per_camera=2, height=64, width=32, seed=0)


def _erasers(transform) -> list:
    return [t for t in transform.transforms if isinstance(t, v2.RandomErasing)]


def test_erase_p_reaches_the_identity_and_the_pair_loaders(tmp_path, monkeypatch):
    monkeypatch.setattr("casn_lite.DATA_DIR", tmp_path)
    data = load_or_generate(None, TINY)
    for erase_p in (0.0, 0.5):
        loaders = reid_loaders(data, 64, 32, 4, 2, in_memory=False, device="cpu", erase_p=erase_p)
        pairs = pair_loader(data, 64, 32, 2, 1, erase_p=erase_p)
        for transform in (loaders.train.dataset.transform, pairs.dataset.images.transform):
            erasers = _erasers(transform)
            assert [e.p for e in erasers] == ([erase_p] if erase_p else [])


def test_erase_p_reaches_the_in_memory_augmentation(tmp_path, monkeypatch):
    monkeypatch.setattr("casn_lite.DATA_DIR", tmp_path)
    data = load_or_generate(None, TINY)
    loaders = reid_loaders(data, 64, 32, 4, 2, in_memory=True, device="cpu", erase_p=0.0)
    assert loaders.train.augment.erase_p == 0.0
    images = torch.full((8, 3, 64, 32), 128, dtype=torch.uint8)
    out = loaders.train.augment(images, torch.Generator().manual_seed(0))
    assert not (out == 0).all(dim=1).any(), "nothing erased to 0 when erase_p = 0"


def test_the_start_cache_key_depends_on_erasing():
    assert _start_key("data", StartConfig(erase_p=0.5)) != _start_key("data", StartConfig(erase_p=0.0))
