"""The one device picker: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (or a torch.device)."""

from __future__ import annotations

import os

import torch

from semlat.errors import ConfigError


def pick_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """The device ``device`` names. ``auto`` is CUDA when available, else the CPU; ``auto`` and a bare
    ``cuda`` take ``cuda:local_rank`` (by default ``$LOCAL_RANK``, as torchrun sets it). Asking for CUDA
    where there is none is a one-line ConfigError."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if name == "cuda":
                raise ConfigError("device cuda was asked for but no CUDA device is available")
            return torch.device("cpu")
        rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
        return torch.device(f"cuda:{rank}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
