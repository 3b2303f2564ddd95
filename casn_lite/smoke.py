"""Smoke runs: a profile's GPU code path on the CPU at tiny sizes, and its GPU time estimated.

    python -m casn_lite reproduce --profile gpu --smoke [--arch pcb] [--jobs 2]

keeps every setting of the profile (backbone, optimizer, AMP, channels_last, loaders,
variants) but shrinks the data (``SMOKE_SIZES``, input sizes divided by ``SHRINK``, two
seeds at most) and trains each ``fit`` call for one epoch. In each notebook's kernel,
``emulate_gpu_path`` makes the CPU take the branches a GPU takes: bf16 autocast around
training, channels_last weights, and the uint8 in-memory loaders augmented on the device.
So a crash that the first GPU run would meet after minutes of data generation shows up here
in minutes on a laptop.

Each ``fit`` call appends one line to a log (its loss, steps, seconds per step, and the
epochs the full profile would train); ``estimate`` turns them into the full profile's
training time on a GPU: steps scaled to the full data, epochs and seeds, each variant's step
cost relative to the IDE step as measured, and an IDE step at ``GPU_IMAGES_PER_S`` (an
assumption until ``benchmarks/train_throughput.py --device cuda`` measures it).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

__all__ = ["SMOKE_SIZES", "SHRINK", "GPU_IMAGES_PER_S", "smoke_parameters", "kernel_arguments",
           "emulate_gpu_path", "estimate", "estimate_report"]

SMOKE_SIZES = {"train_ids": 8, "test_ids": 8, "images_per_camera": 2, "batch_size": 16, "num_instances": 4,
               "pairs_per_batch": 4}
SHRINK = 4  # input sizes divided by this (PCB's 384 x 128 becomes 96 x 32, its smallest)
MAX_SEEDS = 2  # enough to exercise the spread over seeds
# Assumed images per second of an IDE training step (ResNet-50, 256 x 128, last stride 1, bf16,
# channels_last, in-memory batches) on one H100; other input sizes scale by their pixels.
GPU_IMAGES_PER_S = 2000.0
REFERENCE_PIXELS = 256 * 128


def smoke_parameters(parameters: dict, names: set[str]) -> dict:
    """A notebook's parameters for a smoke run: the profile's, with tiny data and inputs
    (epochs stay: ``emulate_gpu_path`` trains one epoch and logs what the full run would)."""
    small = dict(parameters)
    small.update({k: v for k, v in SMOKE_SIZES.items() if k in names})
    for key in ("height", "width"):
        if key in parameters:
            small[key] = max(16 if key == "width" else 32, int(parameters[key]) // SHRINK)
    if isinstance(parameters.get("seeds"), list):
        small["seeds"] = parameters["seeds"][:MAX_SEEDS]
    if "results_dir" in names:
        small["results_dir"] = None  # never write a smoke run into results/
    return small


def kernel_arguments(log: Path, notebook: str) -> list[str]:
    """IPython kernel options that call ``emulate_gpu_path`` before the notebook's first cell."""
    line = f"from casn_lite.smoke import emulate_gpu_path; emulate_gpu_path({str(log)!r}, {notebook!r})"
    return [f"--IPKernelApp.exec_lines={line}"]


def emulate_gpu_path(log: str, notebook: str) -> None:
    """In a notebook's kernel: take the GPU's branches on the CPU (bf16 autocast, channels_last,
    in-memory uint8 loaders), train one epoch per ``fit`` and log its step cost."""
    import torch

    from . import engine
    from .data import loaders

    real_fit, real_use_memory = engine.fit, loaders._use_memory

    def use_memory(in_memory, *args, **kwargs) -> bool:
        return True if in_memory == "auto" else real_use_memory(in_memory, *args, **kwargs)

    def fit(model, loader, cfg, loss_fn=None, device=None, eval_fn=None):
        loss_fn = loss_fn if loss_fn is not None else engine.default_loss()
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        quiet_eval = None if eval_fn is None else (lambda m: _without_autocast(eval_fn, m))
        tic = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp):
            history = real_fit(model, loader, replace(cfg, epochs=min(cfg.epochs, 1)), loss_fn, device, quiet_eval)
        _log_step_cost(log, notebook, cfg, loader, loss_fn, history, time.perf_counter() - tic)
        return history

    loaders._use_memory = use_memory
    engine.fit = fit
    from . import ablation, train  # modules that imported fit by name

    ablation.fit = train.fit = fit


