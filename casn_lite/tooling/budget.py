"""A profile's GPU time, worked out from its parameters and measured GPU speeds; no training.

    python -m casn_lite budget --profile gpu

prints, per notebook, the seconds ``benchmarks/gpu_run.sh`` should spend training,
evaluating and on the rest (kernel start, imports, data, figures), for the profile's IDE
half and its ``--arch pcb`` half, plus the script's set-up and benchmarks, and the total.
``reproduce --smoke`` prints the same table for the half it ran, and checks it against the
trainings the smoke run logged (``smoke.plan_mismatches``): the plan of what each notebook
trains (``trainings``) is written here by hand, and the smoke run is what keeps it true.

The speeds (below) are an H100's, measured earlier in this project; an H200 is at least as
fast. What was not measured is marked "assumed"; ``benchmarks/gpu_run.sh`` measures the
training speed again (``benchmarks/train_throughput.py``) on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["IDE_IMAGES_PER_S", "ATTENTION_RELATIVE_SPEED", "Training", "NotebookBudget", "Budget",
           "trainings", "notebook_budget", "notebooks_budget", "notebook_parameters", "profile_budget", "gpu_run_budget", "budget_table"]

# Measured on an H100 (torch 2.11, ResNet-50 with last stride 1 at 256 x 128, batch 128 (+ 32
# pairs), bf16 autocast + channels_last): an IDE training step ran at 4,450-4,700 images/s (the
# conservative end here), a CASN-shaped step (Grad-CAM backward, masked forward, the pairs) at
# 0.46-0.48 x that, and a Market-sized evaluate_ranking took 12 ms.
IDE_IMAGES_PER_S = 4450.0
ATTENTION_RELATIVE_SPEED = 0.46  # charged to every step with IA or SA (alone they cost less)
RANKING_SECONDS = 0.012
REFERENCE_PIXELS = 256 * 128  # other input sizes scale by their pixels (PCB's 384 x 128: 1.5 x)

# Assumed, not measured on a GPU:
INFERENCE_IMAGES_PER_S = IDE_IMAGES_PER_S  # evaluation: fp32 forwards alone, no faster than a bf16 step
CHECKPOINT_SECONDS = 0.8  # saving ResNet-50 + Adam's state (307 MB) each epoch, as on this project's CPU machine
NOTEBOOK_SECONDS = 15.0  # a notebook's kernel start, imports, CUDA start, images into GPU memory, figures
SYNTH_IMAGES_PER_S = 1000.0  # SynthPeople drawn on one CPU core at 128 x 64 (measured; README)
SYNTH_PIXELS = 128 * 64
SETUP_SECONDS = 20.0  # gpu_run.sh: the carried wheels unpacked, the kernel registered
BENCHMARK_SECONDS = {"benchmarks/train_throughput.py": 45.0,  # its own data, fp32 and bf16, 20 steps each
                     "benchmarks/evaluation.py": 15.0}  # Market-sized, CPU and GPU, three repeats


@dataclass(frozen=True, kw_only=True)
class Training:
    """One ``fit`` of a notebook: its name, length and what one epoch costs."""

    name: str
    epochs: int
    ia: bool = False
    sa: bool = False
    images: float  # training images per epoch
    pixels: int  # height x width
    evaluations: int = 1  # retrieval evaluations of the trained model (notebook 01: one per epoch, and one after)
    checkpoints: bool = False  # saved every epoch
    warmup_images: float = 0.0  # the Siamese head's warm-up: backbone forwards before training
    start: tuple | None = None  # an IDE start: trained by the first notebook that needs it, then cached
    run: tuple | None = None  # a run from a start (ablation.arms_over_seeds): the same, loaded but evaluated

    @property
    def attention(self) -> bool:
        return self.ia or self.sa

    def training_seconds(self) -> float:
        speed = IDE_IMAGES_PER_S * (ATTENTION_RELATIVE_SPEED if self.attention else 1.0)
        return self.epochs * self.images * self.pixels / REFERENCE_PIXELS / speed


@dataclass
class NotebookBudget:
    """Seconds a notebook should take on the GPU, by part; ``trainings``: what it trains."""

    label: str
    number: str | None = None  # the notebook's; None for the script's other parts
    training: float = 0.0
    evaluation: float = 0.0
    other: float = 0.0  # NOTEBOOK_SECONDS, data generation, checkpoints, the head's warm-up
    trainings: list[Training] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.training + self.evaluation + self.other


@dataclass
class Budget:
    """A run's parts in order (notebooks, set-up, benchmarks) and what they share: the
    datasets already drawn and the IDE starts already trained."""

    parts: list[NotebookBudget] = field(default_factory=list)
    datasets: set = field(default_factory=set)
    starts: set = field(default_factory=set)
    runs: set = field(default_factory=set)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)


# --------------------------------------------------------------------------- what each notebook trains
def _expected_images(p: dict, ids: int) -> float:
    """Images of ``ids`` identities: SynthPeople films each in 2 to ``cameras`` cameras (on
    average (2 + cameras) / 2), ``images_per_camera`` each."""
    return ids * (2 + p["cameras"]) / 2 * p["images_per_camera"]


def _test_images(p: dict) -> float:
    """Query and gallery images, the gallery's 5 % distractors and 3 % junk included."""
    return _expected_images(p, p["test_ids"]) * 1.08


