"""Smoke runs: a profile's GPU code path on the CPU at tiny sizes, and its GPU budget checked.

    python -m casn_lite reproduce --profile gpu --smoke [--arch pcb] [--jobs 2]

keeps every setting of the profile (backbone, optimizer, AMP, channels_last, loaders,
variants) but shrinks the data (``SMOKE_SIZES``, input sizes divided by ``SHRINK``, two
seeds at most) and trains each ``fit`` call for one epoch. In each notebook's kernel,
``emulate_gpu_path`` makes the CPU take the branches a GPU takes: bf16 autocast around
training, channels_last weights, and the uint8 in-memory loaders augmented on the device.
So a crash that the first GPU run would meet after minutes of data generation shows up here
in minutes on a laptop.

Each ``fit`` call appends one line to a log (its loss, whether it has IA and SA, steps,
seconds per step, and the epochs the full profile would train). The profile's GPU time is
worked out by ``casn_lite.tooling.budget`` from its parameters and measured GPU speeds; the log
checks the budget's plan of what each notebook trains (``plan_mismatches``). The IDE starts
of a smoke run are kept in its own folder (``<out>/start-cache``, emptied first), so that
every start the budget counts is trained, and logged, again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

__all__ = ["SMOKE_SIZES", "SHRINK", "smoke_parameters", "kernel_arguments", "emulate_gpu_path",
           "plan_mismatches"]

SMOKE_SIZES = {"train_ids": 8, "test_ids": 8, "images_per_camera": 2, "batch_size": 16, "num_instances": 4,
               "pairs_per_batch": 4}
SHRINK = 4  # input sizes divided by this (PCB's 384 x 128 becomes 96 x 32)
PCB_HEIGHT = 96  # PCB's smallest input: six stripes of conv5 need 6 rows (16 pixels each, last stride 1)
MAX_SEEDS = 2  # enough to exercise the spread over seeds


def smoke_parameters(parameters: dict, names: set[str]) -> dict:
    """A notebook's parameters for a smoke run: the profile's, with tiny data and inputs
    (epochs stay: ``emulate_gpu_path`` trains one epoch and logs what the full run would)."""
    small = dict(parameters)
    small.update({k: v for k, v in SMOKE_SIZES.items() if k in names})
    smallest = {"height": PCB_HEIGHT if parameters.get("arch") == "pcb" else 32, "width": 16}
    for key in ("height", "width"):
        if key in parameters:
            small[key] = max(smallest[key], int(parameters[key]) // SHRINK)
    if isinstance(parameters.get("seeds"), list):
        small["seeds"] = parameters["seeds"][:MAX_SEEDS]
    if "results_dir" in names:
        small["results_dir"] = None  # never write a smoke run into results/
    return small


def kernel_arguments(log: Path, notebook: str, start_cache: Path) -> list[str]:
    """IPython kernel options that call ``emulate_gpu_path`` before the notebook's first cell."""
    line = (f"from casn_lite.tooling.smoke import emulate_gpu_path; "
            f"emulate_gpu_path({str(log)!r}, {notebook!r}, {str(start_cache)!r})")
    return [f"--IPKernelApp.exec_lines={line}"]


def emulate_gpu_path(log: str, notebook: str, start_cache: str) -> None:
    """In a notebook's kernel: take the GPU's branches on the CPU (bf16 autocast, channels_last,
    in-memory uint8 loaders), keep IDE starts in ``start_cache``, train one epoch per ``fit``
    and log its step cost."""
    os.environ["CASN_LITE_CACHE"] = start_cache  # read when casn_lite.ablation is first imported, below
    import torch

    from .. import engine
    from ..data import loaders

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
    from .. import ablation  # (ablation and train_command import fit by name)
    from . import train_command

    ablation.fit = train_command.fit = fit


def _without_autocast(eval_fn, model):
    import torch

    with torch.autocast("cpu", enabled=False):
        return eval_fn(model)


def _log_step_cost(log: str, notebook: str, cfg, loader, loss_fn, history: list[dict], seconds: float) -> None:
    """One JSON line per fit call: what trained, how long a step took, how long the full run trains."""
    from ..engine import _describe_loss

    steps = len(loader) * max(1, len(history))
    trained = sum(h["seconds"] for h in history)
    batch = getattr(getattr(loader, "identity_loader", loader), "batch_size", None)
    record = {"notebook": notebook, "loss": _describe_loss(loss_fn), "ia": bool(getattr(loss_fn, "ia", False)),
              "sa": bool(getattr(loss_fn, "sa", False)), "full_epochs": cfg.epochs,
              "steps_per_epoch": len(loader), "batch_size": batch, "seconds_per_step": trained / max(1, steps),
              "wall_seconds": seconds}
    with open(log, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def plan_mismatches(budget, records: list[dict]) -> list[str]:
    """Where the smoke run's logged trainings differ from the ones ``budget`` counts (per
    notebook: IA, SA and epochs of each ``fit``); empty when the budget's plan of the
    notebooks (``budget.trainings``) is what they do."""
    out = []
    for part in budget.parts:
        if part.number is None:
            continue
        counted = sorted((t.ia, t.sa, t.epochs) for t in part.trainings)
        trained = sorted((r["ia"], r["sa"], r["full_epochs"]) for r in records if r["notebook"] == part.number)
        if counted != trained:
            out.append(f"{part.label}: the smoke run trained {_describe(trained)}, the budget counts "
                       f"{_describe(counted)} (casn_lite/tooling/budget.py: trainings)")
    return out


def _describe(trainings: list[tuple[bool, bool, int]]) -> str:
    names = {(False, False): "IDE", (True, False): "+IA", (False, True): "+SA", (True, True): "CASN"}
    return "[" + ", ".join(f"{names[ia, sa]} x {epochs} epochs" for ia, sa, epochs in trainings) + "]"
