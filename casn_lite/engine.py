"""Training and evaluation: one visible training loop, checkpoints, feature extraction.

``train_one_epoch`` is the training step a reader follows: forward and loss, backward,
update, one batch after another. ``fit`` runs it epoch after epoch and does the rest:
optimizer and schedule, checkpoints, resume, evaluation. The loss is
``loss_fn(model, batch, device) -> (loss, terms)``, by default ``CASNLoss(ia=False,
sa=False)`` (L_ide), so that IDE, IDE+IA, IDE+SA and CASN share this loop and differ only
in the loss they pass. Each epoch ends with a checkpoint; ``resume=True`` continues an
interrupted run and reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import random
import re
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .attention_metrics import evaluate_attention  # re-exported: the notebooks import it from here
from .data.datasets import sample_keys
from .devices import default_device
from .distributed import is_distributed, is_main_process
from .evaluation import evaluate_ranking, pairwise_distance, same_camera_errors, warn_if_few_valid
from .losses import CASNLoss
from .models import plain_values
from .progress import progress_bar
from .saving import save_torch, sweep_stale

__all__ = [
    "TrainConfig", "Runtime", "LossStep", "TrainingDiverged", "default_device", "seed_everything", "fit", "train_one_epoch", "default_loss",
    "make_optimizer", "make_scheduler", "extract_features", "evaluate", "load_training_state",
    "JointLoader", "evaluate_attention", "set_epoch", "CheckpointMismatch", "CheckpointRefused", "run_identity",
    "epoch_line", "describe_data",
]

# loss_fn(model, batch, device, progress) -> (loss, terms); progress: epochs trained so far
LossFn = Callable[[nn.Module, dict, torch.device, float], tuple[torch.Tensor, dict[str, float]]]


class CheckpointMismatch(ValueError):
    """A checkpoint saved by a run with other settings, data, starting weights or loss."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Runtime:
    """How a run uses the machine, not what it learns: every difference between the CPU path
    and the GPU path is one of these settings, which a profile sets (the notebooks' ``runtime``
    parameter). The defaults take the fast branches on a GPU only; a smoke run sets them so
    that the CPU takes the GPU's branches (``casn_lite.tooling.smoke``)."""

    amp: str = "cuda"  # bf16 autocast around the training forward: "cuda" (on a GPU), "always", "never"
    channels_last: str = "cuda"  # the model's weights in channels_last memory: "cuda", "always", "never"
    in_memory: bool | str = "auto"  # images decoded once to uint8 on the device: "auto" (a GPU, when they fit)
    max_epochs: int | None = None  # train at most this many of a run's epochs (its schedule shrinks with them)
    step_log: str | None = None  # a JSON-lines file: one line per run, its step cost (smoke runs)
    label: str = ""  # written on each step_log line, e.g. the notebook's number

    def __post_init__(self):
        for name in ("amp", "channels_last"):
            if getattr(self, name) not in WHERE:
                raise ValueError(f"runtime {name}: {getattr(self, name)!r}; choose one of {', '.join(WHERE)}")
        if self.in_memory not in (True, False, "auto"):
            raise ValueError(f"runtime in_memory: {self.in_memory!r}; choose True, False or 'auto'")

    @classmethod
    def from_parameters(cls, values: dict | None) -> Runtime:
        """A notebook's ``runtime`` parameter (a mapping of these fields) as settings; a name
        that is not one of them is an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"runtime: unknown setting(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**(values or {}))

    def uses(self, setting: str, device: torch.device) -> bool:
        """Whether ``amp`` or ``channels_last`` is on for ``device``."""
        where = getattr(self, setting)
        return where == "always" or (where == "cuda" and device.type == "cuda")


WHERE = ("cuda", "always", "never")


@dataclass
class TrainConfig:
    """Every knob of the training loop (paper, v1: SGD 0.9, lr 0.03, 40 epochs, x0.1 at 30)."""

    epochs: int = 40
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0  # linear warm-up from lr/10
    schedule: str = "step"  # "step", "cosine" or "constant"
    step_epochs: tuple[int, ...] = (30,)
    gamma: float = 0.1
    runtime: Runtime = field(default_factory=Runtime)  # bf16, channels_last, epoch cap: how, not what
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True
    desc: str = "training"  # the progress bar's label, e.g. "CASN(IDE) seed 1"
    extra: dict = field(default_factory=dict)  # anything a notebook wants saved with the run

    @property
    def epochs_to_train(self) -> int:
        """``epochs``, or fewer under the runtime's epoch cap."""
        cap = self.runtime.max_epochs
        return self.epochs if cap is None else min(self.epochs, cap)


