"""The ablation protocol of notebooks 04 and 05, and the paper's Table 3 to compare with.

Protocol, per seed: train IDE from scratch for a few epochs (the shared start, as ImageNet
weights are the paper's shared start), then train every variant for the same number of
further epochs from that start, with the same data order. The variants differ only in
the flags of ``CASNLoss``; the IDE row is trained exactly as long as the others.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .attention_metrics import evaluate_attention
from .data.datasets import control_settings, load_or_generate, sample_keys
from .data.loaders import Loaders, pair_loader, reid_loaders
from .data.synth import SynthConfig
from .engine import JointLoader, Runtime, TrainConfig, evaluate, fit, seed_everything, set_epoch
from .losses import VARIANTS, CASNSettings, arm, arm_names, variant_loss, variant_names
from .models import build_model, default_embed_dim
from .saving import save_torch, sweep_stale

__all__ = ["VARIANTS", "PAPER_TABLE3", "variant_names", "arm_names", "arm", "variant_loss", "checkpoint_folder", "train_from",
           "arms_over_seeds", "run_key", "aggregate",
           "markdown_table", "StartConfig", "start_loaders", "data_fingerprint", "ide_start", "START_CACHE",
           "true_class_probability", "Pretraining", "PRETRAINING", "pretrained_trunk"]

# where trained IDE starts are kept, keyed by everything that determines them
START_CACHE = Path(os.environ.get("CASN_LITE_CACHE", Path(__file__).resolve().parents[1] / "runs" / "cache"))

# Rank-1 / mAP (%) from the paper's Table 3 (real data, ImageNet-pretrained ResNet-50).
PAPER_TABLE3 = {
    "IDE": {"CUHK03-NP det": (43.8, 38.9), "DukeMTMC-reID": (73.2, 52.8), "Market-1501": (85.3, 68.5)},
    "IDE+IA": {"CUHK03-NP det": (54.8, 48.1), "DukeMTMC-reID": (83.2, 66.0), "Market-1501": (91.0, 76.9)},
    "IDE+SA": {"CUHK03-NP det": (55.2, 49.1), "DukeMTMC-reID": (83.5, 66.0), "Market-1501": (91.6, 77.7)},
    "CASN(IDE)": {"CUHK03-NP det": (57.4, 50.7), "DukeMTMC-reID": (84.5, 67.0), "Market-1501": (92.0, 78.0)},
    "PCB": {"CUHK03-NP det": (61.3, 54.2), "DukeMTMC-reID": (81.7, 66.1), "Market-1501": (92.4, 77.3)},
    "PCB+IA": {"CUHK03-NP det": (68.5, 62.4), "DukeMTMC-reID": (87.3, 73.4), "Market-1501": (93.9, 81.8)},
    "PCB+SA": {"CUHK03-NP det": (69.9, 64.2), "DukeMTMC-reID": (86.8, 73.5), "Market-1501": (94.1, 82.6)},
    "CASN(PCB)": {"CUHK03-NP det": (71.5, 64.4), "DukeMTMC-reID": (87.7, 73.7), "Market-1501": (94.4, 82.8)},
}


def checkpoint_folder(checkpoint_dir: str | Path | None, run: str) -> Path | None:
    """Where the run named ``run`` (e.g. "CASN(IDE)-seed0") keeps its checkpoints inside a
    notebook's ``checkpoint_dir``; None (no checkpoints) when that is None."""
    return Path(checkpoint_dir) / run if checkpoint_dir else None