def _without_autocast(eval_fn, model):
    import torch

    with torch.autocast("cpu", enabled=False):
        return eval_fn(model)


def _log_step_cost(log: str, notebook: str, cfg, loader, loss_fn, history: list[dict], seconds: float) -> None:
    """One JSON line per fit call: what trained, how long a step took, how long the full run trains."""
    from .engine import _describe_loss

    steps = len(loader) * max(1, len(history))
    trained = sum(h["seconds"] for h in history)
    batch = getattr(getattr(loader, "identity_loader", loader), "batch_size", None)
    record = {"notebook": notebook, "loss": _describe_loss(loss_fn), "full_epochs": cfg.epochs,
              "steps_per_epoch": len(loader), "batch_size": batch, "seconds_per_step": trained / max(1, steps),
              "wall_seconds": seconds}
    with open(log, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _is_ide(loss: str) -> bool:
    return "ia=False" in loss and "sa=False" in loss


def estimate(records: list[dict], full: dict[str, dict], small: dict[str, dict]) -> dict:
    """The full profile's GPU training time from the smoke run's logged steps.

    ``full`` and ``small``: each notebook's parameters in the profile and in the smoke run."""
    ide = [r["seconds_per_step"] for r in records if _is_ide(r["loss"])]
    ide_cost = sum(ide) / len(ide) if ide else None
    per_notebook: dict[str, dict] = {}
    for r in records:
        f, s = full[r["notebook"]], small[r["notebook"]]
        data = (f.get("train_ids", 1) * f.get("images_per_camera", 1)) / (
            s.get("train_ids", 1) * s.get("images_per_camera", 1))
        batch = s.get("batch_size", 1) / f.get("batch_size", 1)
        seeds = len(f["seeds"]) / len(s["seeds"]) if isinstance(f.get("seeds"), list) else 1.0
        steps = r["full_epochs"] * r["steps_per_epoch"] * data * batch * seeds
        relative = r["seconds_per_step"] / ide_cost if ide_cost else 1.0
        pixels = f.get("height", 256) * f.get("width", 128) / REFERENCE_PIXELS
        ide_step = f.get("batch_size", 64) * pixels / GPU_IMAGES_PER_S
        mine = per_notebook.setdefault(r["notebook"], {"steps": 0.0, "seconds": 0.0})
        mine["steps"] += steps
        mine["seconds"] += steps * relative * ide_step
    return {"notebooks": per_notebook, "seconds": sum(n["seconds"] for n in per_notebook.values()),
            "gpu_images_per_s": GPU_IMAGES_PER_S, "ide_seconds_per_step_here": ide_cost}


def estimate_report(result: dict, profile: str) -> str:
    """A few lines: the estimate per notebook and in all, with what it assumes."""
    lines = [f"\nGPU estimate for profile {profile!r} (training only, from this run's step costs):"]
    for notebook, n in sorted(result["notebooks"].items()):
        lines.append(f"  {notebook}: {n['steps']:,.0f} steps, about {n['seconds'] / 60:.1f} min")
    lines.append(f"  in all: about {result['seconds'] / 60:.1f} min, assuming an IDE step runs at "
                 f"{result['gpu_images_per_s']:.0f} images/s at 256 x 128 on the GPU (to be measured: "
                 "benchmarks/train_throughput.py --device cuda); add data generation and evaluation")
    return "\n".join(lines)
