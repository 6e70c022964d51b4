"""Samplers that shard data across distributed ranks and reshuffle every epoch.

Both samplers yield *keys* ``(index, seed)`` rather than bare indices: ``seed`` is a fixed function
of ``(base seed, epoch, index)`` that datasets use for their own randomness (e.g. where to crop).
A run is then reproducible from its seed and epoch alone, whatever the number of loader workers,
and a resumed run sees exactly the data it would have seen. Call ``set_epoch`` before every epoch
(forgetting it replays the same order every epoch; ``tests/test_samplers.py`` checks both samplers
reshuffle and give every rank different data).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

Key = tuple[int, int]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The per-item random seed for ``index`` in ``epoch`` of a run seeded with ``seed``.

    Negative values are allowed (taken modulo 2^64); -1 serves as a tag for "no epoch" / "no item".
    """
    words = [v % 2**64 for v in (seed, epoch, index)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments if given, else torch.distributed's, else ``(0, 1)``."""
    dist = torch.distributed
    if world_size is None:
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size


class ShardedSampler(Sampler[Key]):
    """Every rank gets a disjoint ``1 / world_size`` share of the items, in a new order every epoch.

    Without ``drop_last`` the order is padded with its own first items so that all ranks yield the
    same count (as ``torch.utils.data.DistributedSampler`` does).
    """

    def __init__(self, num_items: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None):
        if num_items <= 0:
            raise ValueError("ShardedSampler needs at least one item")
        self.num_items, self.shuffle, self.seed, self.drop_last = num_items, shuffle, seed, drop_last
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.world_size
        return math.ceil(self.num_items / self.world_size)

    def __iter__(self) -> Iterator[Key]:
        if self.shuffle:
            g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        total = len(self) * self.world_size
        if total > len(order):
            order = (order * math.ceil(total / len(order)))[:total]
        for index in order[self.rank:total:self.world_size]:
            yield index, item_seed(self.seed, self.epoch, index)


class FrameBudgetBatchSampler(Sampler[list[Key]]):
    """Batches of similar-length items whose padded size stays within a frame budget.

    An item of ``d`` seconds counts ``ceil(d * frame_rate)`` frames; a batch's cost is its size
    times its longest item, and never exceeds ``max_frames`` (items longer than the whole budget
    are skipped and counted in ``num_skipped``). Each epoch the items are shuffled, grouped into
    ``num_buckets`` duration buckets (quantiles), batched greedily within buckets, and the batches
    shuffled; rank ``r`` takes batches ``r, r + world, ...`` and every rank yields the same number.
    """

    def __init__(self, durations: Sequence[float], max_frames: int, frame_rate: float, *,
                 max_batch_size: int | None = None, num_buckets: int = 10, shuffle: bool = True,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None):
        if max_frames <= 0 or frame_rate <= 0:
            raise ValueError("max_frames and frame_rate must be positive")
        self.frames = np.ceil(np.asarray(durations, dtype=np.float64) * frame_rate).astype(np.int64)
        self.max_frames, self.max_batch_size = max_frames, max_batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.num_skipped = int((self.frames > max_frames).sum())
        usable = self.frames[self.frames <= max_frames]
        if usable.size == 0:
            raise ValueError(f"every item is longer than the budget of {max_frames} frames")
        edges = np.quantile(usable, np.linspace(0, 1, num_buckets + 1)[1:-1]) if num_buckets > 1 else []
        self.bucket = np.searchsorted(np.asarray(edges), self.frames, side="right")
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.frames)) if self.shuffle else np.arange(len(self.frames))
        order = order[self.frames[order] <= self.max_frames]
        # Stable sort by bucket, then by length inside the bucket: the random order breaks ties.
        order = order[np.lexsort((self.frames[order], self.bucket[order]))]
        batches, batch, longest = [], [], 0
        for index in order.tolist():
            f = int(self.frames[index])
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or (len(batch) + 1) * max(longest, f) > self.max_frames):
                batches.append(batch)
                batch, longest = [], 0
            batch.append(index)
            longest = max(longest, f)
        if batch:
            batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        per_rank = len(batches) // self.world_size
        if per_rank == 0:
            raise ValueError(f"{len(batches)} batches cannot feed {self.world_size} ranks; lower max_frames")
        mine = batches[self.rank::self.world_size][:per_rank]
        self._cache = (self.epoch, mine)
        return mine

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[Key]]:
        for batch in self._batches():
            yield [(i, item_seed(self.seed, self.epoch, i)) for i in batch]
