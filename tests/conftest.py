"""Shared fixtures: one tiny SynthPeople set per test session.

``make test`` runs the tests in pytest-xdist workers, one per core. Each worker, and the processes it
starts (kernels, torchrun), uses one thread: two workers with two threads each on two cores
would slow each other down far more than they gain. This file imports nothing heavy, so
the process that only hands out the tests starts at once.
"""

import os
import sys

import pytest

# jsonschema (under nbformat and papermill) imports this optional IRI checker when it is
# installed, and building its grammars costs each process about 1.7 s; no test here
# validates an IRI. (The unit tests run with -p no:nbval, so nothing imported it before.)
sys.modules.setdefault("rfc3987_syntax", None)

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """(root, meta) of a tiny generated set, shared by every test that only reads it."""
    from casn_lite.data.synth import generate

    from .support import TINY

    root = tmp_path_factory.mktemp("synth")
    meta = generate(root, TINY, progress=False)
    return root, meta
