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

# bf16 autocast with channels_last weights (the GPU's branches, which the smoke tests take on
# the CPU) gives NaN from the second training step on CPUs with AMX-BF16 (torch 2.14.1's
# oneDNN; measured on a Xeon with amx_bf16: fine with AVX512_CORE_BF16 or lower, and fine
# with either setting alone). The CPU never takes that path outside the smoke tests, so the
# tests cap oneDNN below AMX; a GPU is unaffected. Set before the first convolution, and
# inherited by the kernels and workers the tests start.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")

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
