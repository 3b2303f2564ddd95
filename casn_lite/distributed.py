"""Several GPUs (or CPU processes) with torchrun: DistributedDataParallel around the loss step.

    torchrun --nproc_per_node 4 -m casn_lite train --variant "CASN(IDE)" ...

``init_distributed`` joins the process group torchrun describes in the environment (NCCL
on GPUs, gloo on CPU) and picks this process's device. ``engine.fit`` holds the model and
the loss in one ``engine.LossStep`` and, under torchrun, wraps it in DDP, so every forward a CASN step
makes (the masked images, the pairs, the Grad-CAM passes) happens inside one DDP forward
and the gradients of the model and of the Siamese head are averaged across processes. Samplers are sharded with
``sampler.shard(rank, world)``: each process trains on its own batches.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from .devices import default_device

__all__ = ["init_distributed", "is_distributed", "is_main_process", "cleanup", "replicas_agree"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that prints, evaluates and saves."""
    return not is_distributed() or dist.get_rank() == 0


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) it joins the process group;
    otherwise it is one process on the default device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, default_device()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not is_distributed():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


@torch.no_grad()
def replicas_agree(model: nn.Module) -> bool:
    """Whether every process holds the same weights (always True for one process)."""
    if not is_distributed():
        return True
    checksum = torch.stack([p.double().sum() for p in model.parameters()]).sum().reshape(1)
    every = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(every, checksum)
    return all(torch.equal(every[0], c) for c in every)
