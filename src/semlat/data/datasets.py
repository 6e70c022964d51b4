"""Datasets over a manifest: fixed-length random crops for autoencoder training, and whole
utterances (with their text and speaker) for evaluation and generation.

Items are keyed by ``index`` or by ``(index, seed)`` from the samplers in
:mod:`semlat.data.samplers`. All randomness comes from that seed (a bare index uses a seed derived
from the index alone), so a plain sequential loader over a split is a deterministic validation set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from semlat.audio.io import load_audio
from semlat.audio.processing import resample, resampled_length
from semlat.data.manifest import OPTIONAL_FIELDS, Manifest
from semlat.data.samplers import item_seed
from semlat.data.splits import unit_hash

#: Extra source samples read on each side of a crop so the resampler's edge effects are trimmed off.
_RESAMPLE_MARGIN = 64


def _split_key(key: int | tuple[int, int], seed: int) -> tuple[int, int]:
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), item_seed(seed, -1, int(key))


class ListDataset(Dataset):
    """In-memory items (featurised utterances, token/duration pairs), keyed by index or ``(index, seed)``."""

    def __init__(self, items: Sequence[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        return self.items[key[0] if isinstance(key, tuple) else key]


def _metadata(manifest: Manifest, index: int) -> dict[str, Any]:
    u = manifest[index]
    return {k: getattr(u, k) for k in OPTIONAL_FIELDS if getattr(u, k) is not None}


def rms_db(audio: torch.Tensor) -> float:
    """Root-mean-square level of ``audio`` in dBFS (-inf for silence)."""
    rms = float(audio.float().square().mean().sqrt())
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


class AudioCropDataset(Dataset):
    """Random ``segment_seconds`` crops at ``sample_rate``; shorter utterances are zero-padded.

    Item: ``{"audio": [1, S] float32, "length": valid samples, "index": int, "offset": seconds}``
    with ``S = round(segment_seconds * sample_rate)`` and ``offset`` the crop's start in the file. Only the excerpt is read from disk, then
    resampled. With ``min_rms_db`` a crop quieter than that is redrawn (up to ``max_tries``
    times, keeping the loudest), which avoids training on silence.
    """

    def __init__(self, manifest: Manifest, sample_rate: int, segment_seconds: float, *, seed: int = 0,
                 min_rms_db: float | None = None, max_tries: int = 5):
        if len(manifest) == 0:
            raise ValueError("AudioCropDataset needs a non-empty manifest")
        self.manifest, self.sample_rate, self.seed = manifest, sample_rate, seed
        self.segment = round(segment_seconds * sample_rate)
        self.min_rms_db, self.max_tries = min_rms_db, max_tries

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = _split_key(key, self.seed)
        u = self.manifest[index]
        path = self.manifest.audio_path(index)

        def load(offset: int, frames: int) -> torch.Tensor:
            return load_audio(path, offset=offset / u.sample_rate, duration=frames / u.sample_rate)[0]

        item = random_crop(load, round(u.duration * u.sample_rate), u.sample_rate, self.sample_rate, self.segment,
                           np.random.default_rng(seed), self.min_rms_db, self.max_tries)
        return {**item, "index": index}


def random_crop(load: Callable[[int, int], torch.Tensor], total: int, src_sr: int, sample_rate: int, segment: int,
                rng: np.random.Generator, min_rms_db: float | None = None, max_tries: int = 5) -> dict[str, Any]:
    """A random crop of ``segment`` samples at ``sample_rate`` from audio of ``total`` samples at ``src_sr``
    that ``load(offset, frames)`` reads (``[C, frames]`` at ``src_sr``); zero-padded when shorter. With
    ``min_rms_db`` a quieter crop is redrawn up to ``max_tries`` times (the loudest kept).

    Returns ``{"audio": [1, segment], "length": valid samples, "offset": seconds}``.
    """
    need = math.ceil(segment * src_sr / sample_rate)

    def read(start: int, frames: int) -> torch.Tensor:
        lead = min(start, _RESAMPLE_MARGIN) if src_sr != sample_rate else 0
        tail = _RESAMPLE_MARGIN if src_sr != sample_rate else 0
        audio = resample(load(start - lead, frames + lead + tail), src_sr, sample_rate)
        skip = resampled_length(lead, src_sr, sample_rate) if lead else 0
        return audio[:, skip:skip + segment]

    start = 0
    if total <= need:
        audio = read(0, total)
    else:
        tries = max_tries if min_rms_db is not None else 1
        audio, level = None, float("-inf")
        for _ in range(tries):
            candidate = int(rng.integers(0, total - need + 1))
            crop = read(candidate, need)
            if audio is None or rms_db(crop) > level:
                audio, level, start = crop, rms_db(crop), candidate
            if min_rms_db is None or level >= min_rms_db:
                break
    length = min(audio.shape[-1], segment)
    if audio.shape[-1] < segment:
        audio = torch.nn.functional.pad(audio, (0, segment - audio.shape[-1]))
    return {"audio": audio, "length": length, "offset": start / src_sr}


class UtteranceDataset(Dataset):
    """Whole utterances at ``sample_rate`` with their manifest metadata.

    Item: ``{"audio": [1, N], "length": N, "index": int, "text"?, "speaker"?, ...}``. With
    ``max_seconds`` longer utterances are cut to their first ``max_seconds``.
    """

    def __init__(self, manifest: Manifest, sample_rate: int, *, max_seconds: float | None = None):
        self.manifest, self.sample_rate, self.max_seconds = manifest, sample_rate, max_seconds

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _ = _split_key(key, 0)
        audio, _ = load_audio(self.manifest.audio_path(index), self.sample_rate, duration=self.max_seconds)
        if self.max_seconds is not None:
            audio = audio[:, : round(self.max_seconds * self.sample_rate)]
        return {"audio": audio, "length": audio.shape[-1], "index": index, **_metadata(self.manifest, index)}


def collate_audio(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into ``{"audio": [B, 1, N_max] zero-padded, "length": [B], "index": [B], ...}``.

    Other keys: tensors of one shape are stacked, numbers become a tensor, anything else (text,
    speaker, tensors of different shapes) a list (``None`` where an item lacks the key)."""
    longest = max(item["audio"].shape[-1] for item in items)
    audio = torch.zeros(len(items), items[0]["audio"].shape[0], longest)
    for row, item in enumerate(items):
        audio[row, :, : item["audio"].shape[-1]] = item["audio"]
    batch: dict[str, Any] = {
        "audio": audio,
        "length": torch.tensor([item["length"] for item in items], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
    }
    for key in sorted({k for item in items for k in item} - {"audio", "length", "index"}):
        values = [item.get(key) for item in items]
        if all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            batch[key] = torch.stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


def fixed_subset(manifest: Manifest, max_items: int, salt: str = "valid") -> Manifest:
    """A deterministic subset of at most ``max_items`` utterances (the same for a given manifest),
    e.g. the fixed validation batch logged during training."""
    ranked = sorted(range(len(manifest)), key=lambda i: unit_hash(manifest[i].audio, salt))
    return manifest.select(sorted(ranked[:max_items]))
