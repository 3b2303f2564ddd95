"""Seeded samplers: identity-balanced batches (P identities x K images) and image pairs.

Training samplers reshuffle every epoch from ``seed + epoch``: iterate again (or call
``set_epoch``) and you get the next epoch's order; the same seed and epoch always
give the same order, so a resumed run sees the batches it would have seen. An
evaluation sampler (``PairSampler(..., reshuffle=False)``) draws the same pairs every
time it is iterated, so every model of a comparison is measured on identical pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["IdentitySampler", "PairSampler"]


class _EpochSeeded:
    """Shared bookkeeping: a seed, an epoch counter, a generator per epoch."""

    def __init__(self, seed: int, reshuffle: bool = True):
        self.seed = seed
        self.epoch = 0
        self.reshuffle = reshuffle  # False: every iteration draws epoch 0's order again
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int):
        """Under torchrun: keep this process's share of each epoch (every ``world``-th batch,
        starting at ``rank``; every process the same number). Returns the sampler."""
        self.rank, self.world = rank, world
        return self

    def _share(self, items: list, unit: int) -> list:
        """This process's blocks of ``unit`` items (all of them when not sharded)."""
        if self.world == 1:
            return items
        blocks = [items[i:i + unit] for i in range(0, len(items) - unit + 1, unit)]
        mine = blocks[self.rank::self.world][:len(blocks) // self.world]
        return [x for block in mine for x in block]

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch``'s order."""
        self.epoch = epoch

    def _next_rng(self) -> np.random.Generator:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.reshuffle:
            self.epoch += 1
        return rng


class IdentitySampler(_EpochSeeded, Sampler[int]):
    """Indices in groups of ``num_instances`` images of one identity, ``batch_size // num_instances``
    identities per batch (the P x K sampling of re-ID training). An identity whose image count
    is not a multiple of K is topped up by drawing its images again, so every image is used at
    least once per epoch."""

    def __init__(self, pids: Sequence[int], batch_size: int = 32, num_instances: int = 4, seed: int = 0):
        if batch_size % num_instances:
            raise ValueError(f"batch_size {batch_size} must be a multiple of num_instances {num_instances}")
        _EpochSeeded.__init__(self, seed)
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.ids_per_batch = batch_size // num_instances
        self.index_of: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.index_of[int(pid)].append(i)
        if len(self.index_of) < self.ids_per_batch:
            raise ValueError(f"{len(self.index_of)} identities cannot fill {self.ids_per_batch} per batch "
                             f"(batch_size {batch_size} / num_instances {num_instances}); lower batch_size "
                             "or raise num_instances (train: --batch-size, --num-instances)")
        k = num_instances
        self._length = sum(-(-len(v) // k) * k for v in self.index_of.values())  # ceil to a multiple of K

    def _groups(self, rng: np.random.Generator) -> dict[int, list[list[int]]]:
        """Each identity's images, shuffled, topped up to a multiple of K by drawing again, in groups of K."""
        groups = {}
        k = self.num_instances
        for pid, idx in self.index_of.items():
            idx = list(rng.permutation(idx))
            if len(idx) % k:
                idx += list(rng.choice(idx, k - len(idx) % k))
            groups[pid] = [idx[i:i + k] for i in range(0, len(idx), k)]
        return groups

    def __iter__(self) -> Iterator[int]:
        rng = self._next_rng()
        groups = self._groups(rng)
        out: list[int] = []
        while len(groups) >= self.ids_per_batch:
            for pid in rng.choice(sorted(groups), self.ids_per_batch, replace=False):
                out.extend(int(i) for i in groups[pid].pop())
                if not groups[pid]:
                    del groups[pid]
        # fewer identities than a batch needs remain: use their groups too, so that every
        # image is seen each epoch (the last batch may then repeat an identity)
        for pid in sorted(groups):
            for g in groups[pid]:
                out.extend(int(i) for i in g)
        return iter(self._share(out, self.batch_size))

    def __len__(self) -> int:
        if self.world == 1:
            return self._length
        return self._length // self.batch_size // self.world * self.batch_size


class PairSampler(_EpochSeeded, Sampler[tuple[int, int]]):
    """``num_pairs`` index pairs ``(i, j)`` per epoch, a ``positive_fraction`` of them showing the
    same identity. With ``cross_camera``, every pair comes from two different cameras whenever
    it can: positives (what Siamese re-ID training is for) and negatives alike, so the camera
    does not tell them apart. ``reshuffle=False`` (evaluation): the same pairs on every
    iteration, unless ``set_epoch`` asks for another draw."""

    def __init__(self, pids: Sequence[int], camids: Sequence[int], num_pairs: int,
                 positive_fraction: float = 0.5, cross_camera: bool = True, seed: int = 0,
                 reshuffle: bool = True):
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError("positive_fraction must be in [0, 1]")
        _EpochSeeded.__init__(self, seed, reshuffle)
        self.pids = np.asarray(pids)
        self.camids = np.asarray(camids)
        self.num_pairs = num_pairs
        self.num_positive = round(num_pairs * positive_fraction)
        self.cross_camera = cross_camera
        ids, counts = np.unique(self.pids, return_counts=True)
        self.repeated_ids = ids[counts >= 2]
        if self.num_positive and len(self.repeated_ids) == 0:
            raise ValueError("no identity has two images, so no positive pair can be drawn")
        if self.num_positive < num_pairs and len(ids) < 2:
            raise ValueError("a negative pair needs at least two identities")

    def _positive(self, rng: np.random.Generator) -> tuple[int, int]:
        pid = rng.choice(self.repeated_ids)
        idx = np.flatnonzero(self.pids == pid)
        i = rng.choice(idx)
        others = idx[idx != i]
        if self.cross_camera and (self.camids[others] != self.camids[i]).any():
            others = others[self.camids[others] != self.camids[i]]
        return int(i), int(rng.choice(others))

    def _negative(self, rng: np.random.Generator) -> tuple[int, int]:
        i = int(rng.integers(len(self.pids)))
        others = np.flatnonzero(self.pids != self.pids[i])
        # from another camera too, like the positives: otherwise a pair's camera would tell
        # negatives (sometimes one camera) from positives (always two)
        if self.cross_camera and (self.camids[others] != self.camids[i]).any():
            others = others[self.camids[others] != self.camids[i]]
        return i, int(rng.choice(others))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = self._next_rng()
        pairs = [self._positive(rng) for _ in range(self.num_positive)]
        pairs += [self._negative(rng) for _ in range(self.num_pairs - self.num_positive)]
        return iter(self._share([pairs[k] for k in rng.permutation(len(pairs))], 1))

    def __len__(self) -> int:
        return self.num_pairs // self.world
