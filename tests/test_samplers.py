"""Samplers: different data on every rank, a new order every epoch, frame budgets respected."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import free_port
from semlat.data.samplers import FrameBudgetBatchSampler, ShardedSampler, item_seed


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sharded_sampler_splits_ranks_and_reshuffles():
    shards = [_epoch(ShardedSampler(10, rank=r, world_size=3, seed=1), 0) for r in range(3)]
    indices = [[i for i, _ in s] for s in shards]
    assert all(len(s) == 4 for s in indices)  # padded to equal length
    assert sorted(set().union(*map(set, indices))) == list(range(10))  # 10 items in 12 slots: 2 repeats
    halves = [[i for i, _ in ShardedSampler(10, rank=r, world_size=2, seed=1)] for r in range(2)]
    assert sorted(halves[0] + halves[1]) == list(range(10))  # no padding needed: disjoint halves
    sampler = ShardedSampler(50, rank=0, world_size=2, seed=3)
    e0, e0_again, e1 = _epoch(sampler, 0), _epoch(sampler, 0), _epoch(sampler, 1)
    assert e0 == e0_again and [i for i, _ in e0] != [i for i, _ in e1]
    assert all(seed == item_seed(3, 1, i) for i, seed in e1)
    assert {seed for _, seed in e0}.isdisjoint({seed for _, seed in e1})  # new crops every epoch
    dropped = ShardedSampler(10, rank=2, world_size=3, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 3
    plain = ShardedSampler(5, shuffle=False, rank=0, world_size=1)
    assert [i for i, _ in plain] == [0, 1, 2, 3, 4]


def test_frame_budget_batches():
    durations = [0.5 + (i % 17) * 0.37 for i in range(200)] + [100.0]
    rate, budget = 50.0, 1500
    samplers = [FrameBudgetBatchSampler(durations, budget, rate, rank=r, world_size=2, seed=5, max_batch_size=16)
                for r in range(2)]
    assert samplers[0].num_skipped == 1  # the 100 s item cannot fit the budget
    batches = [_epoch(s, 0) for s in samplers]
    assert len(batches[0]) == len(batches[1]) == len(samplers[0])
    seen = []
    for rank_batches in batches:
        for batch in rank_batches:
            frames = [int(-(-durations[i] * rate // 1)) for i, _ in batch]
            assert len(batch) * max(frames) <= budget and len(batch) <= 16
            seen.extend(i for i, _ in batch)
    assert len(seen) == len(set(seen))  # ranks never share an item
    assert 200 - len(seen) < 40 and 200 not in seen  # only the remainder batch is left out
    spread = [max(durations[i] for i, _ in b) - min(durations[i] for i, _ in b) for b in batches[0]]
    assert sum(spread) / len(spread) < 1.0  # bucketing keeps batches homogeneous (range 0.5..6.4 s)
    again = _epoch(samplers[0], 0)
    later = _epoch(samplers[0], 1)
    assert again == batches[0] and [sorted(i for i, _ in b) for b in later] != [sorted(i for i, _ in b) for b in again]
    with pytest.raises(ValueError, match="longer than the budget"):
        FrameBudgetBatchSampler([10.0], 100, 50.0)



def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sampler = ShardedSampler(64, seed=7)  # rank and world size come from torch.distributed
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs.append(torch.tensor([i for i, _ in sampler]))
        budget = FrameBudgetBatchSampler([1.0 + (i % 5) for i in range(64)], 600, 50.0, seed=7)
        batches = torch.tensor([i for b in budget for i, _ in b] + [-1] * 64)[:64]
        gathered = [torch.zeros(3, 64, dtype=torch.long) for _ in range(world)]
        mine = torch.stack([torch.nn.functional.pad(e, (0, 64 - len(e)), value=-1) for e in epochs] + [batches])
        dist.all_gather(gathered, mine)
        if rank == 0:
            torch.save(torch.stack(gathered), os.path.join(out_dir, "gathered.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_get_different_data_each_epoch(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    gathered = torch.load(tmp_path / "gathered.pt", weights_only=True)  # [rank, (epoch0, epoch1, budget), 64]
    for row in range(3):
        a, b = (set(gathered[r, row].tolist()) - {-1} for r in range(2))
        assert a and b and not (a & b), f"ranks share items in row {row}"
    assert (set(gathered[0, 0].tolist()) | set(gathered[1, 0].tolist())) - {-1} == set(range(64))
    assert gathered[0, 0].tolist() != gathered[0, 1].tolist()  # rank 0 reshuffled for epoch 1