def set_epoch(loader, epoch: int) -> None:
    """Tell a loader which epoch comes next: the loader itself when it knows (JointLoader,
    in-memory loaders), else its batch sampler or sampler (the seeded re-ID samplers)."""
    for target in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)
            return


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  the global RNG that notebook cells may use
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or Adam; no weight decay on biases and norm layers."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return _fused(torch.optim.SGD, groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if cfg.optimizer == "adam":
        return _fused(torch.optim.Adam, groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'sgd' or 'adam'")


def _fused(optimizer_class, groups: list[dict], **options) -> torch.optim.Optimizer:
    """The fused implementation (one kernel for all parameters: on 2 CPU cores Adam's step
    takes 6 ms instead of 34 ms for a ResNet-18) where this torch and device have it."""
    try:
        return optimizer_class(groups, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return optimizer_class(groups, foreach=True, **options)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step learning-rate factor: linear warm-up, then step decay or cosine."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs_to_train * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= e * steps_per_epoch for e in cfg.step_epochs)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        if cfg.schedule == "constant":
            return 1.0
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose 'step', 'cosine' or 'constant'")

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _rng_state() -> dict:
    """Every random generator's state as plain values and tensors (``torch.load(weights_only=True)``
    reads them back): NumPy's 624 uint32 words become an int64 tensor."""
    kind, words, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {"python": random.getstate(),
             "numpy": [kind, torch.from_numpy(words.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    kind, words, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(words, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """Python's RNG state with its tuples back (a list, once saved and loaded, must be a tuple again)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _save_atomically(obj: dict, path: Path) -> None:
    """Write to a temporary file of this process, then rename (``saving.save_torch``): an
    interrupted save never leaves a broken file nor, after SIGTERM or a full disk, its
    temporary file, and two runs saving at once never write into the same temporary file."""
    save_torch(obj, path)


class CheckpointRefused(CheckpointMismatch):
    """A ``last.pt`` that holds objects other than tensors and plain values: loading it could
    run code (a crafted file), so it is not loaded."""


def load_training_state(checkpoint_dir: str | Path) -> dict | None:
    """The last checkpoint of a run (or None): weights, optimizer, scheduler, history, RNG.
    Read with ``torch.load(weights_only=True)``: tensors and plain values only, so a crafted
    file runs no code; one holding anything else (a crafted file, or one saved by casn-lite
    before it stored plain values) raises ``CheckpointRefused``. An unreadable one (truncated,
    corrupt) is renamed ``last.pt.unreadable``, with a warning, and None returned: the run
    starts again instead of failing every time."""
    path = Path(checkpoint_dir) / "last.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointRefused(
                f"{path} refused: it holds objects other than tensors and plain values, which could run "
                "code when loaded (crafted, or saved by casn-lite before checkpoints held plain values "
                "only); delete it to train from scratch (reproduce --restart and train --restart do so)") from None
        unreadable = err
    except Exception as err:  # noqa: BLE001  any other reading error: the file is damaged
        unreadable = err
    aside = path.with_name("last.pt.unreadable")
    os.replace(path, aside)
    warnings.warn(f"{path} cannot be read ({type(unreadable).__name__}: {str(unreadable)[:200]}); moved to "
                  f"{aside.name}, training starts from scratch", stacklevel=2)
    return None


_RUN_CONTROL = ("checkpoint_dir", "resume", "progress", "desc")  # how a run is shown, not what it learns


def run_identity(cfg: TrainConfig, trained: nn.Module, loader, loss_fn) -> dict:
    """What determines a run's result, as plain values saved in ``last.pt``: its settings
    (``cfg`` but how it is shown; ``cfg.extra`` included), and fingerprints of its training
    data, its starting weights (seed, architecture, start) and its loss."""
    return {"settings": _learned_settings(asdict(cfg)), "data": _data_fingerprint(loader),
            "start": _weights_fingerprint(trained), "loss": _describe_loss(loss_fn)}


def _data_fingerprint(loader) -> dict[str, str]:
    """Hashes of what a loader feeds training with (``describe_data``), one per aspect, so that
    a refused resume can say which changed."""
    described = describe_data(loader)
    return {aspect: hashlib.sha256(json.dumps([part.get(aspect) for part in described]).encode()).hexdigest()[:16]
            for aspect in DATA_ASPECTS}


DATA_ASPECTS = {"images": "the training images", "transform": "the transforms (input size or augmentation)",
                "augment": "the on-device augmentation", "samplers": "the samplers (seed, P x K, pairs)",
                "batches": "the batches (size, count)"}


def describe_data(loader) -> list[dict]:
    """What shapes the batches a loader yields, as plain values: for the identity loader and a
    JointLoader's pair loader, the images (names, identities, cameras and file sizes), the
    transforms (input size, flip, pad, crop, erasing, normalisation: their ``repr``), the
    sampler's settings and seed, and the batches. Not what only changes how fast batches come
    (workers, pinned memory)."""
    parts = []
    for part in (getattr(loader, "identity_loader", loader), getattr(loader, "pair_loader", None)):
        if part is None:
            continue
        dataset = getattr(part, "dataset", None)
        dataset = getattr(dataset, "images", dataset)  # a PairDataset draws from an ImageDataset
        samples = getattr(dataset, "samples", None)
        described: dict = {"batches": [len(part), getattr(part, "batch_size", None), getattr(part, "drop_last", None)]}
        if samples is not None:
            described["images"] = [[*key, _file_size(s.path)] for key, s in zip(sample_keys(samples), samples,
                                                                                 strict=True)]
            described["transform"] = _without_addresses(repr(getattr(dataset, "transform", None)))
        elif hasattr(part, "pids"):  # the in-memory loaders: their images and on-device augmentation
            described["images"] = [part.pids.tolist(), part.camids.tolist(), list(part.images.shape)]
            described["augment"] = [_settings_of(getattr(part, "augment", None)), getattr(part, "seed", None)]
        samplers = {id(x): x for x in (getattr(part, "batch_sampler", None), getattr(part, "sampler", None))
                    if x is not None}
        described["samplers"] = [[type(x).__name__, _settings_of(x)] for x in samplers.values()]
        parts.append(described)
    return json.loads(json.dumps(parts, default=str))


_NOT_SETTINGS = {"epoch", "rank"}  # a sampler's position and this process's share: not what it draws
_PLAIN = bool | int | float | str | None


def _settings_of(obj) -> dict | None:
    """An object's plain settings by name: numbers, strings, flags, short lists of them (small
    tensors, such as normalisation constants, as lists)."""
    if obj is None:
        return None
    settings = {}
    for name, value in sorted(vars(obj).items()):
        if name.startswith("_") or name in _NOT_SETTINGS:
            continue
        if isinstance(value, torch.Tensor) and value.numel() <= 16:
            value = value.flatten().tolist()
        if isinstance(value, list | tuple) and len(value) <= 16 and all(isinstance(v, _PLAIN) for v in value):
            value = list(value)
        if isinstance(value, _PLAIN | list):
            settings[name] = value
    return settings


def _without_addresses(text: str) -> str:
    """A ``repr`` without memory addresses ("<... at 0x7f...>"), which differ from run to run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _file_size(path) -> int:
    """A file's size in bytes (-1 when it cannot be read): a replaced image with the same name
    changes it."""
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def _weights_fingerprint(module: nn.Module) -> str:
    """A hash of a module's weights and buffers, value by value."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _describe_loss(loss_fn) -> str:
    """The loss's name and its plain options, a settings dataclass's fields among them, e.g.
    ``CASNLoss(arch='ide', ia=True, lambda_ia=1.0, ...)``."""
    name = getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)
    if not isinstance(loss_fn, nn.Module):
        return f"{name}()"
    values = dict(vars(loss_fn))
    for value in list(values.values()):
        if is_dataclass(value) and not isinstance(value, type):  # CASNLoss.settings
            values.update(asdict(value))
    options = {k: v for k, v in sorted(values.items()) if not k.startswith("_") and k != "training"
               and isinstance(v, bool | int | float | str | None)}
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"


def check_resumable(state: dict, identity: dict, checkpoint_dir: Path) -> None:
    """Refuse to resume a checkpoint whose recorded run differs from this one, naming how."""
    changes = _differences(_recorded_identity(state), identity)
    if changes:
        raise CheckpointMismatch(
            f"{checkpoint_dir / 'last.pt'} was saved by another run ({'; '.join(changes)}); to train again, "
            "delete it or choose another checkpoint folder (reproduce --restart and train --restart do so)")


def _recorded_identity(state: dict) -> dict:
    """The identity a checkpoint records; one saved before identities has only its config."""
    if "identity" in state:
        return state["identity"]
    return {"settings": _learned_settings(state.get("config", {}))}


def _learned_settings(config: dict) -> dict:
    """A ``TrainConfig`` (as a dict) without what only shows or logs a run, as plain values."""
    settings = {k: v for k, v in config.items() if k not in _RUN_CONTROL}
    if isinstance(settings.get("runtime"), dict):
        settings["runtime"] = {k: v for k, v in settings["runtime"].items() if k not in ("step_log", "label")}
    return json.loads(json.dumps(settings, default=str))


def _differences(before: dict, now: dict) -> list[str]:
    """How two run identities differ, in words ("lr: 0.001 -> 0.002", "the training data differ")."""
    old, new = before.get("settings", {}), now["settings"]
    changes = [f"{k}: {old.get(k)} -> {new.get(k)}" if k != "extra" else "extra differs"
               for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    old_data, new_data = before.get("data"), now["data"]
    if "data" in before and old_data != new_data:
        aspects = [text for aspect, text in DATA_ASPECTS.items()
                   if isinstance(old_data, dict) and old_data.get(aspect) != new_data.get(aspect)]
        changes.append(f"{' and '.join(aspects) or 'the training data'} differ")
    words = {"start": "the starting weights differ (another seed, model or start)",
             "loss": f"the loss differs ({before.get('loss')} -> {now['loss']})"}
    changes += [text for key, text in words.items() if key in before and before[key] != now[key]]
    return changes


def default_loss() -> CASNLoss:
    """L_ide alone, ``CASNLoss(ia=False, sa=False)``: ``fit``'s loss when none is given."""
    return CASNLoss(ia=False, sa=False)


class LossStep(nn.Module):
    """The model and its loss as one module, ``(batch, progress) -> (loss, terms)``: what the
    optimizer trains (the Siamese head of CASN's loss included), what a checkpoint saves
    (``model.*`` and ``loss.*``), and under torchrun what DDP wraps, so that a whole CASN step
    (masked images, pairs, Grad-CAM) is one DDP forward.

    ``loss_fn(model, batch, device, progress) -> (loss, terms)`` is a ``CASNLoss`` or any
    function of that form; ``progress`` is how far training is, in epochs (fractions too),
    for a loss that ramps its weights with training."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, device: torch.device):
        super().__init__()
        self.model = model
        self.loss = loss_fn if isinstance(loss_fn, nn.Module) else None  # weights of its own, if any
        self._plain_loss_fn = None if isinstance(loss_fn, nn.Module) else loss_fn  # a plain function
        self.device = device

    @property
    def loss_fn(self) -> LossFn:
        return self.loss if self.loss is not None else self._plain_loss_fn

    def forward(self, batch: dict, progress: float = 0.0):
        return self.loss_fn(self.model, batch, self.device, progress)


def train_one_epoch(step: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, epoch: int,
                    autocast=None, bar=None) -> dict:
    """One pass over ``loader``: for each batch, forward and loss, backward, update. Returns
    the epoch's record: the batch-size-weighted mean of the loss and of every term, the
    learning rate, seconds and images per second.

    ``step(batch, progress) -> (loss, terms)`` is ``fit``'s ``LossStep`` (model and loss as
    one module; under torchrun, wrapped in DDP); ``progress`` is how far training is, in
    epochs, for a loss that ramps its weights. ``autocast``: a context for the forward pass
    (bf16 on a GPU); ``bar``: a progress bar advanced once per batch."""
    autocast = autocast or nullcontext()
    sums: dict[str, float] = {}
    seen, tic = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        with autocast:
            loss, terms = step(batch, progress=epoch + i / len(loader))  # forward + L
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1} "
                f"(terms: {terms}); try a lower learning rate (now {scheduler.get_last_lr()[0]:.2e})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # dL/dw for the model and the loss's own weights (the Siamese head)
        optimizer.step()
        scheduler.step()
        n = len(batch["image"])  # this step's identity images
        seen += n
        for name, value in {"loss": loss.item(), **terms}.items():
            sums[name] = sums.get(name, 0.0) + value * n
        if bar is not None:  # the postfix waits for the bar's next timed redraw (progress.py)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}",
                            img_s=f"{seen / (time.perf_counter() - tic):.0f}", refresh=False)
            bar.update()
    seconds = time.perf_counter() - tic
    return {"epoch": epoch + 1, **{name: total / seen for name, total in sums.items()},
            "lr": scheduler.get_last_lr()[0], "seconds": seconds, "images_per_s": seen / seconds}


# in the history, not in the epoch's line
SILENT_KEYS = {"epoch", "lr", "seconds", "images_per_s", "rank5", "rank10", "num_valid_queries", "num_queries"}


def epoch_line(desc: str, record: dict, epochs: int) -> str:
    """One epoch as a line of text: its losses and metrics, and its training time."""
    values = ", ".join(f"{name} {value:.3f}" for name, value in record.items()
                       if name not in SILENT_KEYS and isinstance(value, int | float))
    return f"{desc}: epoch {record['epoch']}/{epochs}: {values} ({record['seconds']:.0f} s)"


def fit(model: nn.Module, loader, cfg: TrainConfig, loss_fn: LossFn | None = None,
        device: torch.device | None = None,
        eval_fn: Callable[[nn.Module], dict] | None = None) -> list[dict]:
    """Train ``model`` for ``cfg.epochs`` epochs; return the history (one dict per epoch).

    ``loss_fn`` defaults to L_ide (``CASNLoss(ia=False, sa=False)``). ``eval_fn(model) ->
    metrics`` (optional) runs after every epoch and its metrics join the history. With
    ``cfg.checkpoint_dir`` set, each epoch ends by saving ``last.pt``; with ``cfg.resume``
    the run continues from it. ``cfg.runtime`` says how the machine is used (bf16 autocast,
    channels_last, an epoch cap, a log of the step cost).
    """
    device = device or default_device()
    loss_fn = loss_fn if loss_fn is not None else default_loss()
    runtime, epochs = cfg.runtime, cfg.epochs_to_train
    step = LossStep(model, loss_fn, device).to(device)  # the model and the loss's own weights, together
    if runtime.uses("channels_last", device):
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(step, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if runtime.uses("amp", device) else None
    forward = step
    if is_distributed():  # under torchrun: DDP averages the gradients across processes
        forward = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)

    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    identity = run_identity(cfg, step, loader, loss_fn) if ckpt_dir else None
    history: list[dict] = []
    if ckpt_dir and is_main_process():
        sweep_stale(ckpt_dir)  # temporary files of a run killed mid-save
    if ckpt_dir and cfg.resume and (state := load_training_state(ckpt_dir)) is not None:
        check_resumable(state, identity, ckpt_dir)
        history = _restore(state, step, optimizer, scheduler)

    bar = progress_bar(total=(epochs - len(history)) * len(loader), desc=cfg.desc, unit="batch",
                       disable=not (cfg.progress and is_main_process()))
    tic = time.perf_counter()
    try:
        for epoch in range(len(history), epochs):
            set_epoch(loader, epoch)
            step.train()
            record = train_one_epoch(forward, loader, optimizer, scheduler, epoch, autocast, bar)
            if eval_fn is not None:
                record.update(eval_fn(model))
            history.append(record)
            if cfg.progress and is_main_process():  # a plain line: what a saved notebook shows
                bar.write(epoch_line(cfg.desc, record, epochs))
            if ckpt_dir and is_main_process():
                _save_checkpoint(ckpt_dir, step, optimizer, scheduler, history, cfg, identity)
    finally:
        bar.close()
    if runtime.step_log and is_main_process():
        log_step_cost(runtime, cfg, loader, loss_fn, history, time.perf_counter() - tic)
    return history


def log_step_cost(runtime: Runtime, cfg: TrainConfig, loader, loss_fn, history: list[dict], seconds: float) -> None:
    """Append one JSON line to ``runtime.step_log``: what trained (its loss, IA and SA), how
    long a step took, and how many epochs the run would train without the epoch cap (a smoke
    run's budget check reads it)."""
    steps = len(loader) * max(1, len(history))
    batch = getattr(getattr(loader, "identity_loader", loader), "batch_size", None)
    record = {"notebook": runtime.label, "loss": _describe_loss(loss_fn), "ia": bool(getattr(loss_fn, "ia", False)),
              "sa": bool(getattr(loss_fn, "sa", False)), "full_epochs": cfg.epochs, "steps_per_epoch": len(loader),
              "batch_size": batch, "seconds_per_step": sum(h["seconds"] for h in history) / max(1, steps),
              "wall_seconds": seconds}
    with open(runtime.step_log, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _restore(state: dict, step: LossStep, optimizer, scheduler) -> list[dict]:
    """Put a run back as its checkpoint left it (weights, optimizer, schedule, RNG); its history."""
    step.model.load_state_dict(state["model"])
    if step.loss is not None:
        step.loss.load_state_dict(state.get("loss", {}))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state["history"]


def _save_checkpoint(ckpt_dir: Path, step: LossStep, optimizer, scheduler, history: list[dict],
                     cfg: TrainConfig, identity: dict) -> None:
    """``last.pt``: everything an exact resume needs, and the run that made it."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _save_atomically({"model": step.model.state_dict(),
                      "loss": step.loss.state_dict() if step.loss is not None else {},
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "rng": _rng_state(), "epoch": len(history) - 1, "history": plain_values(history),
                      "config": plain_values(asdict(cfg)), "identity": identity}, ckpt_dir / "last.pt")


class JointLoader:
    """Identity batches and pair batches side by side, as CASN trains: each step gets an
    identity batch (``image``, ``pid``, ...) and a pair batch (``image1``, ``image2``,
    ``same``, ...) in one dict. An epoch is one pass over the identity loader; the pair
    loader starts again whenever it runs out."""

    def __init__(self, identity_loader, pair_loader):
        self.identity_loader, self.pair_loader = identity_loader, pair_loader
        self._pair_epoch = 0

    def __len__(self) -> int:
        return len(self.identity_loader)

    def set_epoch(self, epoch: int) -> None:
        for loader in (self.identity_loader, self.pair_loader):
            set_epoch(loader, epoch)

    def __iter__(self):
        pairs = iter(self.pair_loader)
        for batch in self.identity_loader:
            try:
                pair = next(pairs)
            except StopIteration:
                pairs = iter(self.pair_loader)
                pair = next(pairs)
            yield {**batch, **pair}


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def extract_features(model: nn.Module, loader, device: torch.device | None = None,
                     flip: bool = False) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Embeddings (L2-normalised, on CPU), pids and camids of every image in ``loader``.
    With ``flip``, each embedding is the mean of the image's and its mirror image's."""
    device = device or default_device()
    model.to(device).eval()
    feats, pids, camids = [], [], []
    for batch in loader:
        x = batch["image"].to(device)
        f = model(x).embedding
        if flip:
            f = (f + model(torch.flip(x, dims=[3])).embedding) / 2
        feats.append(F.normalize(f.float(), dim=1).cpu())
        pids.append(batch["pid"].numpy())
        camids.append(batch["camid"].numpy())
    return torch.cat(feats), np.concatenate(pids), np.concatenate(camids)


def evaluate(model: nn.Module, query_loader, gallery_loader, device: torch.device | None = None,
             metric: str = "cosine", flip: bool = False) -> dict:
    """Rank the gallery for every query; CMC, mAP and mINP as fractions (Market-1501 protocol),
    the share of wrong rank-1 matches filmed by the query's own camera (``same_scene_errors``),
    and how many queries they rest on (``num_valid_queries`` of ``num_queries``; a warning
    when fewer than half)."""
    qf, qp, qc = extract_features(model, query_loader, device, flip)
    gf, gp, gc = extract_features(model, gallery_loader, device, flip)
    dist = pairwise_distance(qf, gf, metric)
    res = evaluate_ranking(dist, qp, gp, qc, gc)
    warn_if_few_valid(res["num_valid_queries"], res["num_queries"])
    cmc = res["cmc"]
    return {"rank1": float(cmc[0]), "rank5": float(cmc[min(4, len(cmc) - 1)]),
            "rank10": float(cmc[min(9, len(cmc) - 1)]), "mAP": res["mAP"], "mINP": res["mINP"],
            "same_scene_errors": same_camera_errors(dist, qp, gp, qc, gc),
            "cmc": cmc, "num_valid_queries": res["num_valid_queries"], "num_queries": res["num_queries"]}
