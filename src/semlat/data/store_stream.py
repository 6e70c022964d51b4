"""A tensor store read as a stream: shard by shard, never its whole index (``data.stream=true`` of the TTS recipe).

:class:`~semlat.data.store.TensorStore` reads ``index.json``, one entry per item, on every rank: fine for the demo,
the memory trap at the papers' scale. Each shard of a store already carries its own items and statistics in its
safetensors header (:mod:`semlat.data.store`), so :class:`StoreStream` needs only ``store.json`` (the settings),
the list of shard files and, once, every shard's header for the statistics. :class:`StoreBatches` deals the shards
to the ranks per epoch (shuffled with the run's seed), reads a rank's shards one at a time and makes frame-budget
batches from a pool of their items, lazily and deterministically, so the trainer's resume (skip the batches
already taken, each rank at its own position) is exact.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch.utils.data import Dataset, Sampler

from semlat.data.shards import budget_batches
from semlat.data.store import MARKER, ChannelStats, merge_stats, shard_files, shard_meta
from semlat.errors import DataError

Key = tuple[str, str, int]  # (shard file name, item id, seed)


class StoreStream:
    """The metadata and tensors of a store, shard by shard (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        marker = self.folder / MARKER
        if not marker.is_file():
            raise DataError(f"{self.folder}: not a tensor store ({MARKER} is missing)")
        self.settings: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
        self.shards = [path.name for _, _, path in shard_files(self.folder)]
        if not self.shards:
            raise DataError(f"{self.folder}: a tensor store without shards")
        self._stats: ChannelStats | None = None
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    @property
    def dim(self) -> int:
        return int(self.settings.get("dim", self.settings.get("latent_dim")))

    @property
    def frame_rate(self) -> float:
        return float(self.settings["frame_rate"])

    @property
    def space_info(self) -> dict[str, Any]:
        info = {key: self.settings[key] for key in ("input_rate", "output_rate", "sample_rate") if key in self.settings}
        return {**info, "latent_dim": self.dim, "frame_rate": self.frame_rate}

    def items(self, shard: str) -> list[dict[str, Any]]:
        """The items a shard's header lists (ids, frames and the manifest fields), with ``shard`` set."""
        found = shard_meta(self.folder / shard, self.settings)
        if found is None:
            raise DataError(f"{self.folder / shard}: truncated or unreadable shard")
        return [{**item, "shard": shard} for item in found[0]]

    @property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean [D], std [D])`` merged from every shard's header (read once), or None if a shard has none."""
        if self._stats is None:
            parts = []
            for shard in self.shards:
                found = shard_meta(self.folder / shard, self.settings)
                if found is None:
                    raise DataError(f"{self.folder / shard}: truncated or unreadable shard")
                if found[1] is None:
                    return None
                parts.append(found[1])
            self._stats = merge_stats(parts)
        return self._stats.mean.float(), self._stats.std.float()

    def rank_shards(self, epoch: int, seed: int, rank: int, world_size: int) -> list[str]:
        if len(self.shards) < world_size:
            raise DataError(f"{self.folder}: {len(self.shards)} shard(s) for {world_size} ranks; every rank needs its "
                            "own (encode with more shards, or train with fewer processes)")
        order = list(range(len(self.shards)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return [self.shards[i] for i in order[rank::world_size]]

    def get(self, shard: str, item_id: str) -> torch.Tensor:
        """All frames of ``item_id``: ``[D, T]`` as stored."""
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            if len(self._handles) >= 16:
                self._handles.clear()
            try:
                self._handles[shard] = safe_open(str(self.folder / shard), framework="pt")
            except (SafetensorError, OSError) as err:
                raise DataError(f"{self.folder / shard}: unreadable shard ({err})") from None
        return self._handles[shard].get_tensor(item_id)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}


class StoreBatches(Sampler):
    """Frame-budget batches of ``(shard, id, seed)`` keys from this rank's shards (module docstring).

    ``accept(item)`` picks the items to train on; a batch's size times its longest item stays within
    ``max_frames`` (longer items are skipped) and its size within ``max_batch_size``; ``pool`` items at a time are
    bucketed by length."""

    def __init__(self, store: StoreStream, accept: Callable[[dict[str, Any]], bool], max_frames: int, *,
                 max_batch_size: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pool: int = 2000):
        self.store, self.accept, self.max_frames, self.max_batch_size = store, accept, max_frames, max_batch_size
        self.seed, self.rank, self.world_size, self.pool = seed, rank, world_size, pool
        self.epoch = 0
        store.rank_shards(0, seed, rank, world_size)  # enough shards for the ranks: checked now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[Key]]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:store")
        pool: list[tuple[Key, int]] = []

        def flush() -> Iterator[list[Key]]:
            for batch in budget_batches(pool, lambda k: k[1], self.max_frames, rng, self.max_batch_size):
                yield [key for key, _ in batch]

        for shard in self.store.rank_shards(self.epoch, self.seed, self.rank, self.world_size):
            items = [item for item in self.store.items(shard)
                     if self.accept(item) and int(item["frames"]) <= self.max_frames]
            rng.shuffle(items)
            for item in items:
                pool.append(((shard, item["id"], rng.randrange(2**31)), int(item["frames"])))
                if len(pool) >= self.pool:
                    yield from flush()
                    pool = []
        yield from flush()


class StoreStreamItems(Dataset):
    """Items for :class:`StoreBatches` keys, as :class:`~semlat.data.store_dataset.StoreDataset` gives them:
    ``{"id", "tensor": float32 [D, T], "frames", "start"}`` plus the item's ``fields``; with ``crop_frames`` a longer
    item is cut to a window at a start drawn from the key's seed."""

    def __init__(self, store: StoreStream, fields: tuple[str, ...] = ("text", "phonemes"),
                 items: dict[tuple[str, str], dict[str, Any]] | None = None, crop_frames: int | None = None):
        self.store, self.fields, self.crop_frames = store, fields, crop_frames
        self._items = items  # (the few validation items, known in advance)
        self._shard_items: dict[str, dict[str, dict[str, Any]]] = {}

    def _item(self, shard: str, item_id: str) -> dict[str, Any]:
        if self._items is not None and (shard, item_id) in self._items:
            return self._items[(shard, item_id)]
        if shard not in self._shard_items:  # one shard's header at a time
            self._shard_items = {shard: {item["id"]: item for item in self.store.items(shard)}}
        return self._shard_items[shard][item_id]

    def __getitem__(self, key: Key) -> dict[str, Any]:
        shard, item_id, seed = key
        item = self._item(shard, item_id)
        tensor = self.store.get(shard, item_id).float()
        start = 0
        if self.crop_frames is not None and tensor.shape[-1] > self.crop_frames:  # a window drawn from the key's seed
            start = int(torch.randint(0, tensor.shape[-1] - self.crop_frames + 1, (1,),
                                      generator=torch.Generator().manual_seed(seed)))
            tensor = tensor[:, start:start + self.crop_frames]
        return {"id": item_id, "tensor": tensor, "frames": int(tensor.shape[-1]), "start": start,
                **{f: item.get(f) for f in self.fields}}

    def __len__(self) -> int:
        raise TypeError("a store stream has no length")
