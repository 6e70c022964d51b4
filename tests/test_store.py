"""The tensor store: random access, statistics equal to one pass, resume after a kill, two ranks,
the Dataset with the frame-budget sampler, and older folders."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from conftest import free_port
from semlat.checkpoints import write_tensors
from semlat.data.samplers import FrameBudgetBatchSampler
from semlat.data.store import ChannelStats, StoreWriter, TensorStore, merge_stats
from semlat.data.store_dataset import StoreDataset, collate_tensors
from semlat.errors import DataError

SETTINGS = {"kind": "latents", "dim": 4, "frame_rate": 10.0, "dtype": "float32", "model": "/m"}


def _tensors(count: int = 9) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {f"u{k}": torch.randn(4, 5 + 7 * k, generator=gen) * (k + 1) + k for k in range(count)}


def _write(folder, tensors, *, fail_after=None, shard_items=2, rank=None, world_size=None):
    writer = StoreWriter(folder, SETTINGS, shard_items=shard_items, rank=rank, world_size=world_size)
    ids = list(tensors)
    with writer:
        for n, item_id in enumerate(writer.mine(ids)):
            if item_id in writer.done:
                continue
            if fail_after is not None and n >= fail_after:
                raise KeyboardInterrupt  # killed mid-write
            writer.add(item_id, tensors[item_id], {"text": f"t{item_id}", "duration": tensors[item_id].shape[1] / 10})
    return writer.finish(ids)


def test_random_access_crops_and_statistics_of_one_pass(tmp_path):
    tensors = _tensors()
    _write(tmp_path / "s", tensors)
    store = TensorStore(tmp_path / "s")
    assert len(store) == 9 and store.kind == "latents" and store.dim == 4 and store.frame_rate == 10.0
    assert torch.equal(store.get("u3"), tensors["u3"]) and store.frames("u3") == 26
    crop, valid = store.crop("u3", 20, 10)
    assert crop.shape == (4, 10) and valid == 6 and torch.equal(crop[:, :6], tensors["u3"][:, 20:])
    assert not crop[:, 6:].any()
    every = torch.cat(list(tensors.values()), dim=1).double()
    mean, std = store.stats
    torch.testing.assert_close(mean.double(), every.mean(1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(std.double(), every.std(1, unbiased=False), atol=1e-6, rtol=1e-6)
    assert store.index["stats"]["frames"] == every.shape[1]
    # merging in any grouping gives the same figures
    parts = [ChannelStats.of(t) for t in tensors.values()]
    a = merge_stats(parts)
    b = merge_stats([merge_stats(parts[:4]), merge_stats(parts[4:])])
    torch.testing.assert_close(a.mean, b.mean) and torch.testing.assert_close(a.m2, b.m2)
    assert [item["id"] for item, _ in store] == list(tensors)
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")


def test_resume_after_a_kill_mid_write(tmp_path):
    tensors = _tensors()
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        _write(out, tensors, fail_after=5)
    assert not (out / "index.json").exists() and len(list(out.glob("tensors-r00-*"))) == 3  # 5 items, flushed
    (out / ".tensors-r00-00007.x.tmp.safetensors").write_bytes(b"half a shard")
    _write(out, tensors)
    _write(tmp_path / "fresh", tensors)
    resumed, fresh = TensorStore(out), TensorStore(tmp_path / "fresh")
    assert [i["id"] for i in resumed.items] == [i["id"] for i in fresh.items]
    assert all(torch.equal(resumed.get(k), fresh.get(k)) for k in tensors)
    assert resumed.index["stats"]["frames"] == fresh.index["stats"]["frames"]
    torch.testing.assert_close(resumed.stats[0], fresh.stats[0]) and torch.testing.assert_close(resumed.stats[1],
                                                                                                fresh.stats[1])
    assert not list(out.glob(".*.tmp.safetensors"))
    with pytest.raises(DataError, match="model='/m'.*model='/other'"):
        StoreWriter(out, {**SETTINGS, "model": "/other"})


def _rank_worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _write(folder, _tensors(), shard_items=1)
    finally:
        dist.destroy_process_group()


def test_two_ranks_write_one_store_with_merged_statistics(tmp_path):
    mp.spawn(_rank_worker, args=(2, free_port(), str(tmp_path / "s")), nprocs=2, join=True)
    _write(tmp_path / "single", _tensors())
    two, one = TensorStore(tmp_path / "s"), TensorStore(tmp_path / "single")
    assert {item["shard"][:len("tensors-r00")] for item in two.items} == {"tensors-r00", "tensors-r01"}
    assert [i["id"] for i in two.items] == [i["id"] for i in one.items]
    torch.testing.assert_close(two.stats[0], one.stats[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(two.stats[1], one.stats[1], atol=1e-6, rtol=1e-6)


def test_dataset_with_the_frame_budget_sampler(tmp_path):
    tensors = _tensors()
    _write(tmp_path / "s", tensors)
    store = TensorStore(tmp_path / "s")
    dataset = StoreDataset(store, crop_frames=30, normalize=True)
    sampler = FrameBudgetBatchSampler(dataset.durations, max_frames=80, frame_rate=store.frame_rate, seed=1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_tensors)
    seen = []
    for batch in loader:
        assert batch["tensor"].shape[0] * batch["tensor"].shape[2] <= 80 and batch["tensor"].shape[1] == 4
        assert batch["frames"].max() <= 30 and all(t.startswith("tu") for t in batch["text"])
        seen += batch["id"]
    assert sorted(seen) == sorted(tensors)
    item = dataset[(8, 5)]
    again = dataset[(8, 5)]
    assert item["start"] == again["start"] and torch.equal(item["tensor"], again["tensor"])  # seeded crops
    mean, std = store.stats
    raw, _ = store.crop("u8", item["start"], 30)
    torch.testing.assert_close(item["tensor"], (raw - mean[:, None]) / std[:, None])


def test_older_latent_folders_still_read(tmp_path):
    folder = tmp_path / "old"
    z = torch.randn(3, 7)
    write_tensors(folder / "latents-00000.safetensors", {"a.wav": z})
    (folder / "index.json").write_text(json.dumps({
        "format": "semlat-latents/1", "latent_dim": 3, "frame_rate": 40.0, "sample_rate": 16000,
        "items": [{"id": "a.wav", "shard": "latents-00000.safetensors", "frames": 7, "duration": 0.17}]}))
    store = TensorStore(folder)
    assert store.dim == 3 and store.kind == "latents" and store.stats is None and torch.equal(store.get("a.wav"), z)
    with pytest.raises(DataError, match="no statistics"):
        StoreDataset(store, normalize=True)
    with pytest.raises(DataError, match="semlat-latents/1, not a semlat-store/1 store"):
        StoreWriter(folder, SETTINGS)
