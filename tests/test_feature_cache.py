"""Feature caches: extraction round trip, index, crops, resume, mismatch refusal, rejects, two ranks."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from conftest import free_port
from semlat.audio.io import load_audio
from semlat.errors import ConfigError, DataError
from semlat.semantic.feature_cache import FORMAT, FeatureCache, extract_features, teacher_features
from semlat.semantic.teachers import Teacher, TeacherSpec

DURATIONS = [(0.9, 16000), (1.7, 22050), (0.5, 16000), (2.3, 16000), (1.2, 24000), (0.75, 16000)]


class Interrupted(Exception):
    """Raised by the fake teacher to simulate a crash mid-extraction."""


class FakeTeacher(Teacher):
    """A deterministic conv teacher: 16 kHz, 50 frames/s (WavLM's 400-sample, 320-hop first layer), dim 8,
    receptive field 1040 samples. Counts its calls; ``fail_after`` calls it raises :class:`Interrupted`."""

    def __init__(self, layer: int = 3, fail_after: int | None = None):
        super().__init__()
        self.spec = TeacherSpec("hf", "/fake/teacher", (layer,))
        self.sample_rate, self.frame_rate, self.dim = 16000, 50.0, 8
        self.conv = nn.Conv1d(1, 8, 400, stride=320)
        self.mix = nn.Conv1d(8, 8, 3, padding=1)
        generator = torch.Generator().manual_seed(layer)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
        self.calls, self.fail_after = 0, fail_after

    def num_frames(self, num_samples: int) -> int:
        return (num_samples - 400) // 320 + 1 if num_samples >= 400 else 0

    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Interrupted
        x = self.mix(torch.tanh(self.conv(audio[:, None] * 4)))
        return x.transpose(1, 2), torch.tensor([self.num_frames(int(n)) for n in lengths])


def _write_corpus(root: Path, durations=DURATIONS, corrupt: bool = False, short: bool = False) -> Path:
    """Synthetic wav files and their manifest; returns the manifest path."""
    rng = np.random.default_rng(0)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (seconds, sr) in enumerate(durations):
        t = np.arange(round(seconds * sr)) / sr
        audio = 0.3 * np.sin(2 * np.pi * (150 + 40 * k) * t) + 0.05 * rng.standard_normal(t.size)
        name = f"wavs/u{k}.wav"
        sf.write(root / name, audio.astype(np.float32), sr, subtype="FLOAT")
        lines.append({"audio": name, "duration": round(seconds, 6), "sample_rate": sr,
                      "split": "train" if k % 3 else "test"})
    if corrupt:
        (root / "wavs/bad.wav").write_bytes(b"RIFF....WAVEnot really audio")
        lines.append({"audio": "wavs/bad.wav", "duration": 1.0, "sample_rate": 16000})
    if short:
        sf.write(root / "wavs/tiny.wav", np.zeros(100, np.float32), 16000)
        lines.append({"audio": "wavs/tiny.wav", "duration": 100 / 16000, "sample_rate": 16000})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def _direct(teacher: Teacher, path: Path) -> torch.Tensor:
    """The teacher run on a whole file, no cache: ``[dim, T]``."""
    audio, sr = load_audio(path)
    features, lengths = teacher.extract(audio, sr)
    return features[0, : int(lengths[0])].T


def _contents(folder: Path) -> dict[str, torch.Tensor]:
    cache = FeatureCache(folder)
    return {item["id"]: cache.get(item["id"]) for item in cache.items}


def _assert_same_cache(a: Path, b: Path) -> None:
    left, right = _contents(a), _contents(b)
    assert list(left) == list(right)
    assert all(torch.equal(left[k], right[k]) for k in left)
    strip = [{k: v for k, v in item.items() if k != "shard"} for item in FeatureCache(a).items]
    assert strip == [{k: v for k, v in item.items() if k != "shard"} for item in FeatureCache(b).items]


def test_round_trip_index_and_pickling(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus")
    teacher = FakeTeacher()
    index_path = extract_features(teacher, manifest, tmp_path / "cache", shard_bytes=3000, progress=False)
    assert index_path == tmp_path / "cache" / "index.json"
    index = json.loads(index_path.read_text())
    assert index["format"] == FORMAT == "semlat-store/1" and index["kind"] == "features"
    assert index["teacher"] == "hf:/fake/teacher@3"
    assert (index["sample_rate"], index["frame_rate"], index["dim"], index["dtype"]) == (16000, 50.0, 8, "float16")
    assert index["manifest"] == str(manifest.resolve()) and index["split"] is None
    assert [item["id"] for item in index["items"]] == [f"wavs/u{k}.wav" for k in range(len(DURATIONS))]
    shards = {item["shard"] for item in index["items"]}
    assert len(shards) > 1 and all(s.startswith("tensors-r00-") for s in shards)
    assert not (tmp_path / "cache" / "rejects.tsv").exists()

    cache = FeatureCache(tmp_path / "cache")
    assert len(cache) == len(DURATIONS) and "wavs/u1.wav" in cache and "nope.wav" not in cache
    assert (cache.frame_rate, cache.dim, cache.sample_rate) == (50.0, 8, 16000)
    assert cache.teacher == TeacherSpec("hf", "/fake/teacher", (3,))
    for item, (seconds, _) in zip(index["items"], DURATIONS):
        direct = _direct(teacher, tmp_path / "corpus" / item["id"])
        stored = cache.get(item["id"])
        assert stored.dtype == torch.float16 and stored.shape == direct.shape == (8, item["frames"])
        assert item["frames"] == teacher.num_frames(round(seconds * 16000))
        assert item["duration"] == pytest.approx(seconds, abs=1e-4)
        torch.testing.assert_close(stored.float(), direct, atol=2e-3, rtol=2e-3)
    with pytest.raises(KeyError, match="nope.wav"):
        cache.get("nope.wav")
    clone = pickle.loads(pickle.dumps(cache))  # handles are opened lazily again after unpickling
    assert torch.equal(clone.get("wavs/u3.wav"), cache.get("wavs/u3.wav"))

    train = extract_features(teacher, manifest, tmp_path / "train", split="train", progress=False)
    assert [item["id"] for item in FeatureCache(train.parent).items] == ["wavs/u1.wav", "wavs/u2.wav",
                                                                          "wavs/u4.wav", "wavs/u5.wav"]


def test_crop_offsets_padding_and_valid_frames(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus", durations=[(1.0, 16000)])
    extract_features(FakeTeacher(), manifest, tmp_path / "cache", dtype=torch.float32, progress=False)
    cache = FeatureCache(tmp_path / "cache")
    full = cache.get("wavs/u0.wav")
    assert full.shape == (8, 49)  # (16000 - 400) // 320 + 1
    crop, valid = cache.crop_seconds("wavs/u0.wav", 0.0, 0.5)
    assert crop.shape == (8, 25) and valid == 25 and torch.equal(crop, full[:, :25])
    crop, valid = cache.crop_seconds("wavs/u0.wav", 0.2, 0.3)  # starts at frame 10
    assert valid == 15 and torch.equal(crop, full[:, 10:25])
    crop, valid = cache.crop_seconds("wavs/u0.wav", 0.113, 0.2)  # 5.65 frames: nearest is frame 6
    assert valid == 10 and torch.equal(crop, full[:, 6:16])
    crop, valid = cache.crop_seconds("wavs/u0.wav", 0.8, 0.5)  # runs past the end: 49 - 40 = 9 valid frames
    assert crop.shape == (8, 25) and valid == 9
    assert torch.equal(crop[:, :9], full[:, 40:]) and not crop[:, 9:].any()
    crop, valid = cache.crop_seconds("wavs/u0.wav", 0.0, 2.0)  # longer than the utterance
    assert crop.shape == (8, 100) and valid == 49 and torch.equal(crop[:, :49], full) and not crop[:, 49:].any()
    crop, valid = cache.crop_seconds("wavs/u0.wav", 1.5, 0.4)
    assert valid == 0 and crop.shape == (8, 20) and not crop.any()
    assert crop.dtype == torch.float32
    crop, valid = cache.crop("wavs/u0.wav", 10, 15)  # the store's own crop, in frames
    assert valid == 15 and torch.equal(crop, full[:, 10:25])
    with pytest.raises(ValueError):
        cache.crop_seconds("wavs/u0.wav", -0.1, 0.5)


def test_chunked_extraction_matches_one_pass(tmp_path):
    teacher = FakeTeacher()
    audio = torch.randn(round(3.1 * 16000)) * 0.1
    whole = teacher_features(teacher, audio)  # 3.1 s < 34 s: one pass
    chunked = teacher_features(teacher, audio, chunk_seconds=0.5, context_seconds=0.1)
    assert teacher.calls == 1 + 7  # ceil(154 frames / 25)
    assert chunked.shape == whole.shape == (8, teacher.num_frames(audio.numel()))
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)

    manifest = _write_corpus(tmp_path / "corpus", durations=[(2.3, 22050)])
    extract_features(teacher, manifest, tmp_path / "cache", dtype="float32", chunk_seconds=0.4,
                     context_seconds=0.1, progress=False)
    stored = FeatureCache(tmp_path / "cache").get("wavs/u0.wav")
    torch.testing.assert_close(stored, _direct(teacher, tmp_path / "corpus/wavs/u0.wav"), atol=1e-5, rtol=1e-5)


def test_resume_skips_finished_items(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus")
    n = len(DURATIONS)
    extract_features(FakeTeacher(), manifest, tmp_path / "fresh", shard_bytes=1, progress=False)

    out = tmp_path / "cache"
    with pytest.raises(Interrupted):  # crash on the 4th item: the 3 finished ones are in shards
        extract_features(FakeTeacher(fail_after=3), manifest, out, shard_bytes=1, progress=False)
    assert not (out / "index.json").exists() and (out / "store.json").exists()
    assert len(list(out.glob("tensors-r00-*.safetensors"))) == 3
    resumed = FakeTeacher()
    extract_features(resumed, manifest, out, shard_bytes=1, progress=False)
    assert resumed.calls == n - 3
    _assert_same_cache(out, tmp_path / "fresh")

    # a killed run: the index and one shard are gone, a half-written temporary shard is left behind
    victim = out / FeatureCache(out).items[1]["shard"]
    (out / "index.json").unlink()
    victim.unlink()
    (out / ".tensors-r00-00099.abcd.tmp.safetensors").write_bytes(b"partial")
    again = FakeTeacher()
    extract_features(again, manifest, out, shard_bytes=1 << 20, progress=False)
    assert again.calls == 1 and not list(out.glob(".*.tmp.safetensors"))
    _assert_same_cache(out, tmp_path / "fresh")
    finished = FakeTeacher()
    extract_features(finished, manifest, out, progress=False)  # nothing left to do
    assert finished.calls == 0


def test_mismatched_teacher_or_settings_are_refused(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus", durations=[(0.6, 16000), (0.8, 16000)])
    out = tmp_path / "cache"
    extract_features(FakeTeacher(layer=3), manifest, out, progress=False)
    cache = FeatureCache(out)
    cache.check("hf:/fake/teacher@3", frame_rate=50, dim=8)
    cache.check(TeacherSpec.parse("hf:/fake/../fake/teacher@3"))
    with pytest.raises(ConfigError, match=r"hf:/fake/teacher@3.*hf:/fake/teacher@4"):
        cache.check("hf:/fake/teacher@4")
    with pytest.raises(ConfigError, match="hf:/other/teacher@3"):
        cache.check("hf:/other/teacher@3")
    with pytest.raises(ConfigError, match="hf:/fake/teacher$|hf:/fake/teacher;"):
        cache.check("hf:/fake/teacher")
    with pytest.raises(ConfigError, match="frames/s"):
        cache.check("hf:/fake/teacher@3", frame_rate=40)
    with pytest.raises(ConfigError, match="dim"):
        cache.check("hf:/fake/teacher@3", dim=1024)

    with pytest.raises(DataError, match=r"teacher='hf:/fake/teacher@3'.*hf:/fake/teacher@4") as err:
        extract_features(FakeTeacher(layer=4), manifest, out, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="dtype"):
        extract_features(FakeTeacher(layer=3), manifest, out, dtype=torch.float32, progress=False)
    assert FeatureCache(out).teacher == TeacherSpec("hf", "/fake/teacher", (3,))  # untouched

    (out / "store.json").unlink()  # the shards themselves also record their teacher
    with pytest.raises(DataError, match="shard made with teacher"):
        extract_features(FakeTeacher(layer=4), manifest, out, progress=False)

    with pytest.raises(DataError, match="index.json is missing"):
        FeatureCache(tmp_path / "corpus")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/index.json").write_text(json.dumps({"format": "semlat-latents/1", "items": []}))
    with pytest.raises(DataError, match="not a teacher feature cache"):
        FeatureCache(tmp_path / "other")  # an old latent folder reads as a store, but holds no features
    (tmp_path / "other/index.json").write_text(json.dumps({"format": "semlat-nonsense/9", "items": []}))
    with pytest.raises(DataError, match="unknown store format.*semlat features extract"):
        FeatureCache(tmp_path / "other")


def test_bad_audio_is_rejected_not_fatal(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus", durations=[(0.6, 16000), (0.8, 16000)], corrupt=True, short=True)
    out = tmp_path / "cache"
    extract_features(FakeTeacher(), manifest, out, progress=False)
    assert [item["id"] for item in FeatureCache(out).items] == ["wavs/u0.wav", "wavs/u1.wav"]
    rejects = [line.split("\t") for line in (out / "rejects.tsv").read_text().splitlines()]
    assert [r[0] for r in rejects] == ["wavs/bad.wav", "wavs/tiny.wav"]
    assert "corrupt" in rejects[0][1] and "too short" in rejects[1][1]
    assert not list(out.glob("rejects-r*.tsv"))

    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text(json.dumps({"audio": "corpus/wavs/bad.wav", "duration": 1.0, "sample_rate": 16000}) + "\n")
    with pytest.raises(DataError, match="every item failed"):
        extract_features(FakeTeacher(), only_bad, tmp_path / "bad", progress=False)
    assert (tmp_path / "bad/rejects.tsv").is_file() and not (tmp_path / "bad/index.json").exists()



def _worker(rank: int, world: int, port: int, manifest: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        extract_features(FakeTeacher(), manifest, out, shard_bytes=1500, progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_the_work(tmp_path):
    manifest = _write_corpus(tmp_path / "corpus", corrupt=True)
    out = tmp_path / "cache"
    mp.spawn(_worker, args=(2, free_port(), str(manifest), str(out)), nprocs=2, join=True)
    cache = FeatureCache(out)
    ids = [item["id"] for item in cache.items]
    assert ids == [f"wavs/u{k}.wav" for k in range(len(DURATIONS))]  # each exactly once, manifest order
    ranks = {item["shard"][:len("tensors-r00")] for item in cache.items}
    assert ranks == {"tensors-r00", "tensors-r01"}
    assert (out / "rejects.tsv").read_text().startswith("wavs/bad.wav\t")
    teacher = FakeTeacher()
    for item in cache.items:
        rank = int(item["shard"][len("tensors-r"):len("tensors-r00")])
        assert ids.index(item["id"]) % 2 == rank  # rank r took items r::2
        torch.testing.assert_close(cache.get(item["id"]).float(), _direct(teacher, tmp_path / "corpus" / item["id"]),
                                   atol=2e-3, rtol=2e-3)