def train_from(start: nn.Module, loader, cfg: TrainConfig, loss_fn, device: torch.device,
               seed: int, checkpoint_dir: str | Path | None = None, head_warmup: int = 0) -> dict:
    """Train a copy of ``start`` (left untouched) with ``loss_fn``; seeded, so every variant
    sees the same batches, and a Siamese head starts from weights drawn from the seed. With
    ``head_warmup`` steps and a loss that has a Siamese head, the
    head first learns alone on the start's features, from ``loader``'s pair batches. Returns
    the model, its history, the head's L_bce over the warm-up and the wall time. With a
    ``checkpoint_dir`` an interrupted run resumes, and a finished one is not redone."""
    seed_everything(seed)
    model = copy.deepcopy(start)
    head = getattr(loss_fn, "head", None)
    if head is not None:
        loss_fn.reset_head()  # a fresh head drawn from this seed, whatever ran before
    warmup: list[float] = []
    tic = time.perf_counter()
    if head_warmup and head is not None:
        set_epoch(loader.pair_loader, 0)  # the same pairs whatever iterated this loader before
        warmup = loss_fn.warm_up_head(model.to(device), loader.pair_loader, device, steps=head_warmup)
    cfg = replace(cfg, checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                  resume=checkpoint_dir is not None)
    history = fit(model, loader, cfg, loss_fn, device)
    return {"model": model, "loss": loss_fn, "history": history, "warmup": warmup,
            "seconds": time.perf_counter() - tic}


