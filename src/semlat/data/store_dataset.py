"""A Dataset over a tensor store (:mod:`semlat.data.store`): what the generative recipes train on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from semlat.data.store import TensorStore
from semlat.errors import DataError


class StoreDataset(Dataset):
    """Items of a store, whole or cropped, optionally normalised with the store's statistics.

    Keys are indices or the ``(index, seed)`` keys of semlat's samplers; with ``crop_frames`` an item
    longer than the crop is cut at a start drawn from the key's seed (deterministic per key). Items:
    ``{"id", "tensor": float32 [D, F], "frames": valid F, "start"}`` plus the index fields named in
    ``fields`` (text, phonemes, speaker, caption, ...). :attr:`durations` feeds
    :class:`~semlat.data.samplers.FrameBudgetBatchSampler`.
    """

    def __init__(self, store: TensorStore, ids: Sequence[str] | None = None, *, crop_frames: int | None = None,
                 normalize: bool = False, fields: Sequence[str] = ("text", "phonemes", "speaker", "caption")):
        self.store = store
        self.ids = list(ids) if ids is not None else [item["id"] for item in store.items]
        self.crop_frames, self.fields = crop_frames, tuple(fields)
        self.stats = store.stats if normalize else None
        if normalize and self.stats is None:
            raise DataError(f"{store.folder}: has no statistics to normalise with (an older folder: regenerate it)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def durations(self) -> list[float]:
        """Seconds of every item (cropped length where a crop is set)."""
        limit = math.inf if self.crop_frames is None else self.crop_frames
        return [min(self.store.frames(i), limit) / self.store.frame_rate for i in self.ids]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, index_seed(key))
        item_id = self.ids[index]
        total = self.store.frames(item_id)
        if self.crop_frames is not None and total > self.crop_frames:
            start = int(torch.randint(0, total - self.crop_frames + 1, (1,),
                                      generator=torch.Generator().manual_seed(seed)))
            tensor, valid = self.store.crop(item_id, start, self.crop_frames)
        else:
            start, tensor, valid = 0, self.store.get(item_id).float(), total
        if self.stats is not None:
            mean, std = self.stats
            tensor = (tensor - mean[:, None]) / std.clamp(min=1e-5)[:, None]
            tensor[:, valid:] = 0
        entry = self.store.item(item_id)
        return {"id": item_id, "tensor": tensor, "frames": valid, "start": start,
                **{f: entry.get(f) for f in self.fields}}


def index_seed(index: int) -> int:
    return int(index) * 7919 + 17


def collate_tensors(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``tensor [B, D, T_max]`` (zero-padded), ``frames [B]``, and the other fields as lists."""
    frames = torch.tensor([int(it["frames"]) for it in items], dtype=torch.long)
    width = max(int(it["tensor"].shape[-1]) for it in items)
    batch = torch.zeros(len(items), items[0]["tensor"].shape[0], width)
    for i, it in enumerate(items):
        batch[i, :, :it["tensor"].shape[-1]] = it["tensor"]
    out: dict[str, Any] = {"tensor": batch, "frames": frames}
    for key in items[0]:
        if key not in out:
            out[key] = [it[key] for it in items]
    return out
