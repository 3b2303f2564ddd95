"""Training throughput: the project's engine against a bare loop on the same model.

    python benchmarks/train_throughput.py                      # CPU: the cpu profile's setting (128 x 64)
    python benchmarks/train_throughput.py --device cuda        # GPU: ResNet-50, 256 x 128, batch 128
    python benchmarks/train_throughput.py --profile            # where an IDE step spends its time
    python benchmarks/train_throughput.py --breakdown          # each part of a CASN step, timed on its own

For fp32 and then the fast setting (on CUDA bf16 autocast with channels_last, on CPU
channels_last alone: the cpu profile's runtime), in one run, it prints images
per second of

* ``bare``: forward, cross-entropy, backward and an optimizer step on random tensors
  already on the device: the practical ceiling of the model itself;
* ``IDE``: one epoch of ``casn_lite.engine.fit`` with ``CASNLoss(ia=False, sa=False)`` on
  SynthPeople, data pipeline included (the second epoch is timed, after a warm-up epoch);
* ``CASN``: the same with ``CASNLoss(ia=True, sa=True)``: two Grad-CAM passes, the masked
  pass and the pair batch. Counted in identity-batch images, so it compares steps per second;

and the ratios IDE / bare and CASN / IDE (issue 7's targets on a GPU: >= 0.90 and >= 0.5).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from casn_lite.ablation import variant_loss
from casn_lite.data import SynthConfig, load_or_generate, pair_loader, reid_loaders
from casn_lite.engine import JointLoader, Runtime, TrainConfig, fit, make_optimizer, set_epoch
from casn_lite.models import build_model


class FirstSteps:
    """The first ``steps`` batches of a loader, as a loader (set_epoch passed through)."""

    def __init__(self, loader, steps: int):
        self.loader, self.steps = loader, min(steps, len(loader))

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.loader, epoch)

    def __iter__(self):
        for step, batch in enumerate(self.loader):
            if step == self.steps:
                break
            yield batch


def bare_loop(model, batch_size, size, device, amp, channels_last, steps, warmup) -> float:
    """Images per second of forward + loss + backward + step on tensors already on the device."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, TrainConfig(optimizer="adam", lr=1e-4))
    images = torch.randn(batch_size, 3, *size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    pids = torch.randint(0, model.build_args["num_classes"], (batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(model(images).logits, pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - tic)


def runtime(amp: bool, channels_last: bool) -> Runtime:
    """bf16 autocast and channels_last on (wherever the run is) or off."""
    return Runtime(amp="always" if amp else "never", channels_last="always" if channels_last else "never")


def engine_epoch(model, loader, loss_fn, device, amp, channels_last) -> float:
    """Images per second of fit's second epoch (the first warms up), as fit measures it."""
    cfg = TrainConfig(epochs=2, optimizer="adam", lr=1e-4, runtime=runtime(amp, channels_last),
                      progress=False, schedule="constant")
    history = fit(model, loader, cfg, loss_fn, device)
    return history[-1]["images_per_s"]


def profile_ide(model, loader, device, amp):
    """torch.profiler over a few IDE steps of fit: the operators that take the time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    cfg = TrainConfig(epochs=1, optimizer="adam", lr=1e-4, runtime=runtime(amp, False), progress=False,
                      schedule="constant")
    with profile(activities=activities) as prof:
        fit(model, loader, cfg, variant_loss("IDE"), device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backbone", help="default: resnet18 on CPU, resnet50 on CUDA")
    parser.add_argument("--height", type=int, help="default: 128 on CPU (the cpu profile), 256 on CUDA")
    parser.add_argument("--width", type=int, help="default: 64 on CPU, 128 on CUDA")
    parser.add_argument("--batch-size", type=int, help="default: 32 on CPU, 128 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 10 CPU, 50 CUDA)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 0 CPU, 8 CUDA)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table for IDE steps")
    parser.add_argument("--breakdown", action="store_true",
                        help="time each part of a CASN step on its own (benchmarks/step_breakdown.py)")
    args = parser.parse_args()
    if args.breakdown:
        from step_breakdown import main as breakdown

        sizes = {"--height": args.height or 128, "--width": args.width or 64, "--batch-size": args.batch_size or 32,
                 "--device": args.device, "--steps": args.steps or 6}
        breakdown([str(v) for pair in sizes.items() for v in pair])
        return
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here")
    device = torch.device(args.device)
    backbone = args.backbone or ("resnet50" if cuda else "resnet18")
    height, width = args.height or (256 if cuda else 128), args.width or (128 if cuda else 64)
    batch_size = args.batch_size or (128 if cuda else 32)
    steps = args.steps or (50 if cuda else 10)
    workers = args.workers if args.workers is not None else (8 if cuda else 0)

    # enough training images for `steps` identity batches
    ids = max(64, steps * batch_size // 16 + 1)
    data = load_or_generate(None, SynthConfig(train_ids=ids, test_ids=16, cameras=4, images_per_camera=4,
                                              height=max(128, height), width=max(64, width), seed=0))
    loaders = reid_loaders(data, height, width, batch_size, 4, seed=0, num_workers=workers)
    pairs = pair_loader(data, height, width, batch_size // 4, len(loaders.train), seed=0, num_workers=workers)
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {backbone} {height}x{width}, batch {batch_size} "
          f"(+{batch_size // 4} pairs for CASN); {steps} timed steps; {workers} workers; {os.cpu_count()} CPUs")

    def model():
        torch.manual_seed(0)
        return build_model("ide", backbone, num_classes=data.num_train_pids)

    if args.profile:
        profile_ide(model(), FirstSteps(loaders.train, min(steps, 5)), device, amp=False)
        return
    # CPU: the contiguous layout (before) and channels_last (the cpu profile's runtime), one run
    settings = [("fp32", False, False), ("bf16 + channels_last", True, True)] if cuda else \
        [("fp32", False, False), ("fp32 + channels_last", False, True)]
    print(f"{'precision':<22}{'bare':>10}{'IDE':>10}{'CASN':>10}{'IDE/bare':>10}{'CASN/IDE':>10}   (images/s)")
    rows = []
    for label, amp, channels_last in settings:
        bare = bare_loop(model(), batch_size, (height, width), device, amp, channels_last, steps, warmup=3)
        ide = engine_epoch(model(), FirstSteps(loaders.train, steps), variant_loss("IDE"), device, amp, channels_last)
        joint = FirstSteps(JointLoader(loaders.train, pairs), steps)
        casn = engine_epoch(model(), joint, variant_loss("CASN(IDE)", feature_dim=512), device, amp, channels_last)
        print(f"{label:<22}{bare:>10.0f}{ide:>10.0f}{casn:>10.0f}{ide / bare:>10.2f}{casn / ide:>10.2f}")
        rows.append((label, bare, ide, casn))
    (first, bare0, ide0, casn0), (second, _, ide1, casn1) = rows
    print(f"{second} against {first}: IDE x{ide1 / ide0:.2f}, CASN x{casn1 / casn0:.2f}; "
          f"IDE ({second}) / bare ({first}): {ide1 / bare0:.2f}")


if __name__ == "__main__":
    main()
