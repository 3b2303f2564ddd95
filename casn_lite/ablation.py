"""The ablation protocol of notebooks 04 and 05, and the paper's Table 3 to compare with.

Protocol, per seed: train IDE from scratch for a few epochs (the shared start, as ImageNet
weights are the paper's shared start), then train every variant for the same number of
further epochs from that start, with the same data order. The variants differ only in
the flags of ``CASNLoss``; the IDE row is trained exactly as long as the others.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .engine import TrainConfig, fit, seed_everything
from .losses import CASNLoss

__all__ = ["VARIANTS", "PAPER_TABLE3", "variant_names", "variant_loss", "train_from", "aggregate",
           "markdown_table"]

# the paper's names -> (IA on, SA on); the architecture is in the name
VARIANTS = {"IDE": (False, False), "IDE+IA": (True, False), "IDE+SA": (False, True), "CASN(IDE)": (True, True),
            "PCB": (False, False), "PCB+IA": (True, False), "PCB+SA": (False, True), "CASN(PCB)": (True, True)}

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


def variant_names(arch: str = "ide") -> list[str]:
    """The four variants of one architecture, in the paper's order."""
    base = arch.upper()
    return [base, f"{base}+IA", f"{base}+SA", f"CASN({base})"]


def variant_loss(name: str, **options) -> CASNLoss:
    """The ``CASNLoss`` of a variant by its paper name; ``options`` are CASNLoss's knobs."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    ia, sa = VARIANTS[name]
    return CASNLoss(ia=ia, sa=sa, arch="pcb" if "PCB" in name else "ide", **options)


def train_from(start: nn.Module, loader, cfg: TrainConfig, loss_fn, device: torch.device,
               seed: int, checkpoint_dir: str | Path | None = None) -> dict:
    """Train a copy of ``start`` (left untouched) with ``loss_fn``; seeded, so every variant
    sees the same batches. Returns the model, its history and the wall time. With a
    ``checkpoint_dir`` an interrupted run resumes, and a finished one is not redone."""
    seed_everything(seed)
    model = copy.deepcopy(start)
    cfg = replace(cfg, checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                  resume=checkpoint_dir is not None)
    tic = time.perf_counter()
    history = fit(model, loader, cfg, loss_fn, device)
    return {"model": model, "loss": loss_fn, "history": history, "seconds": time.perf_counter() - tic}


def aggregate(records: list[dict], keys: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per variant and metric: (mean, sample standard deviation, number of seeds)."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = [r for r in records if r["variant"] == variant]
        out[variant] = {}
        for key in keys:
            values = np.array([r[key] for r in rows], dtype=float)
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
