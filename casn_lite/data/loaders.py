"""The loaders every training notebook builds, in one place (notebook 01 builds them by hand).

* ``reid_loaders``: P x K identity batches for training, plain query and gallery loaders;
* ``pair_loader``: batches of image pairs (half of them the same person, from two cameras)
  for CASN's Siamese branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import DataLoader

from .datasets import ImageDataset, PairDataset, ReIDData
from .samplers import IdentitySampler, PairSampler
from .transforms import build_transforms

__all__ = ["Loaders", "reid_loaders", "pair_loader"]


@dataclass
class Loaders:
    train: DataLoader  # P x K identity batches, augmented
    query: DataLoader
    gallery: DataLoader


def reid_loaders(data: ReIDData, height: int, width: int, batch_size: int = 32,
                 num_instances: int = 4, seed: int = 0, num_workers: int = 0,
                 eval_batch_size: int = 128) -> Loaders:
    """Training batches of ``batch_size / num_instances`` identities x ``num_instances``
    images (flip, pad-and-crop, random erasing); query and gallery only resized."""
    train_set = ImageDataset(data.train, build_transforms(height, width, train=True, pad=height // 16))
    sampler = IdentitySampler(train_set.pids, batch_size, num_instances, seed=seed)
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                       drop_last=True)
    test_tf = build_transforms(height, width)
    query = DataLoader(ImageDataset(data.query, test_tf), batch_size=eval_batch_size,
                       num_workers=num_workers)
    gallery = DataLoader(ImageDataset(data.gallery, test_tf), batch_size=eval_batch_size,
                         num_workers=num_workers)
    return Loaders(train, query, gallery)


def pair_loader(data: ReIDData, height: int, width: int, pairs_per_batch: int, num_batches: int,
                positive_fraction: float = 0.5, seed: int = 0, num_workers: int = 0,
                train: bool = True) -> DataLoader:
    """``num_batches`` batches of ``pairs_per_batch`` training pairs per epoch; positives come
    from two different cameras. Batches hold image1, image2, pid1, pid2 and same (0/1)."""
    images = ImageDataset(data.train, build_transforms(height, width, train=train, pad=height // 16))
    sampler = PairSampler(images.pids, images.camids, pairs_per_batch * num_batches,
                          positive_fraction, seed=seed)
    return DataLoader(PairDataset(images), batch_size=pairs_per_batch, sampler=sampler,
                      num_workers=num_workers, drop_last=True)
