"""Image transforms for re-ID, built from torchvision's transforms v2.

Training follows the usual re-ID recipe (as in the IDE and PCB baselines):
resize, random horizontal flip, pad-and-crop, normalise, random erasing.
Geometric steps also move a ``tv_tensors.Mask`` passed alongside the image, so the
SynthPeople masks stay aligned with their pictures.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms", "denormalize", "default_pad"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_pad(height: int) -> int:
    """The pad-and-crop shift for an input ``height`` pixels tall: 1/16 of it (16 pixels at
    the paper's 256 x 128, 4 at 64 x 32)."""
    return height // 16


def build_transforms(
    height: int,
    width: int,
    train: bool = False,
    flip_p: float = 0.5,
    pad: int | None = None,
    erase_p: float = 0.5,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> v2.Compose:
    """PIL image -> normalised float tensor [3, height, width]; random only when ``train``
    (``pad``: the pad-and-crop shift in pixels, by default ``default_pad(height)``)."""
    pad = default_pad(height) if pad is None else pad
    steps: list = [v2.ToImage(), v2.Resize((height, width), antialias=True)]
    if train:
        if flip_p > 0:
            steps.append(v2.RandomHorizontalFlip(flip_p))
        if pad > 0:
            steps += [v2.Pad(pad), v2.RandomCrop((height, width))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if train and erase_p > 0:
        steps.append(v2.RandomErasing(erase_p, value=0))
    return v2.Compose(steps)


def denormalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Undo Normalize for display: [..., 3, H, W] tensor back to [0, 1]."""
    m = torch.tensor(mean, device=images.device).view(3, 1, 1)
    s = torch.tensor(std, device=images.device).view(3, 1, 1)
    return (images * s + m).clamp(0, 1)
