"""Where a single process computes: the GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

__all__ = ["default_device"]


def default_device() -> torch.device:
    """CUDA when present, else CPU: the device of a single process."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
