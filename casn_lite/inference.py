"""Inference with an exported model: rank a folder of gallery images for a query image."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data.datasets import IMAGE_SUFFIXES, read_image
from .data.transforms import build_transforms
from .evaluation import pairwise_distance

__all__ = ["embed_images", "rank_gallery"]


@torch.no_grad()
def embed_images(model: nn.Module, paths: list[Path], input_size: tuple[int, int],
                 batch_size: int = 64) -> torch.Tensor:
    """L2-normalised retrieval features of image files, as the model was trained to see them."""
    transform = build_transforms(*input_size)
    device = next(model.parameters()).device
    features = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([transform(read_image(p)) for p in paths[start:start + batch_size]])
        features.append(F.normalize(model(batch.to(device)).embedding.float(), dim=1).cpu())
    return torch.cat(features)


def rank_gallery(model: nn.Module, input_size: tuple[int, int], query: str | Path,
                 gallery: str | Path, topk: int = 10) -> list[tuple[Path, float]]:
    """The ``topk`` images of the ``gallery`` folder closest to the ``query`` image (cosine
    distance), nearest first."""
    query, gallery = Path(query), Path(gallery)
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    if not query.is_file():
        raise FileNotFoundError(f"query image {query} does not exist")
    if not gallery.is_dir():
        raise FileNotFoundError(f"gallery folder {gallery} does not exist")
    paths = sorted(p for p in gallery.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"gallery folder {gallery} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    q = embed_images(model, [query], input_size)
    g = embed_images(model, paths, input_size)
    distance = pairwise_distance(q, g)[0]  # refuses non-finite features (a diverged model)
    order = torch.argsort(distance)[:topk]
    return [(paths[i], float(distance[i])) for i in order]
