"""Helpers shared by tests (not fixtures)."""

import socket

from casn_lite.data.synth import SynthConfig

# the tiny SynthPeople set of the ``tiny_synth`` fixture (conftest.py)
TINY = SynthConfig(train_ids=8, test_ids=7, cameras=3, images_per_camera=2, height=64, width=32,
                   distractors=4, junk=3, seed=3)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_example(path, *argv: str) -> int:
    """Run an example script's ``main()`` in this process, as ``python path argv...`` would,
    and return its exit status (argparse's errors included); no interpreter start-up."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"example_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    saved, sys.argv = sys.argv, [str(path), *map(str, argv)]
    try:
        return module.main()
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = saved


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (``name`` without ``.py``), to test its functions."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def masked_pairs(root, batch_size: int) -> dict:
    """One batch of cross-camera test pairs (half same person) with their masks, from the
    SynthPeople set in ``root`` at 64 x 32: what the attention-metric tests measure on."""
    import torch

    from casn_lite.data import (
        ImageDataset,
        PairDataset,
        PairSampler,
        build_transforms,
        load_dataset,
    )

    data = load_dataset("synthpeople", root)
    images = ImageDataset(data.query + data.gallery, build_transforms(64, 32), mask_of=data.mask_path)
    sampler = PairSampler(images.pids, images.camids, batch_size, 0.5, seed=0)
    return next(iter(torch.utils.data.DataLoader(PairDataset(images), batch_size=batch_size, sampler=sampler)))