def run_key(start_key: str, arm_name: str, finetune: TrainConfig, settings: CASNSettings, batches: dict,
            head_warmup: int, runtime_changes: dict | None = None) -> str:
    """A short hash of everything that determines a fine-tuning run from a cached start: the
    start (its key, which holds the seed), the arm, the training schedule, every CASN
    setting, the batches (``batches``: the pair loader's settings, or none) and the head's
    warm-up. How the machine runs it (``runtime``, ``desc``, progress bars, checkpoints) is
    left out, except what changes the weights (``_runtime_changes``)."""
    schedule = {k: v for k, v in asdict(finetune).items()
                if k not in ("runtime", "desc", "progress", "checkpoint_dir", "resume")}
    text = json.dumps({"start": start_key, "arm": arm_name, "schedule": schedule, "settings": asdict(settings),
                       "batches": batches, "head_warmup": head_warmup, **(runtime_changes or {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def arms_over_seeds(data, start_config: StartConfig, seeds, arms, finetune: TrainConfig, settings: CASNSettings,
                    device: torch.device, runtime: Runtime, test_pairs, *, pairs_per_batch: int | None = None,
                    positive_fraction: float = 0.5, head_warmup: int = 0, num_workers: int = 0,
                    checkpoint_dir: str | Path | None = None, cache_dir: str | Path | None = START_CACHE,
                    ) -> tuple[list[dict], dict[tuple[str, int], dict]]:
    """The ablation protocol over ``seeds``: per seed, the IDE start of ``start_config`` with
    that seed (``ide_start``, cached), then every arm (a name of ``variant_loss``) trained
    from it by ``train_from`` with ``finetune`` on the same batches (identity batches, with
    ``pairs_per_batch`` pairs each when set, ``positive_fraction`` of them one person), and
    measured on the test identities and on the same ``test_pairs`` (``evaluate_attention``).
    A finished run is kept in ``cache_dir`` under ``run_key`` (weights, Siamese head,
    history), as starts are, so that notebooks 02-05 train each run once and a second
    notebook asking for it loads it (None: no cache). Returns one record per arm and seed
    (retrieval, attention, train seconds, ``cached``) and the runs by ``(arm, seed)`` (model,
    loss, history, warm-up, retrieval result, seconds, cached)."""
    records, runs = [], {}
    batches_settings = {"pairs_per_batch": pairs_per_batch or 0,
                        "positive_fraction": positive_fraction if pairs_per_batch else None}
    for seed in seeds:
        cfg = replace(start_config, seed=seed)
        loaders = start_loaders(data, cfg, device, runtime, num_workers)
        batches = loaders.train if not pairs_per_batch else JointLoader(
            loaders.train, pair_loader(data, cfg.height, cfg.width, pairs_per_batch, len(loaders.train),
                                       positive_fraction, seed=seed, num_workers=num_workers,
                                       images=loaders.train_images, erase_p=cfg.erase_p))
        start, info = ide_start(data, cfg, device, runtime, cache_dir=cache_dir)
        print(f"seed {seed}: IDE start", "loaded from the cache" if info["cached"] else f"trained in {info['seconds']:.0f} s")
        for name in arms:
            loss = variant_loss(name, feature_dim=start.feature_dim, settings=settings)
            warmup = head_warmup if loss.head is not None else 0  # no head, nothing to warm up
            key = run_key(info["key"], name, finetune, settings, batches_settings, warmup,
                          _runtime_changes(runtime, cfg, device))
            path = Path(cache_dir) / f"run-{key}.pt" if cache_dir else None
            tic = time.perf_counter()
            run = _load_run(path, start, loss, device)
            if run is None:
                run = train_from(start, batches, replace(finetune, desc=f"{name}, seed {seed}"), loss, device, seed,
                                 checkpoint_folder(checkpoint_dir, f"{name}-seed{seed}"), warmup)
                run["cached"] = False
                _save_run(path, key, run)
            result = evaluate(run["model"], loaders.query, loaders.gallery, device)
            attention = evaluate_attention(run["model"], test_pairs, device, settings.profile_threshold,
                                           settings.profile_length, head=loss.head)
            records.append({"arch": start_config.arch, "variant": name, "seed": seed,
                            **{k: result[k] for k in ("rank1", "rank5", "mAP", "mINP", "same_scene_errors")},
                            **attention.as_dict(), "train_seconds": run["seconds"], "cached": run["cached"],
                            "wall_seconds": time.perf_counter() - tic})
            runs[(name, seed)] = {**run, "result": result}
        print(f"seed {seed}: " + ", ".join(f"{name} {'loaded' if runs[(name, seed)]['cached'] else 'trained'}"
                                           for name in arms))
    return records, runs


def _save_run(path: Path | None, key: str, run: dict) -> None:
    """Keep a finished run (``train_from``'s result) where ``_load_run`` finds it, whole or
    not at all; nothing without a path."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)  # what a killed save left
    save_torch({"key": key, "model": run["model"].state_dict(), "loss": run["loss"].state_dict(),
                "history": run["history"], "warmup": run["warmup"], "seconds": run["seconds"]}, path)


def _load_run(path: Path | None, start: nn.Module, loss, device: torch.device) -> dict | None:
    """A finished run from the cache, as ``train_from`` returns it (``seconds``: the
    training's, when it ran), or None when there is none."""
    if path is None or not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = copy.deepcopy(start)
    model.load_state_dict(state["model"])
    loss.load_state_dict(state["loss"])
    return {"model": model.to(device), "loss": loss.to(device), "history": state["history"],
            "warmup": state["warmup"], "seconds": state["seconds"], "cached": True}


def aggregate(records: list[dict], keys: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per variant and metric: (mean, sample standard deviation, number of seeds)."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = [r for r in records if r["variant"] == variant]
        out[variant] = {}
        for key in keys:
            values = np.array([r.get(key, math.nan) for r in rows], dtype=float)
            values = values[~np.isnan(values)]
            std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            out[variant][key] = (float(values.mean()) if len(values) else math.nan, std, len(values))
    return out


def _cell(mean: float, std: float, percent: bool) -> str:
    scale, digits = (100, 1) if percent else (1, 3)
    if math.isnan(mean):
        return "n/a"
    text = f"{scale * mean:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"


def markdown_table(summary: dict, columns: dict[str, str], percent: set[str],
                   paper_dataset: str | None = "Market-1501") -> str:
    """A markdown table: one row per variant, mean ± std over seeds; with ``paper_dataset``
    the paper's rank-1 / mAP on that (real) dataset as the last column."""
    head = ["variant", *columns.values()]
    if paper_dataset:
        head.append(f"paper, {paper_dataset} (R-1 / mAP)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, stats in summary.items():
        cells = [variant] + [_cell(*stats[k][:2], k in percent) for k in columns]
        if paper_dataset:
            paper = PAPER_TABLE3.get(variant, {}).get(paper_dataset)
            cells.append(f"{paper[0]} / {paper[1]}" if paper else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the shared IDE start
@dataclass(frozen=True, kw_only=True)
class StartConfig:
    """Everything that determines a trained IDE start, besides the data; by keyword only.
    Its training loaders come from it too (``start_loaders``), so the start cached under
    this configuration is the one trained on what it says."""

    arch: str = "ide"
    backbone: str = "resnet18"
    height: int = 64
    width: int = 32
    epochs: int = 10
    seed: int = 0
    batch_size: int = 32
    num_instances: int = 4
    optimizer: str = "adam"
    lr: float = 1e-3
    pretrained: bool | str = False
    last_stride: int = 1
    embed_dim: int | None = None
    erase_p: float = 0.5  # random erasing of the training images


@dataclass(frozen=True)
class Pretraining:
    """The project's stand-in for the paper's ImageNet start (``StartConfig(pretrained=
    "synthpeople")``): an IDE trained on another SynthPeople world, more people drawn from
    another seed (none of them the study's), whose trunk starts the IDE start."""

    data: SynthConfig = SynthConfig(train_ids=384, test_ids=16, cameras=4, images_per_camera=4, seed=1)
    epochs: int = 20


PRETRAINING = Pretraining()


def pretrained_trunk(cfg: StartConfig, device: torch.device, runtime: Runtime | None = None,
                     cache_dir: str | Path | None = START_CACHE, progress: bool = True,
                     pretraining: Pretraining = PRETRAINING) -> dict[str, torch.Tensor]:
    """The trunk's weights (conv1 to conv5) of an IDE trained on ``pretraining.data`` for
    ``pretraining.epochs`` at ``cfg``'s size, seed 0; cached like any start."""
    data = load_or_generate(None, pretraining.data)
    model, _ = ide_start(data, replace(cfg, pretrained=False, epochs=pretraining.epochs, seed=0), device, runtime,
                         cache_dir, progress)
    return {k: v for k, v in model.state_dict().items() if k.startswith("trunk.")}


def data_fingerprint(data) -> str:
    """A short hash of a dataset's name and training split (``sample_keys``: file names,
    identities, cameras): two datasets with the same fingerprint train the same start. The
    positive control (every version, the decoy included) has the default data's file names,
    identities and cameras, not its images: its fingerprint says so (the default data's keeps
    the value it always had)."""
    parts = [data.name, sample_keys(data.train)]
    control = control_settings(data.root) if data.name == "SynthPeople" else {}
    if control.get("control"):
        parts.append("positive control")
        if control["tag_scale"] != 1.0:  # a larger name tag: other images, another start
            parts.append(f"tag x{control['tag_scale']:g}")
    if control.get("tag_moves"):  # version 4: the tag elsewhere, another start
        parts.append("tag moves")
    if control.get("decoy"):  # version 3's decoy: other images again
        parts.append("decoy")
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _start_key(fingerprint: str, cfg: StartConfig, runtime_changes: dict | None = None) -> str:
    text = json.dumps({"data": fingerprint, **asdict(cfg), **(runtime_changes or {})}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _runtime_changes(runtime: Runtime, cfg: StartConfig, device: torch.device) -> dict:
    """What of the runtime changes a start's weights, when it does: bf16 training, an epoch
    cap. (None of it for a full fp32 run, so such starts keep the key they always had.)"""
    changes = {}
    if runtime.uses("amp", device):
        changes["bf16"] = True
    if runtime.max_epochs is not None and runtime.max_epochs < cfg.epochs:
        changes["max_epochs"] = runtime.max_epochs
    return changes


def start_loaders(data, cfg: StartConfig, device: torch.device, runtime: Runtime | None = None,
                  num_workers: int = 0) -> Loaders:
    """The loaders of ``cfg``'s size, batch, identities per batch, seed and erasing: the start
    trains on their training batches, and so do the variants trained from it."""
    runtime = runtime or Runtime()
    return reid_loaders(data, cfg.height, cfg.width, cfg.batch_size, cfg.num_instances, cfg.seed, num_workers,
                        in_memory=runtime.in_memory, device=device, erase_p=cfg.erase_p)


def ide_start(data, cfg: StartConfig, device: torch.device, runtime: Runtime | None = None,
              cache_dir: str | Path | None = START_CACHE, progress: bool = True,
              num_workers: int = 0, pretraining: Pretraining = PRETRAINING) -> tuple[nn.Module, dict]:
    """The IDE start every attention variant trains from: ``cfg.epochs`` of L_ide from
    scratch (Adam or SGD, one warm-up epoch, cosine decay), on ``start_loaders(data, cfg)``;
    with ``cfg.pretrained="synthpeople"``, from the trunk of ``pretraining``
    (``pretrained_trunk``) instead of scratch. Trained once per configuration and kept in
    ``cache_dir`` (None: no cache), so notebooks 02-05 and the study share it. Returns the
    model and ``{"history", "seconds", "cached", "key"}``."""
    runtime = runtime or Runtime()
    cfg = replace(cfg, embed_dim=default_embed_dim(cfg.arch, cfg.embed_dim))  # None: the architecture's
    fingerprint = data_fingerprint(data)
    synth_pretrained = cfg.pretrained == "synthpeople"
    changes = _runtime_changes(runtime, cfg, device)
    if synth_pretrained:  # which pretraining is part of what the start is
        changes["pretraining"] = {**asdict(pretraining.data), "epochs": pretraining.epochs}
    key = _start_key(fingerprint, cfg, changes)
    path = Path(cache_dir) / f"ide-start-{key}.pt" if cache_dir else None
    seed_everything(cfg.seed)
    model = build_model(cfg.arch, cfg.backbone, num_classes=data.num_train_pids,
                        pretrained=False if synth_pretrained else cfg.pretrained,
                        last_stride=cfg.last_stride, embed_dim=cfg.embed_dim)
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("config") == asdict(cfg) and state.get("data") == fingerprint:
            model.load_state_dict(state["model"])
            return model.to(device), {"history": state["history"], "seconds": 0.0, "cached": True, "key": key}
    if synth_pretrained:
        model.load_state_dict(pretrained_trunk(cfg, device, runtime, cache_dir, progress, pretraining), strict=False)
        seed_everything(cfg.seed)  # the start's own batches, whatever the pretraining drew
    train = TrainConfig(epochs=cfg.epochs, optimizer=cfg.optimizer, lr=cfg.lr, schedule="cosine",
                        warmup_epochs=min(1.0, cfg.epochs / 2), runtime=runtime, progress=progress,
                        desc=f"IDE start, seed {cfg.seed}")
    tic = time.perf_counter()
    loader = start_loaders(data, cfg, device, runtime, num_workers).train
    history = fit(model, loader, train, variant_loss(variant_names(cfg.arch)[0]), device)
    seconds = time.perf_counter() - tic
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(path.parent)  # what a killed save left
        save_torch({"config": asdict(cfg), "data": fingerprint, "history": history,  # whole or absent
                    "model": model.state_dict()}, path)
    return model, {"history": history, "seconds": seconds, "cached": False, "key": key}


@torch.no_grad()
def true_class_probability(model: nn.Module, data, height: int, width: int, device: torch.device,
                           batch_size: int = 128) -> float:
    """Mean p(true identity | image) over the training images, unaugmented, in evaluation mode:
    how sure the start is of what it was trained on (its Grad-CAM is taken of that score)."""
    from torch.utils.data import DataLoader

    from .data import ImageDataset, build_transforms

    model.to(device).eval()
    loader = DataLoader(ImageDataset(data.train, build_transforms(height, width)), batch_size=batch_size)
    total, count = 0.0, 0
    for batch in loader:
        probs = model(batch["image"].to(device)).logits.softmax(dim=1)
        total += probs.gather(1, batch["pid"].to(device)[:, None]).sum().item()
        count += len(batch["pid"])
    return total / count
