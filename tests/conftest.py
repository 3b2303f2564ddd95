"""Shared fixtures: one tiny SynthPeople set per test session."""

import pytest

from casn_lite.data.synth import SynthConfig, generate

TINY = SynthConfig(train_ids=8, test_ids=7, cameras=3, images_per_camera=2, height=64, width=32,
                   distractors=4, junk=3, seed=3)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """(root, meta) of a tiny generated set, shared by every test that only reads it."""
    root = tmp_path_factory.mktemp("synth")
    meta = generate(root, TINY, progress=False)
    return root, meta
