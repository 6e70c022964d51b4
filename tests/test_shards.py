"""Audio shards (Lhotse Shar) streamed at constant memory: writing, the rank split, the stream's batches (fixed and
frame budgets) and their exact resume, a truncated shard, and wave_vae training from shards (resume, DDP)."""

from __future__ import annotations

import functools
import itertools
import json

import pytest
import torch

from conftest import check_recipe_ddp, train_recorded
from semlat.cli import main
from semlat.configs import builtin_config
from semlat.data.manifest import Manifest
from semlat.data.shards import ShardBatches, ShardSet, crop_cut, write_shards
from semlat.errors import DataError
from semlat.training.recipes import load_recipe


@pytest.fixture(scope="module")
def shards(demo_corpus, tmp_path_factory):
    manifest = Manifest.read_split(demo_corpus / "manifest.jsonl", "train")
    return write_shards(manifest, tmp_path_factory.mktemp("shards") / "train", shard_size=2, progress=False), manifest


def test_shards_hold_every_utterance_with_its_fields_and_split_over_ranks(shards):
    folder, manifest = shards
    index = json.loads((folder / "shards.json").read_text())
    assert index["items"] == len(manifest) and len(index["shards"]) == -(-len(manifest) // 2)
    assert all("utterances" not in s for s in index["shards"])  # one line per shard, never per utterance
    shard_set = ShardSet(folder)
    cut = next(shard_set.cuts(shard_set.shards[0]))
    fields = json.loads(json.dumps(cut.supervisions[0].custom))
    first = manifest[0]
    assert fields["source"] == first.audio and cut.supervisions[0].text == first.text
    assert cut.load_audio().shape[-1] == round(first.duration * first.sample_rate)
    for epoch in (0, 1):
        parts = [shard_set.rank_shards(epoch, seed=3, rank=r, world_size=3) for r in range(3)]
        names = [s["cuts"] for part in parts for s in part]
        assert sorted(names) == sorted(s["cuts"] for s in shard_set.shards) and len(set(names)) == len(names)
    assert shard_set.rank_shards(0, 3, 0, 3) != shard_set.rank_shards(1, 3, 0, 3)  # reshuffled per epoch
    ids = [c.id for r in range(2) for c in shard_set.stream(0, seed=1, rank=r, world_size=2, buffer=5)]
    assert sorted(ids) == [f"u{i:09d}" for i in range(len(manifest))]  # every utterance once per epoch
    with pytest.raises(DataError, match="shard\\(s\\) for 1000 ranks"):
        shard_set.rank_shards(0, 0, 0, 1000)


def test_batches_are_deterministic_resume_by_skipping_and_keep_frame_budgets(shards):
    shard_set = ShardSet(shards[0])
    sampler = ShardBatches(shard_set, batch_size=3, seed=5, rank=1, world_size=2, buffer=4)
    sampler.set_epoch(2)
    first = [[(c.id, s) for c, s in b] for b in sampler]
    again = [[(c.id, s) for c, s in b] for b in itertools.islice(iter(sampler), 2, None)]
    assert first[2:] == again and all(len(b) == 3 for b in first[:-1])
    sampler.set_epoch(3)
    assert [[(c.id, s) for c, s in b] for b in sampler] != first
    budget = ShardBatches(shard_set, max_seconds=12.0, seed=5, pool=20)
    batches = list(budget)
    assert sum(len(b) for b in batches) == sum(len(list(shard_set.cuts(s))) for s in shard_set.shards)
    assert all(len(b) == 1 or max(c.duration for c, _ in b) * len(b) <= 12.0 for b in batches)
    item = crop_cut(*batches[0][0], sample_rate=16000, segment_seconds=0.5)
    assert item["audio"].shape == (1, 8000) and 0 < item["length"] <= 8000
    assert torch.equal(item["audio"], crop_cut(*batches[0][0], sample_rate=16000, segment_seconds=0.5)["audio"])


def test_truncated_or_missing_shard_is_a_one_line_error(shards, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(shards[0], folder)
    tar = folder / "recording.000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    shard_set = ShardSet(folder)
    with pytest.raises(DataError, match=r"recording.000001.tar: truncated") as err:
        list(shard_set.cuts(shard_set.shards[1]))
    assert "\n" not in str(err.value)
    (folder / "cuts.000002.jsonl.gz").unlink()
    with pytest.raises(DataError, match="cuts.000002.jsonl.gz: missing shard file"):
        ShardSet(folder)
    with pytest.raises(DataError, match="not a shard folder"):
        ShardSet(tmp_path)


def _config(corpus, shard_folder, run_dir, *extra):
    return load_recipe(builtin_config("wave_vae/tiny"), [
        f"run_dir={run_dir}", f"data.train={shard_folder}", f"data.valid={corpus / 'manifest.jsonl'}",
        "data.batch_size=2", "data.segment_seconds=0.25", "data.valid_items=2", "data.valid_seconds=0.5",
        "loss.disc_start_step=1", "train.num_workers=0", "train.progress=false", "train.log_every=1",
        "train.valid_every=1000", "train.checkpoint_every=100", *extra])


@pytest.mark.slow
def test_wave_vae_trains_from_shards_and_resumes_exactly(shards, demo_corpus, tmp_path):
    folder = shards[0]
    straight = train_recorded(*_config(demo_corpus, folder, tmp_path / "a", "train.max_steps=4"))
    train_recorded(*_config(demo_corpus, folder, tmp_path / "b", "train.max_steps=2"))
    resumed = train_recorded(*_config(demo_corpus, folder, tmp_path / "b", "train.max_steps=4"), resume=True)
    assert [s["loss"] for s in straight.losses[2:]] == [s["loss"] for s in resumed.losses]
    assert all(torch.equal(straight.weights[k], resumed.weights[k]) for k in straight.weights)
    recipe_cls, config = _config(demo_corpus, folder, tmp_path / "c", "train.max_steps=1", "data.valid=null")
    with pytest.raises(DataError, match="a shard folder streams training data only"):
        train_recorded(recipe_cls, config, validate_at_end=True)


def _ddp(corpus, folder, run_dir):
    return _config(corpus, folder, run_dir, "train.max_steps=2", "data.batch_size=4")


@pytest.mark.slow
def test_wave_vae_from_shards_on_two_gloo_processes(shards, demo_corpus, tmp_path):
    check_recipe_ddp(functools.partial(_ddp, demo_corpus, shards[0]), tmp_path)


def test_cli_shard(demo_corpus, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["data", "shard", str(demo_corpus / "manifest.jsonl"), str(out), "--shard-size", "50"]) == 0
    assert "shard(s)" in capsys.readouterr().out and ShardSet(out).items > 0
    assert main(["data", "shard", str(demo_corpus / "manifest.jsonl"), str(tmp_path / "x"), "--split", "nope"]) == 1
    assert "nope" in capsys.readouterr().err and not (tmp_path / "x").exists()
