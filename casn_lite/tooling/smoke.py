"""Smoke runs: a profile's GPU code path on the CPU at tiny sizes, and its GPU budget checked.

    python -m casn_lite reproduce --profile gpu --smoke [--arch pcb] [--jobs 2]

keeps every setting of the profile (backbone, optimizer, loaders, variants) but shrinks the
data (``SMOKE_SIZES``, input sizes divided by ``SHRINK``, two seeds at most) and sets each
notebook's ``runtime`` parameter (``casn_lite.engine.Runtime``) so that the CPU takes the
branches a GPU takes: bf16 autocast around training, channels_last weights, the uint8
in-memory loaders augmented on the device; one epoch per run (``max_epochs``), and each
run's step cost logged (``step_log``). Nothing is replaced at run time: a smoke run runs
the code a GPU run runs, with other settings. So a crash that the first GPU run would meet
after minutes of data generation shows up here in minutes on a laptop.

Each run appends one line to the log (its loss, whether it has IA and SA, steps, seconds
per step, and the epochs the full profile would train). The profile's GPU time is worked
out by ``casn_lite.tooling.budget`` from its parameters and measured GPU speeds; the log
checks the budget's plan of what each notebook trains (``plan_mismatches``). The IDE starts
of a smoke run are kept in its own folder (``<out>/start-cache``, emptied first, named to
the kernels by ``CASN_LITE_CACHE``), so that every start the budget counts is trained, and
logged, again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SMOKE_SIZES", "SHRINK", "smoke_parameters", "smoke_runtime", "start_cache", "plan_mismatches"]

SMOKE_SIZES = {"train_ids": 8, "test_ids": 8, "images_per_camera": 2, "batch_size": 16, "num_instances": 4,
               "pairs_per_batch": 4}
SHRINK = 4  # input sizes divided by this (PCB's 384 x 128 becomes 96 x 32)
PCB_HEIGHT = 96  # PCB's smallest input: six stripes of conv5 need 6 rows (16 pixels each, last stride 1)
MAX_SEEDS = 2  # enough to exercise the spread over seeds


def smoke_parameters(parameters: dict, names: set[str], log: Path, notebook: str) -> dict:
    """A notebook's parameters for a smoke run: the profile's, with tiny data and inputs and
    the smoke run's ``runtime`` (epochs stay: the runtime trains one epoch of each run and
    logs what the full run would)."""
    small = dict(parameters)
    small.update({k: v for k, v in SMOKE_SIZES.items() if k in names})
    smallest = {"height": PCB_HEIGHT if parameters.get("arch") == "pcb" else 32, "width": 16}
    for key in ("height", "width"):
        if key in parameters:
            small[key] = max(smallest[key], int(parameters[key]) // SHRINK)
    if isinstance(parameters.get("seeds"), list):
        small["seeds"] = parameters["seeds"][:MAX_SEEDS]
    if isinstance(parameters.get("more_seeds"), list):  # 02-04: `seed` and these
        small["more_seeds"] = parameters["more_seeds"][:MAX_SEEDS - 1]
    if "results_dir" in names:
        small["results_dir"] = None  # never write a smoke run into results/
    if "runtime" in names:
        small["runtime"] = smoke_runtime(parameters.get("runtime") or {}, log, notebook)
    return small


def smoke_runtime(runtime: dict, log: Path, notebook: str) -> dict:
    """A notebook's ``runtime`` parameter for a smoke run: the profile's, with the GPU's
    branches taken on the CPU ("cuda" becomes "always"; in-memory images where a GPU would
    keep them), one epoch per run, and the step cost logged to ``log`` under the notebook's
    number."""
    taken = {k: "always" if runtime.get(k, "cuda") == "cuda" else runtime[k] for k in ("amp", "channels_last")}
    in_memory = runtime.get("in_memory", "auto")
    return {**runtime, **taken, "in_memory": True if in_memory == "auto" else in_memory, "max_epochs": 1,
            "step_log": str(log), "label": notebook}


@contextmanager
def start_cache(folder: Path) -> Iterator[None]:
    """Name ``folder`` as the cache of IDE starts (``CASN_LITE_CACHE``) to the kernels started
    meanwhile (they, and parallel workers, inherit this environment); then put it back."""
    before = os.environ.get(CACHE_VARIABLE)
    os.environ[CACHE_VARIABLE] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CACHE_VARIABLE, None)
        else:
            os.environ[CACHE_VARIABLE] = before


CACHE_VARIABLE = "CASN_LITE_CACHE"  # read by casn_lite.ablation (START_CACHE)


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
