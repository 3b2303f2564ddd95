"""Identity (P x K) and pair samplers: structure, coverage and seeding."""

import numpy as np
import pytest

from casn_lite.data import IdentitySampler, PairSampler

# 10 identities with 1..7 images each, seen by up to 3 cameras
PIDS = [p for p in range(10) for _ in range(1 + p % 7)]
CAMS = [i % 3 for i in range(len(PIDS))]


def test_identity_batches_are_p_identities_times_k_images():
    sampler = IdentitySampler(PIDS, batch_size=12, num_instances=3, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler)
    assert set(order) == set(range(len(PIDS))), "every image is used each epoch"
    full = len(order) // 12 - 1  # the last batch may hold left-over identities
    for b in range(full):
        batch = [PIDS[i] for i in order[b * 12:(b + 1) * 12]]
        groups = [batch[k:k + 3] for k in range(0, 12, 3)]
        assert all(len(set(g)) == 1 for g in groups), "each group of K shows one identity"
        assert len({g[0] for g in groups}) == 4, "P different identities per batch"


def test_identity_sampler_is_seeded_per_epoch():
    a = IdentitySampler(PIDS, 12, 3, seed=1)
    b = IdentitySampler(PIDS, 12, 3, seed=1)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b), "same seed, same order, epoch by epoch"
    assert first != second, "a new epoch reshuffles"
    b.set_epoch(1)
    assert list(b) == second
    assert list(IdentitySampler(PIDS, 12, 3, seed=2)) != first


def test_identity_sampler_refuses_impossible_batches():
    with pytest.raises(ValueError, match="multiple"):
        IdentitySampler(PIDS, batch_size=10, num_instances=4)
    with pytest.raises(ValueError, match="identities"):
        IdentitySampler([0, 0, 1, 1], batch_size=12, num_instances=2)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_pairs_have_the_requested_positive_share(fraction):
    pairs = list(PairSampler(PIDS, CAMS, num_pairs=200, positive_fraction=fraction, seed=0))
    pids = np.array(PIDS)
    same = [pids[i] == pids[j] for i, j in pairs]
    assert len(pairs) == 200 and sum(same) == round(200 * fraction)
    assert all(i != j for i, j in pairs)


def test_positive_pairs_cross_cameras_when_they_can():
    pairs = list(PairSampler(PIDS, CAMS, num_pairs=300, positive_fraction=1.0, seed=4))
    pids, cams = np.array(PIDS), np.array(CAMS)
    for i, j in pairs:
        other_cams = set(cams[(pids == pids[i])]) - {cams[i]}
        if other_cams:
            assert cams[i] != cams[j]


def test_pair_sampler_is_seeded():
    a = PairSampler(PIDS, CAMS, 50, seed=7)
    assert list(a) == list(PairSampler(PIDS, CAMS, 50, seed=7))
    assert list(a) != list(PairSampler(PIDS, CAMS, 50, seed=7))  # a's second epoch


def test_sharded_samplers_split_an_epoch_without_overlap():
    pids = [p for p in range(12) for _ in range(5)]
    full = list(IdentitySampler(pids, 8, 2, seed=1))
    shards = [list(IdentitySampler(pids, 8, 2, seed=1).shard(r, 2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(IdentitySampler(pids, 8, 2, seed=1).shard(0, 2))
    batches = [full[i:i + 8] for i in range(0, len(full), 8)]
    assert [shards[0][i:i + 8] for i in range(0, len(shards[0]), 8)] == batches[0::2][:len(batches) // 2]
    assert [shards[1][i:i + 8] for i in range(0, len(shards[1]), 8)] == batches[1::2][:len(batches) // 2]
    cams = [i % 3 for i in range(len(pids))]
    pair_shards = [list(PairSampler(pids, cams, 10, seed=0).shard(r, 2)) for r in range(2)]
    assert len(pair_shards[0]) == len(pair_shards[1]) == 5
    assert sorted(pair_shards[0] + pair_shards[1]) == sorted(PairSampler(pids, cams, 10, seed=0))


def test_an_evaluation_pair_sampler_draws_the_same_pairs_every_time():
    fixed = PairSampler(PIDS, CAMS, 20, seed=4, reshuffle=False)
    first = list(fixed)
    assert list(fixed) == first and list(fixed) == first, "iterated again: the same pairs"
    training = PairSampler(PIDS, CAMS, 20, seed=4)
    assert list(training) == first, "the same draw as a training sampler's first epoch"
    assert list(training) != first, "a training sampler reshuffles every epoch"
