"""Decoded images kept in memory as uint8 (on the GPU when training there), augmented there.

A DataLoader decodes every JPEG and runs PIL transforms on every epoch, on CPU workers. A
re-ID training set is small (Market-1501's 12,936 training images at 256 x 128 are 1.3 GB
as uint8), so decoding it once and augmenting whole batches on the device removes the data
pipeline from the step time. ``InMemoryLoader`` and ``InMemoryPairLoader`` yield the same
batches as the DataLoaders of ``reid_loaders`` and ``pair_loader`` (same keys, same
samplers) with the augmentations of ``build_transforms`` done by tensor operations:
horizontal flip, zero padding and random crop, normalisation and random erasing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..progress import progress_bar
from .datasets import Sample, read_image
from .transforms import IMAGENET_MEAN, IMAGENET_STD, default_pad

__all__ = ["decode_all", "bank_bytes", "DeviceAugment", "InMemoryLoader", "InMemoryPairLoader"]


def bank_bytes(num_images: int, height: int, width: int) -> int:
    """Memory a bank of ``num_images`` uint8 RGB images of that size takes."""
    return num_images * 3 * height * width


def decode_all(samples: list[Sample], height: int, width: int, device: torch.device | str = "cpu",
               progress: bool = True) -> torch.Tensor:
    """Every sample's image, resized to (height, width) as ``build_transforms`` does, as one
    uint8 tensor [N, 3, H, W] on ``device``."""
    out = torch.empty(len(samples), 3, height, width, dtype=torch.uint8)
    for i, s in enumerate(progress_bar(samples, desc="decoding", unit="img", disable=not progress, leave=False)):
        image = read_image(s.path).resize((width, height), Image.BILINEAR)
        out[i] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return out.to(device)


class DeviceAugment:
    """``build_transforms(train=True)`` for a uint8 batch on its device, by tensor operations:
    flip with probability ``flip_p``, zero-pad by ``pad`` and crop back at a random offset,
    scale to [0, 1] and normalise, then erase a random rectangle (area 2-33 % of the image,
    aspect 0.3-3.3, value 0) with probability ``erase_p``."""

    def __init__(self, height: int, width: int, flip_p: float = 0.5, pad: int | None = None,
                 erase_p: float = 0.5, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.height, self.width = height, width
        self.flip_p, self.erase_p = flip_p, erase_p
        self.pad = default_pad(height) if pad is None else pad  # as build_transforms
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> normalised float32, as ToDtype(scale=True) + Normalize."""
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.float() / 255 - mean) / std

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        dev = images.device

        def uniform(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        flip = uniform(b) < self.flip_p
        images = torch.where(flip.view(b, 1, 1, 1), images.flip(-1), images)
        if self.pad > 0:  # pad, then crop an h x w window at a random offset per image
            padded = torch.nn.functional.pad(images, (self.pad,) * 4)
            dy = (uniform(b) * (2 * self.pad + 1)).long()
            dx = (uniform(b) * (2 * self.pad + 1)).long()
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
            batch = torch.arange(b, device=dev)[:, None, None, None]
            channel = torch.arange(3, device=dev)[None, :, None, None]
            images = padded[batch, channel, rows, cols]
        images = self.normalize(images)
        if self.erase_p > 0:
            images = self._erase(images, uniform)
        return images

    def _erase(self, images: torch.Tensor, uniform) -> torch.Tensor:
        b, _, h, w = images.shape
        area = h * w * (0.02 + (0.33 - 0.02) * uniform(b))
        aspect = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * uniform(b))
        eh = torch.sqrt(area * aspect).round().clamp(1, h).long()
        ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
        top = (uniform(b) * (h - eh + 1)).long()
        left = (uniform(b) * (w - ew + 1)).long()
        rows = torch.arange(h, device=images.device)[None, :]
        cols = torch.arange(w, device=images.device)[None, :]
        inside = ((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None] & \
                 ((cols >= left[:, None]) & (cols < (left + ew)[:, None]))[:, None, :]
        erase = (uniform(b) < self.erase_p)[:, None, None] & inside
        return images.masked_fill(erase[:, None], 0.0)


class _InMemory:
    """Shared by both loaders: the bank, the sampler, per-epoch seeded augmentation."""

    def __init__(self, images: torch.Tensor, samples: list[Sample], sampler, batch_size: int,
                 augment: DeviceAugment | None, seed: int = 0, drop_last: bool = True):
        self.images, self.sampler, self.batch_size = images, sampler, batch_size
        self.drop_last = drop_last  # training: whole batches only; evaluation: every image
        self.pids = torch.tensor([s.pid for s in samples], device=images.device)
        self.camids = torch.tensor([s.camid for s in samples], device=images.device)
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.augment_fn = augment or DeviceAugment(*images.shape[-2:], 0, 0, 0)

    def __len__(self) -> int:
        return (len(self.sampler) // self.batch_size if self.drop_last
                else math.ceil(len(self.sampler) / self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _generator(self) -> torch.Generator:
        generator = torch.Generator(device=self.images.device)
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1  # a loader iterated again without set_epoch gets new augmentations
        return generator

    def _pictures(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raw = self.images[index]
        return self.augment_fn(raw, generator) if self.augment else self.augment_fn.normalize(raw)


class InMemoryLoader(_InMemory):
    """Identity batches (image, pid, camid, index) from a bank, in ``sampler``'s order."""

    def __iter__(self):
        generator = self._generator()
        order = torch.tensor(list(iter(self.sampler)), device=self.images.device)
        for k in range(len(self)):
            index = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield {"image": self._pictures(index, generator), "pid": self.pids[index],
                   "camid": self.camids[index], "index": index}


class InMemoryPairLoader(_InMemory):
    """Pair batches (image1, image2, pid1, pid2, camid1, camid2, same) from a bank."""

    def __iter__(self):
        generator = self._generator()
        pairs = torch.tensor(list(iter(self.sampler)), device=self.images.device).view(-1, 2)
        for k in range(len(self)):
            i, j = pairs[k * self.batch_size:(k + 1) * self.batch_size].unbind(1)
            yield {"image1": self._pictures(i, generator), "image2": self._pictures(j, generator),
                   "pid1": self.pids[i], "pid2": self.pids[j], "camid1": self.camids[i],
                   "camid2": self.camids[j], "same": (self.pids[i] == self.pids[j]).long()}
