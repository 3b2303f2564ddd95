"""The CPU's own speed-ups, measured: which settings make IDE and CASN steps faster here.

    python benchmarks/cpu_options.py [--height 128 --width 64] [--steps 8] [--only in-memory,channels-last]

Each option is one change against the baseline (fp32, the disk loaders: JPEG decoding and
PIL transforms in the loop, contiguous weights, torch's default threads), timed as
``train_throughput.py`` times the engine: images per second of ``fit``'s second epoch of
``--steps`` steps (the first warms up), IDE and CASN(IDE), ResNet-18, batch 32 + 8 pairs.
The bare loop (forward, loss, backward and step on random tensors already in memory) is
printed first: the figure issue 26 compares against.

* ``in-memory``: the training images decoded once into uint8 tensors and augmented by
  tensor operations (``Runtime(in_memory=True)``, what a GPU uses);
* ``channels-last``: weights and activations in channels_last (``Runtime(channels_last="always")``);
* ``threads-1``: one intra-op thread instead of the default;
* ``bf16``: bf16 autocast around the training forward (``Runtime(amp="always")``, what a GPU
  uses): not a free speed-up, it changes the arithmetic (and with channels_last it gives NaN
  on CPUs with AMX-BF16, torch 2.14.1: ``tests/conftest.py``), but CPUs with AMX run bf16
  matrix products in hardware;
* ``compile``: the model wrapped in ``torch.compile`` (inductor; its compile time is left
  out of the timed epoch, and reported).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import FirstSteps, bare_loop  # noqa: E402

from casn_lite.ablation import variant_loss  # noqa: E402
from casn_lite.data import SynthConfig, load_or_generate, pair_loader, reid_loaders  # noqa: E402
from casn_lite.engine import JointLoader, Runtime, TrainConfig, fit  # noqa: E402
from casn_lite.models import build_model  # noqa: E402

OPTIONS = ("baseline", "in-memory", "channels-last", "in-memory+channels-last", "threads-1", "bf16", "compile")


def measure(option: str, data, args, device: torch.device) -> dict[str, float]:
    """Images per second of IDE and CASN(IDE) under one option."""
    threads = torch.get_num_threads()
    if option == "threads-1":
        torch.set_num_threads(1)
    try:
        in_memory = "in-memory" in option
        runtime = Runtime(in_memory=in_memory, channels_last="always" if "channels-last" in option else "never",
                          amp="always" if option == "bf16" else "never")
        loaders = reid_loaders(data, args.height, args.width, 32, 4, seed=0, in_memory=in_memory, device=device)
        pairs = pair_loader(data, args.height, args.width, 8, len(loaders.train), seed=0,
                            images=loaders.train_images)
        out = {}
        for name, loader in (("IDE", loaders.train), ("CASN(IDE)", JointLoader(loaders.train, pairs))):
            torch.manual_seed(0)
            model = build_model("ide", "resnet18", num_classes=data.num_train_pids)
            tic = time.perf_counter()
            if option == "compile":
                model = torch.compile(model)
            cfg = TrainConfig(epochs=2, optimizer="adam", lr=1e-4, runtime=runtime, progress=False,
                              schedule="constant")
            try:
                history = fit(model, FirstSteps(loader, args.steps), cfg,
                              variant_loss(name, feature_dim=512), device)
            except RuntimeError as err:  # torch.compile and Grad-CAM's autograd.grad of an inner output
                out[name], out[f"{name} first epoch s"] = float("nan"), float("nan")
                out[f"{name} error"] = str(err).splitlines()[0][:120]
                continue
            out[name] = history[-1]["images_per_s"]
            out[f"{name} first epoch s"] = history[0]["seconds"]
            out[f"{name} wall s"] = time.perf_counter() - tic
        return out
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(OPTIONS)}")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    chosen = args.only.split(",") if args.only else list(OPTIONS)
    ids = max(64, (args.steps + 2) * 32 // 16 + 1)
    data = load_or_generate(None, SynthConfig(train_ids=ids, test_ids=16, cameras=4, images_per_camera=4,
                                              height=max(128, args.height), width=max(64, args.width), seed=0))
    print(f"{platform.processor() or 'cpu'}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; torch "
          f"{torch.__version__}; ResNet-18 {args.height}x{args.width}, batch 32 (+8 pairs), fp32, {args.steps} steps")
    torch.manual_seed(0)
    bare = bare_loop(build_model("ide", "resnet18", num_classes=data.num_train_pids), 32, (args.height, args.width),
                     device, False, False, args.steps, warmup=2)
    print(f"bare loop: {bare:.1f} images/s")
    print(f"{'option':<26}{'IDE':>8}{'CASN':>8}{'IDE/bare':>10}{'CASN/IDE':>10}   (images/s; first epoch s)")
    for option in chosen:
        r = measure(option, data, args, device)
        print(f"{option:<26}{r['IDE']:>8.1f}{r['CASN(IDE)']:>8.1f}{r['IDE'] / bare:>10.2f}"
              f"{r['CASN(IDE)'] / r['IDE']:>10.2f}   ({r['IDE first epoch s']:.0f}, {r['CASN(IDE) first epoch s']:.0f})",
              flush=True)
        for name in ("IDE", "CASN(IDE)"):
            if f"{name} error" in r:
                print(f"    {name} fails under {option}: {r[f'{name} error']}")


if __name__ == "__main__":
    main()
