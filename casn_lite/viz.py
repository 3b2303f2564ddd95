"""Figures: images by camera, training curves, CMC curves, ranked galleries."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from .data.datasets import ReIDData, Sample, read_image

__all__ = ["identity_across_cameras", "sample_grid", "plot_history", "plot_cmc", "plot_ranked"]

GREEN, RED = (0.1, 0.7, 0.2), (0.85, 0.1, 0.1)


def _show(ax, image: Image.Image | np.ndarray, title: str = "", frame=None) -> None:
    """One picture on an axis, without ticks; an optional coloured frame."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(4)


def identity_across_cameras(samples: Sequence[Sample], pid: int, per_camera: int = 2):
    """Every camera's view of one identity: one column per camera."""
    by_cam: dict[int, list[Sample]] = {}
    for s in samples:
        if s.pid == pid:
            by_cam.setdefault(s.camid, []).append(s)
    cams = sorted(by_cam)
    fig, axes = plt.subplots(per_camera, len(cams), figsize=(1.3 * len(cams), 2.5 * per_camera), squeeze=False)
    for col, cam in enumerate(cams):
        for row in range(per_camera):
            ax = axes[row, col]
            if row < len(by_cam[cam]):
                _show(ax, read_image(by_cam[cam][row].path), f"camera {cam + 1}" if row == 0 else "")
            else:
                ax.axis("off")
    fig.suptitle(f"identity {pid} seen by {len(cams)} cameras")
    fig.tight_layout()
    return fig


def sample_grid(data: ReIDData, num_ids: int = 6, split: str = "train", seed: int = 0):
    """Rows: identities; columns: cameras (an empty cell where a camera never saw that person)."""
    samples = getattr(data, split)
    rng = np.random.default_rng(seed)
    pids = rng.choice(sorted({s.pid for s in samples if s.pid > 0 or split == "train"}), num_ids, replace=False)
    cams = data.num_cameras
    fig, axes = plt.subplots(num_ids, cams, figsize=(1.1 * cams, 2.1 * num_ids), squeeze=False)
    for r, pid in enumerate(pids):
        for c in range(cams):
            shots = [s for s in samples if s.pid == pid and s.camid == c]
            ax = axes[r, c]
            if shots:
                _show(ax, read_image(shots[0].path), f"cam {c + 1}" if r == 0 else "")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"id {pid}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], losses: Sequence[str] = ("loss",),
                 metrics: Sequence[str] = ("rank1", "mAP")):
    """Loss terms (left) and retrieval metrics in % (right) per epoch."""
    epochs = [h["epoch"] for h in history]
    shown = [m for m in metrics if m in history[0]]
    fig, axes = plt.subplots(1, 2 if shown else 1, figsize=(9 if shown else 4.5, 3), squeeze=False)
    for k in losses:
        axes[0, 0].plot(epochs, [h[k] for h in history], marker="o", label=k)
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title="training loss")
    axes[0, 0].legend()
    if shown:
        for m in shown:
            axes[0, 1].plot(epochs, [100 * h[m] for h in history], marker="o", label=m)
        axes[0, 1].set(xlabel="epoch", ylabel="%", title="test retrieval")
        axes[0, 1].legend()
    fig.tight_layout()
    return fig


def plot_cmc(curves: dict[str, np.ndarray], max_rank: int = 20):
    """Cumulative matching characteristic: share of queries matched within the top k."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for name, cmc in curves.items():
        k = min(max_rank, len(cmc))
        ax.plot(np.arange(1, k + 1), 100 * np.asarray(cmc[:k]), marker=".", label=name)
    ax.set(xlabel="rank k", ylabel="matched within top k (%)", title="CMC", ylim=(0, 101))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_ranked(query: Sequence[Sample], gallery: Sequence[Sample], distmat: np.ndarray | torch.Tensor,
                query_indices: Sequence[int], topk: int = 8):
    """For each chosen query: the query, then its top-k gallery images framed green (same
    identity) or red. Gallery images of the query's identity from its own camera are skipped,
    as the evaluation protocol ignores them."""
    dist = torch.as_tensor(distmat)
    fig, axes = plt.subplots(len(query_indices), topk + 1, figsize=(1.1 * (topk + 1), 2.3 * len(query_indices)),
                             squeeze=False)
    for row, qi in enumerate(query_indices):
        q = query[qi]
        _show(axes[row, 0], read_image(q.path), f"query id {q.pid}\ncam {q.camid + 1}", frame=(0.2, 0.2, 0.2))
        shown = 0
        for gi in torch.argsort(dist[qi]).tolist():
            g = gallery[gi]
            if g.pid == q.pid and g.camid == q.camid:
                continue
            shown += 1
            _show(axes[row, shown], read_image(g.path), f"#{shown} id {g.pid}", frame=GREEN if g.pid == q.pid else RED)
            if shown == topk:
                break
    fig.tight_layout()
    return fig
