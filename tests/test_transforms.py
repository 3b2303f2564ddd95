"""Transforms: output shape, normalisation round trip, masks moving with their images."""

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from casn_lite.data import build_transforms, denormalize


def test_eval_transform_shape_and_round_trip():
    img = Image.fromarray(np.full((128, 64, 3), 200, np.uint8))
    x = build_transforms(96, 48)(img)
    assert x.shape == (3, 96, 48) and x.dtype == torch.float32
    torch.testing.assert_close(denormalize(x), torch.full((3, 96, 48), 200 / 255), atol=1e-5, rtol=0)


def test_train_transform_is_random_and_keeps_shape():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (128, 64, 3), dtype=np.uint8))
    t = build_transforms(128, 64, train=True)
    a, b = t(img), t(img)
    assert a.shape == b.shape == (3, 128, 64)
    assert not torch.equal(a, b)


def test_flip_moves_image_and_mask_together():
    left = np.zeros((32, 16, 3), np.uint8)
    left[:, :8] = 255  # bright left half
    mask = np.zeros((32, 16), np.uint8)
    mask[:, :8] = 1
    t = build_transforms(32, 16, train=True, flip_p=1.0, pad=0, erase_p=0.0)
    x, m = t(Image.fromarray(left), tv_tensors.Mask(torch.from_numpy(mask)))
    bright = denormalize(x)[0] > 0.5
    assert bright[:, 8:].all() and not bright[:, :8].any(), "the image was flipped"
    assert torch.equal(m.bool(), bright), "the mask was flipped with it"
