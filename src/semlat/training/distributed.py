"""torch.distributed setup: one process, or many under ``torchrun`` (env:// initialisation).

Backends: NCCL when the process drives a GPU, gloo on CPU. Each process sees its rank, the world
size and its device in a :class:`DistInfo`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from semlat.data.sharding import Ranks
from semlat.utils.devices import pick_device


@dataclass(frozen=True)
class DistInfo(Ranks):
    """Where this process stands: its share (:class:`~semlat.data.sharding.Ranks`: rank, world size, whether
    barriers work), its local rank and its device."""

    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group when ``WORLD_SIZE`` > 1 (set by torchrun) and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank, world, world > 1 and dist.is_initialized(), local_rank, chosen)


def shutdown() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    info.barrier()


def mean_across_ranks(values: Mapping[str, float], info: DistInfo) -> dict[str, float]:
    """Average each value over all ranks (every rank must call this with the same keys)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    tensor /= info.world_size
    return dict(zip(keys, tensor.tolist()))


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True if ``flag`` is true on any rank (used so all ranks stop together)."""
    if not info.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def average_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Average ``module``'s floating-point buffers over the ranks (BatchNorm running statistics, which DDP
    otherwise leaves as each rank computed them after its last forward): the running mean becomes the one
    over the global batch; the running variance the mean of the ranks' (their between-rank spread omitted)."""
    if not info.distributed:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(info.world_size)
