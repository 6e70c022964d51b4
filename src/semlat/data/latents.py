"""Latents on disk: safetensors shards plus an ``index.json``.

Layout of a latent folder (written by ``semlat encode``, read by ``semlat decode`` and by latent
generative models)::

    index.json                  {"format": "semlat-latents/1", "latent_dim", "frame_rate",
                                 "sample_rate", "model", "model_type", "dtype",
                                 "items": [{"id", "shard", "frames", "duration", "text"?, ...}]}
    latents-00000.safetensors   one tensor [D, T] per item, keyed by its id

Shards are written atomically as they fill; the index is written last, so a folder with an index
is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from semlat.checkpoints import write_tensors
from semlat.errors import DataError
from semlat.utils.files import atomic_write_text

FORMAT = "semlat-latents/1"
INDEX = "index.json"


class LatentWriter:
    """Collects ``[D, T]`` latents and writes shards of at most ``shard_bytes`` / ``shard_items``."""

    def __init__(self, folder: str | os.PathLike, meta: Mapping[str, Any], *, shard_bytes: int = 512 << 20,
                 shard_items: int = 4096):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self.shard_bytes, self.shard_items = shard_bytes, shard_items
        self.items: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shard = 0

    def _shard_name(self) -> str:
        return f"latents-{self._shard:05d}.safetensors"

    def add(self, item_id: str, latents: torch.Tensor, info: Mapping[str, Any] | None = None) -> None:
        """Store ``latents [D, T]`` under ``item_id`` with extra index fields ``info``."""
        if latents.dim() != 2:
            raise ValueError(f"latents must be [D, T], got {tuple(latents.shape)}")
        if item_id in self._ids:
            raise DataError(f"duplicate latent id {item_id!r}")
        self._ids.add(item_id)
        self._pending[item_id] = latents.detach().cpu().contiguous()
        self._pending_bytes += latents.numel() * latents.element_size()
        self.items.append({"id": item_id, "shard": self._shard_name(), "frames": int(latents.shape[-1]),
                           **dict(info or {})})
        if self._pending_bytes >= self.shard_bytes or len(self._pending) >= self.shard_items:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            write_tensors(self.folder / self._shard_name(), self._pending)
            self._pending, self._pending_bytes = {}, 0
            self._shard += 1

    def close(self) -> Path:
        """Write the last shard and the index; returns the index path."""
        self._flush()
        index = {"format": FORMAT, **self.meta, "items": self.items}
        atomic_write_text(self.folder / INDEX, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        return self.folder / INDEX


class LatentReader:
    """Reads a latent folder; iterate for ``(item, latents [D, T])`` pairs."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise DataError(f"{self.folder}: not a latent folder ({INDEX} is missing)")
        try:
            self.index = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON ({err.msg})") from None
        if self.index.get("format") != FORMAT:
            raise DataError(f"{path}: unknown latent format {self.index.get('format')!r} (expected {FORMAT})")

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.index["items"]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for item in self.items:
            by_shard.setdefault(item["shard"], []).append(item)
        for shard, items in by_shard.items():
            try:
                with safe_open(str(self.folder / shard), framework="pt") as f:
                    for item in items:
                        yield item, f.get_tensor(item["id"])
            except (SafetensorError, OSError) as err:
                raise DataError(f"{self.folder / shard}: unreadable latent shard ({err})") from None
