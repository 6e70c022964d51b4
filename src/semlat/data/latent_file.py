"""One latent sequence as a file of its own: ``semlat encode IN.wav OUT.safetensors`` writes it, ``semlat decode``
reads it, and so does a plain safetensors file of one tensor written by other code (:func:`read_latent_file`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from semlat.checkpoints import write_tensors
from semlat.data.store import jsonable, one_line
from semlat.errors import DataError

LATENT_FILE_FORMAT = "semlat-latent/1"
LATENT_KEY = "latents"


def save_latent_file(path: str | os.PathLike, latents: torch.Tensor, meta: Mapping[str, Any]) -> Path:
    """Write one ``[D, T]`` sequence as ``path`` (safetensors, key ``latents``; ``meta`` as JSON)."""
    if latents.dim() != 2:
        raise ValueError(f"latents must be [D, T], got {tuple(latents.shape)}")
    return write_tensors(path, {LATENT_KEY: latents.float()},
                         {"format": LATENT_FILE_FORMAT, "meta": json.dumps(jsonable(meta), ensure_ascii=False)})


def read_latent_file(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(latents, meta)`` of a latent file: one written by :func:`save_latent_file` (``[D, T]`` and its
    metadata), or any safetensors file holding exactly one 2-D tensor, or one 3-D tensor with a batch of 1
    (latents made by other code): that tensor as 2-D, with ``meta`` ``{"plain": True}`` (its orientation,
    ``[D, T]`` or ``[T, D]``, is settled against a latent space's width by :func:`orient_latents`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such latent file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise DataError(f"{path}: unreadable latent file ({one_line(err)})") from None
    if metadata.get("format") != LATENT_FILE_FORMAT or LATENT_KEY not in tensors:
        if len(tensors) != 1:
            raise DataError(f"{path}: {len(tensors)} tensors ({', '.join(sorted(tensors)[:4])}) and no semlat "
                            f"metadata: give one [D, T] tensor, or write the file with "
                            f"semlat.data.store.save_latent_file")
        (name, tensor), = tensors.items()
        if tensor.dim() == 3 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 2 or not tensor.is_floating_point():
            raise DataError(f"{path}: tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')} "
                            f"{tuple(tensor.shape)}; latents are one float [D, T] (or [1, D, T]) tensor")
        return tensor, {"plain": True}
    try:
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: the latent file's metadata is not valid JSON") from None
    return tensors[LATENT_KEY], meta


def orient_latents(latents: torch.Tensor, meta: Mapping[str, Any], dim: int, where: str) -> torch.Tensor:
    """A latent file's ``[D, T]`` for a space of width ``dim``: a plain file's tensor is transposed when only its
    second axis has that width; one that fits both ways or neither is a one-line DataError."""
    if not meta.get("plain"):
        return latents
    rows, cols = latents.shape
    if rows == dim and cols == dim:
        raise DataError(f"{where}: a plain {rows} x {cols} tensor is ambiguous for a {dim}-channel space "
                        "(write it with semlat.data.store.save_latent_file)")
    if cols == dim and rows != dim:
        return latents.t().contiguous()
    if rows != dim:
        raise DataError(f"{where}: a {rows} x {cols} tensor does not fit a space of {dim} channels")
    return latents
