"""Datasets over a manifest: random crops, whole utterances, collation, loaders with workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import tone, write_audio
from semlat.data.datasets import AudioCropDataset, UtteranceDataset, collate_audio, fixed_subset, rms_db
from semlat.data.manifest import Manifest, Utterance
from semlat.data.samplers import ShardedSampler


@pytest.fixture
def manifest(tmp_path):
    """Four 22.05 kHz files: ramps (so crops are identifiable), one short, one half silent."""
    utts = []
    for i, seconds in enumerate([2.0, 1.5, 0.2, 3.0]):
        n = round(seconds * 22050)
        data = np.linspace(-0.5, 0.5, n, dtype=np.float32)[:, None] * (i + 1) / 4
        if i == 3:
            data[: n // 2] = 0.0  # first half silent
            data[n // 2:] = tone(seconds - n // 2 / 22050, 22050)[: n - n // 2]
        write_audio(tmp_path / f"u{i}.wav", data, 22050, "FLOAT")
        utts.append(Utterance(f"u{i}.wav", n / 22050, 22050, text=f"text {i}", speaker=f"s{i % 2}",
                              split="train"))
    return Manifest(utts, tmp_path)


def test_crops_have_fixed_length_and_are_reproducible(manifest):
    ds = AudioCropDataset(manifest, 16000, 0.5, seed=1)
    item = ds[0]
    assert item["audio"].shape == (1, 8000) and item["length"] == 8000 and item["index"] == 0
    torch.testing.assert_close(ds[0]["audio"], item["audio"])  # bare index: deterministic
    a, b = ds[(0, 11)]["audio"], ds[(0, 12)]["audio"]
    assert not torch.allclose(a, b)  # different seeds, different crops
    torch.testing.assert_close(ds[(0, 11)]["audio"], a)
    short = ds[2]
    assert short["length"] == 3200 and short["audio"].shape == (1, 8000)
    assert short["audio"][0, 3300:].abs().max() == 0  # zero padded after the valid part
    same_rate = AudioCropDataset(manifest, 22050, 0.5)
    ramp = same_rate[(0, 3)]["audio"][0].numpy()
    np.testing.assert_allclose(np.diff(ramp), np.diff(ramp).mean(), atol=1e-6)  # a contiguous excerpt


def test_resampled_crop_matches_resampled_file(manifest):
    from semlat.audio import load_audio

    ds = AudioCropDataset(manifest, 16000, 0.5)
    full, _ = load_audio(manifest.audio_path(0), 16000)
    crop = ds[(0, 99)]["audio"][0]
    # locate the crop in the fully resampled file: it must match away from the crop's edges
    errors = [(full[0, s:s + 8000] - crop).abs()[200:-200].max() for s in range(full.shape[-1] - 8000)]
    assert min(errors) < 1e-3


def test_min_rms_avoids_silent_crops(manifest):
    quiet = AudioCropDataset(manifest, 22050, 0.4, seed=0)
    loud = AudioCropDataset(manifest, 22050, 0.4, seed=0, min_rms_db=-30, max_tries=20)
    levels = [rms_db(quiet[(3, s)]["audio"]) for s in range(20)]
    assert min(levels) == float("-inf")  # without the threshold some crops are pure silence
    assert all(rms_db(loud[(3, s)]["audio"]) > -30 for s in range(20))


def test_utterances_and_collation(manifest):
    ds = UtteranceDataset(manifest, 16000)
    batch = collate_audio([ds[0], ds[2]])
    assert batch["audio"].shape == (2, 1, 32000) and batch["length"].tolist() == [32000, 3200]
    assert batch["text"] == ["text 0", "text 2"] and batch["speaker"] == ["s0", "s0"]
    assert batch["audio"][1, 0, 3200:].abs().max() == 0
    capped = UtteranceDataset(manifest, 16000, max_seconds=1.0)
    assert capped[3]["audio"].shape == (1, 16000)


def test_loader_with_workers_matches_single_process(manifest):
    ds = AudioCropDataset(manifest, 16000, 0.25, seed=4)
    batches = []
    for workers in (0, 2):
        sampler = ShardedSampler(len(ds), seed=4, rank=0, world_size=1)
        sampler.set_epoch(2)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=collate_audio)
        batches.append(torch.cat([b["audio"] for b in loader]))
    torch.testing.assert_close(batches[0], batches[1])


def test_fixed_subset_is_stable(manifest):
    a, b = fixed_subset(manifest, 2), fixed_subset(manifest, 2)
    assert [u.audio for u in a] == [u.audio for u in b] and len(a) == 2
    assert len(fixed_subset(manifest, 10)) == 4
