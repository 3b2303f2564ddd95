"""The loaders every training notebook builds, in one place (notebook 01 builds them by hand).

* ``reid_loaders``: P x K identity batches for training, plain query and gallery loaders;
* ``pair_loader``: batches of image pairs (half of them the same person, from two cameras)
  for CASN's Siamese branch.

On a GPU (``in_memory="auto"``), when the images fit, they are decoded once into uint8
tensors on the GPU and augmented there (``casn_lite.data.memory``): the same batches, with
no decoding or CPU transforms in the training loop. Elsewhere: ``SeededDataLoader``s.

Either way a training batch is a function of the seed, the epoch and the step alone: its
order comes from the seeded sampler and its random augmentation from a generator seeded
by (seed, epoch, step), never from torch's global generator. So two variants trained with
one seed see identical augmented images at every step, whatever else their losses drew
(the extra passes' dropout, the Siamese head's warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..devices import default_device
from .datasets import ImageDataset, PairDataset, ReIDData
from .memory import DeviceAugment, InMemoryLoader, InMemoryPairLoader, bank_bytes, decode_all
from .samplers import IdentitySampler, PairSampler
from .transforms import build_transforms

__all__ = ["Loaders", "SeededDataLoader", "reid_loaders", "pair_loader", "test_pair_loader",
           "cross_camera_matches", "IN_MEMORY_LIMIT"]

IN_MEMORY_LIMIT = 4 * 2**30  # bytes of uint8 images "auto" keeps on the device


class SeededDataLoader(DataLoader):
    """A DataLoader whose random augmentation is drawn from its own seed, not from torch's
    global generator: batch ``step`` of epoch ``epoch`` is augmented with the CPU generator
    seeded by ``SeedSequence([seed, stream, epoch, step])`` inside ``fork_rng``, which then
    puts the global generator back as it was. (The transforms v2 draw from that generator.
    With worker processes the augmentation runs in the workers, whose seeds are drawn the
    same way when they start: the same for every run with this seed and ``num_workers``.)
    The epoch is the sampler's (``set_epoch``); ``stream`` keeps two loaders with one seed
    (identity batches, pair batches) from drawing the same augmentations."""

    def __init__(self, *args, augment_seed: int = 0, stream: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.augment_seed, self.stream = augment_seed, stream

    def _seed(self, *position: int) -> int:
        words = np.random.SeedSequence([self.augment_seed, self.stream, *position]).generate_state(2)
        return int(words[0]) << 32 | int(words[1])

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)  # read before the sampler moves to the next epoch
        with torch.random.fork_rng(devices=[]):  # the CPU generator only, as the transforms use
            torch.default_generator.manual_seed(self._seed(epoch))  # worker processes' seeds, if any
            batches = super().__iter__()
        step = 0
        while True:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(self._seed(epoch, step))
                batch = next(batches, None)
            if batch is None:
                return
            yield batch
            step += 1


@dataclass
class Loaders:
    train: DataLoader | InMemoryLoader  # P x K identity batches, augmented
    query: DataLoader | InMemoryLoader
    gallery: DataLoader | InMemoryLoader
    train_images: torch.Tensor | None = None  # the decoded training images, when in memory


def _use_memory(in_memory: bool | str, data: ReIDData, height: int, width: int,
                device: torch.device) -> bool:
    if in_memory != "auto":
        return bool(in_memory)
    total = len(data.train) + len(data.query) + len(data.gallery)
    return device.type == "cuda" and bank_bytes(total, height, width) <= IN_MEMORY_LIMIT


def reid_loaders(data: ReIDData, height: int, width: int, batch_size: int = 32,
                 num_instances: int = 4, seed: int = 0, num_workers: int = 0,
                 eval_batch_size: int = 128, in_memory: bool | str = "auto",
                 device: torch.device | str | None = None, erase_p: float = 0.5) -> Loaders:
    """Training batches of ``batch_size / num_instances`` identities x ``num_instances``
    images (flip, pad-and-crop, random erasing with probability ``erase_p``); query and
    gallery only resized. ``in_memory``: True, False, or "auto" (on a GPU, when the images fit)."""
    device = torch.device(device or default_device())
    sampler = IdentitySampler([s.pid for s in data.train], batch_size, num_instances, seed=seed)
    if _use_memory(in_memory, data, height, width, device):
        bank = decode_all(data.train, height, width, device)
        train = InMemoryLoader(bank, data.train, sampler, batch_size, DeviceAugment(height, width, erase_p=erase_p), seed)
        query, gallery = (InMemoryLoader(decode_all(s, height, width, device), s, range(len(s)),
                                         eval_batch_size, None, seed, drop_last=False)
                          for s in (data.query, data.gallery))
        return Loaders(train, query, gallery, bank)
    pin = device.type == "cuda"
    train_set = ImageDataset(data.train, build_transforms(height, width, train=True, erase_p=erase_p))
    train = SeededDataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                             drop_last=True, pin_memory=pin, persistent_workers=num_workers > 0,
                             augment_seed=seed, stream=0)
    test_tf = build_transforms(height, width)
    query = DataLoader(ImageDataset(data.query, test_tf), batch_size=eval_batch_size,
                       num_workers=num_workers, pin_memory=pin)
    gallery = DataLoader(ImageDataset(data.gallery, test_tf), batch_size=eval_batch_size,
                         num_workers=num_workers, pin_memory=pin)
    return Loaders(train, query, gallery)


def pair_loader(data: ReIDData, height: int, width: int, pairs_per_batch: int, num_batches: int,
                positive_fraction: float = 0.5, seed: int = 0, num_workers: int = 0,
                train: bool = True, images: torch.Tensor | None = None,
                erase_p: float = 0.5) -> DataLoader | InMemoryPairLoader:
    """``num_batches`` batches of ``pairs_per_batch`` training pairs per epoch; positives come
    from two different cameras. Batches hold image1, image2, pid1, pid2 and same (0/1).
    ``images``: the training images already decoded (``Loaders.train_images``): pairs are
    then cut from them on their device."""
    sampler = PairSampler([s.pid for s in data.train], [s.camid for s in data.train],
                          pairs_per_batch * num_batches, positive_fraction, seed=seed)
    if images is not None:
        augment = DeviceAugment(height, width, erase_p=erase_p) if train else None
        return InMemoryPairLoader(images, data.train, sampler, pairs_per_batch, augment, seed)
    dataset = ImageDataset(data.train, build_transforms(height, width, train=train, erase_p=erase_p))
    return SeededDataLoader(PairDataset(dataset), batch_size=pairs_per_batch, sampler=sampler,
                            num_workers=num_workers, drop_last=True, pin_memory=torch.cuda.is_available(),
                            augment_seed=seed, stream=1)


def test_pair_loader(data: ReIDData, height: int, width: int, num_pairs: int, batch_size: int = 32,
                     seed: int = 0) -> DataLoader:
    """``num_pairs`` pairs of test images (query + gallery), half of them one person and half
    two people, each pair from two cameras, resized only; with SynthPeople's masks (mask1,
    mask2) when there are any. Distractors (pid 0) and junk (pid -1) are left out.

    The pairs are fixed: every iteration yields the same pairs, so models measured on one
    loader are measured on identical images."""
    people = [s for s in data.query + data.gallery if s.pid > 0]
    images = ImageDataset(people, build_transforms(height, width),
                          mask_of=data.mask_path if data.name == "SynthPeople" else None)
    sampler = PairSampler(images.pids, images.camids, num_pairs, 0.5, seed=seed, reshuffle=False)
    return DataLoader(PairDataset(images), batch_size=batch_size, sampler=sampler)


def cross_camera_matches(data: ReIDData, height: int, width: int, count: int = 4) -> dict:
    """The first ``count`` test people with a query image and a gallery image of them from
    another camera: {"query": [count, 3, H, W], "match": same, "pid": [count]}, and on
    SynthPeople their masks, "query_mask" and "match_mask" [count, H, W]."""
    tf = build_transforms(height, width)
    mask_of = data.mask_path if data.name == "SynthPeople" else None
    queries, galleries = ImageDataset(data.query, tf, mask_of=mask_of), ImageDataset(data.gallery, tf, mask_of=mask_of)
    seen = set()
    picked = []
    for qi, q in enumerate(data.query):
        gi = next((i for i, s in enumerate(data.gallery) if s.pid == q.pid and s.camid != q.camid), None)
        if gi is not None and q.pid not in seen and len(picked) < count:
            picked.append((qi, gi))
            seen.add(q.pid)
    out = {"query": torch.stack([queries[qi]["image"] for qi, _ in picked]),
           "match": torch.stack([galleries[gi]["image"] for _, gi in picked]),
           "pid": torch.tensor([data.query[qi].pid for qi, _ in picked])}
    if mask_of is not None:
        out["query_mask"] = torch.stack([queries[qi]["mask"] for qi, _ in picked])
        out["match_mask"] = torch.stack([galleries[gi]["mask"] for _, gi in picked])
    return out