def trainings(number: str, p: dict) -> list[Training]:
    """What notebook ``number`` trains with parameters ``p`` (every parameter of its cell,
    the profile's values applied), in order, IDE starts included."""
    from ..ablation import arm, arm_names, variant_names
    from ..losses import CASNSettings
    from ..models import default_embed_dim

    if number == "00":
        return []
    arch = p.get("arch", "ide")
    common = {"images": _expected_images(p, p["train_ids"]), "pixels": p["height"] * p["width"]}
    checkpoints = p.get("checkpoint_dir") is not None
    warmup = p.get("head_warmup", 0) * 2 * p.get("pairs_per_batch", 0)
    if number == "01":
        return [Training(name="IDE", epochs=p["epochs"], evaluations=p["epochs"] + 1, checkpoints=checkpoints,
                         **common)]
    seeds = p["seeds"] if number == "05" else [p["seed"], *p.get("more_seeds", [])]
    data = (p["train_ids"], p["test_ids"], p["cameras"], p["images_per_camera"], p.get("data_seed", p.get("seed")))
    start = ("arch", "backbone", "height", "width", "ide_epochs", "batch_size", "num_instances", "optimizer", "lr",
             "pretrained", "last_stride", "erase_p")  # StartConfig's fields: what keys the cache
    embed_dim = default_embed_dim(arch, p.get("embed_dim"))  # as ide_start fills it in
    more = {"02": "ia_epochs", "03": "sa_epochs", "04": "casn_epochs", "05": "variant_epochs"}[number]
    variants = variant_names(arch)
    names = {"02": ["IDE", "IDE+IA"], "03": ["IDE", "IDE+SA(0)", "IDE+SA"], "04": [variants[0], variants[-1]],
             "05": p.get("variants") or arm_names(arch)}[number]
    settings = tuple(sorted(vars(CASNSettings.from_parameters(p)).items()))
    schedule = (p[more], p.get("finetune_lr") or p["lr"], p["optimizer"], p.get("pairs_per_batch"),
                p.get("positive_fraction", 0.5), settings)  # what ablation.run_key holds, besides the start
    out = []
    for seed in seeds:
        key = (data, seed, embed_dim, *(p.get(k, "ide" if k == "arch" else None) for k in start))
        out.append(Training(name=f"{arch.upper()} start, seed {seed}", epochs=p["ide_epochs"], start=key,
                            evaluations=0, **common))
        for name in names:
            terms = arm(name)  # a verification arm: its SA variant's terms
            run = (key, name, *schedule, p.get("head_warmup", 0) if terms.sa else 0)
            out.append(Training(name=f"{name}, seed {seed}", epochs=p[more], ia=terms.ia, sa=terms.sa,
                                checkpoints=checkpoints and number in ("04", "05"),
                                warmup_images=warmup if terms.sa else 0.0, run=run, **common))
    return out


def _dataset(number: str, p: dict) -> tuple | None:
    """The SynthPeople set a notebook draws (None: a real dataset); 00 draws at its own size."""
    if p.get("data_root") is not None:
        return None
    size = (p["height"], p["width"]) if number == "00" else (128, 64)
    return (p["train_ids"], p["test_ids"], p["cameras"], p["images_per_camera"],
            p.get("data_seed", p.get("seed", 0)), *size)


def notebook_budget(number: str, label: str, p: dict, budget: Budget) -> NotebookBudget:
    """Add notebook ``number``'s part to ``budget`` (what an earlier part drew or trained is
    not paid again) and return it."""
    part = NotebookBudget(label, number, other=NOTEBOOK_SECONDS)
    dataset = _dataset(number, p)
    if dataset is not None and dataset not in budget.datasets:
        budget.datasets.add(dataset)
        drawn = _expected_images(p, p["train_ids"]) + _test_images(p)
        part.other += drawn * dataset[-2] * dataset[-1] / SYNTH_PIXELS / SYNTH_IMAGES_PER_S
    try:
        planned = trainings(number, p)
    except KeyError as err:
        raise ValueError(f"the budget reads a parameter {label} does not have: {err} "
                         "(casn_lite/tooling/budget.py: trainings)") from None
    for t in planned:
        if t.start is not None:
            if t.start in budget.starts:
                continue
            budget.starts.add(t.start)
        part.evaluation += t.evaluations * (_test_images(p) * t.pixels / REFERENCE_PIXELS / INFERENCE_IMAGES_PER_S
                                            + RANKING_SECONDS)
        if t.run is not None:
            if t.run in budget.runs:  # an earlier notebook trained it: loaded, then evaluated
                continue
            budget.runs.add(t.run)
        part.trainings.append(t)
        part.training += t.training_seconds()
        part.other += (t.epochs * CHECKPOINT_SECONDS if t.checkpoints else 0.0) + (
            t.warmup_images * t.pixels / REFERENCE_PIXELS / INFERENCE_IMAGES_PER_S)
    budget.parts.append(part)
    return part


# --------------------------------------------------------------------------- profiles
def notebook_parameters(profile: str, arch: str | None = None,
                        only: list[str] | None = None) -> list[tuple[str, str, dict]]:
    """(number, name, parameters) of each notebook the runner would run: the notebook's own
    defaults, the profile's values, and what the runner adds (checkpoints, the profile's name)."""
    from .notebooks import parameter_defaults
    from .profiles import plan
    from .runner import runner_parameters

    out = []
    for job in plan(profile, only, arch=arch):
        defaults = parameter_defaults(job.source)
        job.parameters.update(runner_parameters(job, set(defaults), profile, Path("runs")))
        out.append((job.number, job.source.stem, {**defaults, **job.parameters}))
    return out


def profile_budget(profile: str, arch: str | None = None, budget: Budget | None = None,
                   only: list[str] | None = None) -> Budget:
    """A ``reproduce --profile profile [--arch arch] [--only ...]`` run's budget (added to ``budget``)."""
    suffix = f" --arch {arch}" if arch else ""
    return notebooks_budget([(number, name + suffix, parameters)
                             for number, name, parameters in notebook_parameters(profile, arch, only)], budget)


def notebooks_budget(notebooks: list[tuple[str, str, dict]], budget: Budget | None = None) -> Budget:
    """The budget of running ``notebooks`` ((number, label, every parameter)) in order."""
    budget = budget if budget is not None else Budget()
    for number, label, parameters in notebooks:
        notebook_budget(number, label, parameters, budget)
    return budget


def gpu_run_budget(profile: str = "gpu") -> Budget:
    """What ``benchmarks/gpu_run.sh`` runs: set-up, both benchmarks, the profile's notebooks and,
    when the profile has a ``pcb`` section, notebooks 04 and 05 with ``--arch pcb``."""
    from .profiles import read_profile

    budget = Budget(parts=[NotebookBudget("set-up (wheels, kernel)", other=SETUP_SECONDS)])
    budget.parts += [NotebookBudget(name, other=seconds) for name, seconds in BENCHMARK_SECONDS.items()]
    profile_budget(profile, budget=budget)
    if "pcb" in (read_profile(profile).get("arch") or {}):
        profile_budget(profile, "pcb", budget)
    return budget


def budget_table(budget: Budget, title: str) -> str:
    """The budget as a table: seconds per part (training, evaluation, the rest) and in all."""
    lines = [f"\n{title}", f"  {'part':<42}{'train s':>8}{'eval s':>8}{'other s':>8}{'total':>10}"]
    for p in budget.parts:
        lines.append(f"  {p.label:<42}{p.training:>8.0f}{p.evaluation:>8.0f}{p.other:>8.0f}"
                     f"{p.seconds / 60:>7.1f} min")
    lines.append(f"  {'in all':<42}{sum(p.training for p in budget.parts):>8.0f}"
                 f"{sum(p.evaluation for p in budget.parts):>8.0f}{sum(p.other for p in budget.parts):>8.0f}"
                 f"{budget.seconds / 60:>7.1f} min")
    lines.append(f"  (an IDE step at {IDE_IMAGES_PER_S:,.0f} images/s at 256 x 128, steps with IA or SA at "
                 f"{ATTENTION_RELATIVE_SPEED} x that, as measured on an H100; the rest assumed: casn_lite/tooling/budget.py)")
    return "\n".join(lines)
