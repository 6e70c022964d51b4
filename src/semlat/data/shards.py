"""Audio shards for streaming at constant memory: Lhotse Shar, read shard by shard, split over ranks.

``semlat data shard MANIFEST OUT`` writes a manifest's split as Lhotse Shar shards (``cuts.NNNNNN.jsonl.gz``: the
utterances' metadata; ``recording.NNNNNN.tar``: their audio as FLAC), ``shard_size`` utterances each, plus
``shards.json``: one line per *shard* (its files, utterances and seconds), never per utterance. Training reads
them as a stream (:class:`ShardSet`): each epoch the shard list is shuffled with the run's seed and dealt to the
ranks round-robin, every rank reads only its own shards, one at a time, through a fixed shuffle buffer, so a
rank's memory does not grow with the corpus (``benchmarks/bench_streaming.py`` measures it) and no rank reads an
index of every utterance. :class:`ShardBatches` is the trainer's batch sampler over that stream: fixed batches
(random crops) or frame budgets (utterances bucketed by length within a pool), with each rank's position
(epoch, batches taken) saved in checkpoints for exact resume.

A truncated or corrupt shard is a one-line :class:`~semlat.errors.DataError` naming the shard.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from semlat.data.datasets import random_crop
from semlat.data.manifest import OPTIONAL_FIELDS, Manifest
from semlat.errors import DataError
from semlat.utils.files import atomic_dir, atomic_write_text

SHARD_INDEX = "shards.json"
FORMAT = "lhotse-shar"
_BROKEN = (tarfile.TarError, EOFError, OSError, zlib.error, gzip.BadGzipFile, json.JSONDecodeError, ValueError)


def is_shard_folder(path: str | os.PathLike | None) -> bool:
    """True when ``path`` is a folder written by :func:`write_shards` (it holds ``shards.json``)."""
    return path is not None and (Path(path) / SHARD_INDEX).is_file()


def write_shards(manifest: Manifest, out: str | os.PathLike, shard_size: int = 1000, *, features: Any = None,
                 progress: bool = True) -> Path:
    """Write ``manifest``'s utterances (all of them: pick a split first) as Shar shards into ``out``, atomically.

    Each utterance keeps its manifest fields (text, speaker, caption, ... and extra keys) in the cut's
    supervision, its manifest path as ``source``; the audio is re-encoded as FLAC at its own rate. With
    ``features`` (a :class:`~semlat.semantic.feature_cache.FeatureCache` of the manifest) each cut also carries its
    utterance's teacher features (``teacher.NNNNNN.tar``: float16 ``[T, dim]`` arrays), and ``shards.json`` the
    cache's teacher, frame rate and width, so the semantic VAE streams features with the audio and never looks an
    utterance up in the cache's index. An utterance the cache lacks is a one-line error; nothing is written.
    """
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.shar import SharWriter
    from tqdm import tqdm

    if shard_size < 1:
        raise DataError(f"shard_size must be at least 1, got {shard_size}")
    if len(manifest) == 0:
        raise DataError("no utterances to shard")
    fields = {"recording": "flac"}
    if features is not None:
        missing = [u.audio for u in manifest if u.audio not in features]
        if missing:
            raise DataError(f"{features.folder}: no teacher features for {len(missing)} of the {len(manifest)} "
                            f"utterances (first: {missing[0]}); extract them (semlat features extract) or shard "
                            "without --features")
        fields["teacher"] = "numpy"
    out = Path(out)
    with atomic_dir(out) as tmp:
        shards: list[dict[str, Any]] = []
        with SharWriter(str(tmp), fields=fields, shard_size=shard_size) as writer:
            for index, utt in enumerate(tqdm(manifest, desc="sharding", unit="utt", disable=not progress)):
                path = manifest.audio_path(index)
                try:
                    recording = Recording.from_file(path, recording_id=f"u{index:09d}")
                except Exception as err:  # noqa: BLE001 - any reader error becomes one line naming the file
                    raise DataError(f"{path}: unreadable audio ({err})") from err
                custom = {k: getattr(utt, k) for k in OPTIONAL_FIELDS if getattr(utt, k) is not None}
                custom.update(utt.extra)
                custom["source"] = utt.audio
                sup = SupervisionSegment(id=recording.id, recording_id=recording.id, start=0.0,
                                         duration=recording.duration, text=utt.text, speaker=utt.speaker,
                                         custom=custom)
                cut = MonoCut(id=recording.id, start=0.0, duration=recording.duration, channel=0,
                              recording=recording, supervisions=[sup])
                if features is not None:  # [T, dim] float16, time first (Lhotse's temporal_dim 0)
                    array = features.get(utt.audio).T.to(torch.float16).contiguous().numpy()
                    cut = cut.attach_tensor("teacher", array, frame_shift=1.0 / features.frame_rate, temporal_dim=0)
                writer.write(cut)
                if index % shard_size == 0:
                    shards.append({"items": 0, "seconds": 0.0})
                shards[-1]["items"] += 1
                shards[-1]["seconds"] += recording.duration
        for number, shard in enumerate(shards):
            shard.update(cuts=f"cuts.{number:06d}.jsonl.gz", recording=f"recording.{number:06d}.tar",
                         seconds=round(shard["seconds"], 3))
            if features is not None:
                shard["teacher"] = f"teacher.{number:06d}.tar"
            for key in ("cuts", "recording", "teacher"):
                if key in shard and not (tmp / shard[key]).is_file():
                    raise DataError(f"{out}: Lhotse wrote no {shard[key]}")
        index = {"format": FORMAT, "shard_size": shard_size, "items": len(manifest),
                 "seconds": round(sum(s["seconds"] for s in shards), 3), "shards": shards}
        if features is not None:
            index["features"] = {"teacher": features.index["teacher"], "frame_rate": features.frame_rate,
                                 "dim": features.dim, "sample_rate": features.sample_rate,
                                 "cache": str(Path(features.folder).resolve())}
        atomic_write_text(tmp / SHARD_INDEX, json.dumps(index, indent=1) + "\n")
    return out


class ShardSet:
    """The shards of a folder written by :func:`write_shards` (reads ``shards.json`` only)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index_path = self.path / SHARD_INDEX
        if not index_path.is_file():
            raise DataError(f"{self.path}: not a shard folder (no {SHARD_INDEX}; write one with semlat data shard)")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{index_path}: not valid JSON ({err})") from err
        if index.get("format") != FORMAT:
            raise DataError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
        self.shards: list[dict[str, Any]] = index["shards"]
        self.items, self.seconds = int(index["items"]), float(index["seconds"])
        #: the teacher features the cuts carry (``write_shards(features=...)``): teacher, frame_rate, dim, ...
        self.features: dict[str, Any] | None = index.get("features")
        for shard in self.shards:  # (a shard without "recording" is metadata only: its cuts name audio files)
            for key in ("cuts", "recording", "teacher"):
                if key in shard and not (self.path / shard[key]).is_file():
                    raise DataError(f"{self.path / shard[key]}: missing shard file (listed in {SHARD_INDEX})")

    def __len__(self) -> int:
        return self.items

    def rank_shards(self, epoch: int, seed: int, rank: int, world_size: int) -> list[dict[str, Any]]:
        """This rank's shards for ``epoch``: the list shuffled with ``(seed, epoch)``, dealt round-robin."""
        if len(self.shards) < world_size:
            raise DataError(f"{self.path}: {len(self.shards)} shard(s) for {world_size} ranks; every rank needs "
                            "its own (write smaller shards: semlat data shard --shard-size)")
        order = list(range(len(self.shards)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        return [self.shards[i] for i in order[rank::world_size]]

    def cuts(self, shard: dict[str, Any]) -> Iterator[Any]:
        """The cuts of one shard, audio attached (in memory), in order; a broken shard is a one-line error."""
        from lhotse import CutSet

        cuts_file = self.path / shard["cuts"]
        fields = {"cuts": [str(cuts_file)]}
        for key in ("recording", "teacher"):
            if key in shard:
                fields[key] = [str(self.path / shard[key])]
        tar_file = self.path / shard.get("recording", shard["cuts"])
        try:
            count = 0
            for cut in CutSet.from_shar(fields=fields):
                count += 1
                yield cut
        except _BROKEN as err:
            raise DataError(f"{tar_file}: truncated or corrupt shard ({type(err).__name__}: {err})") from err
        except AssertionError as err:  # Lhotse checks that the tar and the cuts file agree
            raise DataError(f"{tar_file}: truncated or corrupt shard (its audio and {cuts_file.name} disagree: "
                            f"{err})") from err
        if count != shard["items"]:
            raise DataError(f"{tar_file}: truncated shard ({count} of its {shard['items']} utterances)")

    def stream(self, epoch: int, seed: int, rank: int, world_size: int, buffer: int = 500) -> Iterator[Any]:
        """This rank's cuts for ``epoch``, shard by shard, shuffled through a buffer of ``buffer`` cuts."""
        rng = random.Random(f"{seed}:{epoch}:{rank}:buffer")
        pool: list[Any] = []
        for shard in self.rank_shards(epoch, seed, rank, world_size):
            for cut in self.cuts(shard):
                pool.append(cut)
                if len(pool) >= buffer:
                    yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool


def cut_fields(cut: Any) -> dict[str, Any]:
    """The manifest fields a cut was written with (text, speaker, source path, extras)."""
    sup = cut.supervisions[0] if cut.supervisions else None
    return dict(sup.custom or {}) if sup is not None else {}


class ShardBatches(Sampler):
    """Batches of ``(cut, seed)`` keys from this rank's share of a :class:`ShardSet`, for the trainer.

    ``batch_size`` cuts a batch, or with ``max_seconds`` a frame budget: ``pool`` cuts at a time are sorted by
    duration and cut into batches whose longest utterance times their count stays within ``max_seconds``, and
    the batches are shuffled. ``seed`` of each key is drawn from ``(seed, epoch, rank)``, so crops repeat
    exactly on a rerun. Iteration is lazy and deterministic per ``set_epoch``, so skipping the first batches
    (the trainer's resume) gives exactly the batches an uninterrupted run would have taken next.
    """

    def __init__(self, shards: ShardSet, *, batch_size: int | None = None, max_seconds: float | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1, buffer: int = 500, pool: int = 1000):
        if (batch_size is None) == (max_seconds is None):
            raise DataError("ShardBatches needs batch_size or max_seconds (one of them)")
        self.shards, self.batch_size, self.max_seconds = shards, batch_size, max_seconds
        self.seed, self.rank, self.world_size, self.buffer, self.pool = seed, rank, world_size, buffer, pool
        self.epoch = 0
        shards.rank_shards(0, seed, rank, world_size)  # enough shards for the ranks: checked now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[tuple[Any, int]]]:
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:keys")
        cuts = self.shards.stream(self.epoch, self.seed, self.rank, self.world_size, self.buffer)
        keyed = ((cut, rng.randrange(2**31)) for cut in cuts)
        if self.batch_size is not None:
            batch: list[tuple[Any, int]] = []
            for key in keyed:
                batch.append(key)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            return
        pool: list[tuple[Any, int]] = []
        for key in keyed:
            pool.append(key)
            if len(pool) == self.pool:
                yield from self._budget_batches(pool, rng)
                pool = []
        yield from self._budget_batches(pool, rng)

    def _budget_batches(self, pool: list[tuple[Any, int]], rng: random.Random) -> Iterator[list[tuple[Any, int]]]:
        yield from budget_batches(pool, lambda key: key[0].duration, self.max_seconds, rng)


def budget_batches(pool: list[Any], length: Callable[[Any], float], budget: float, rng: random.Random,
                   max_size: int | None = None) -> Iterator[list[Any]]:
    """``pool`` sorted by ``length``, cut where a batch's longest item times its size would exceed ``budget`` (or
    its size ``max_size``; an item longer than the budget makes a batch of its own), in shuffled order."""
    batches: list[list[Any]] = []
    batch: list[Any] = []
    for key in sorted(pool, key=length):
        if batch and (length(key) * (len(batch) + 1) > budget or (max_size is not None and len(batch) >= max_size)):
            batches.append(batch)
            batch = []
        batch.append(key)
    if batch:
        batches.append(batch)
    rng.shuffle(batches)
    yield from batches


def crop_cut(cut: Any, seed: int, sample_rate: int, segment_seconds: float,
             min_rms_db: float | None = None) -> dict[str, Any]:
    """A random crop of a shard's cut, as :class:`~semlat.data.datasets.AudioCropDataset` gives for a manifest
    line: ``{"audio": [1, S], "length", "offset", "index"}`` (the utterance's position in the sharded manifest)."""
    try:
        audio = torch.from_numpy(cut.load_audio()).float().mean(0, keepdim=True)
    except Exception as err:  # noqa: BLE001 - a decoder error becomes one line naming the utterance
        raise DataError(f"{cut_fields(cut).get('source', cut.id)}: undecodable audio in its shard ({err})") from err
    item = random_crop(lambda offset, frames: audio[:, offset:offset + frames], audio.shape[-1], cut.sampling_rate,
                       sample_rate, round(segment_seconds * sample_rate), np.random.default_rng(seed), min_rms_db)
    return {**item, "index": int(cut.id.lstrip("u"))}


class CutFeatures:
    """A shard cut's own teacher features (``write_shards(features=...)``) behind the crop interface of a
    :class:`~semlat.semantic.feature_cache.FeatureCache`: ``frame_rate`` and ``crop_seconds``."""

    def __init__(self, cut: Any, frame_rate: float):
        self.cut, self.frame_rate = cut, float(frame_rate)

    def crop_seconds(self, item_id: str, offset_seconds: float, seconds: float) -> tuple[torch.Tensor, int]:
        """``(features [dim, F] float32, valid)`` of ``[offset, offset + seconds)``, as the cache's ``crop_seconds``:
        ``F = round(seconds * frame_rate)`` frames from the nearest frame, zeros past the end."""
        try:
            array = torch.from_numpy(np.asarray(self.cut.load_teacher())).float()  # [T, dim]
        except Exception as err:  # noqa: BLE001 - a reader error becomes one line naming the utterance
            raise DataError(f"{item_id}: unreadable teacher features in its shard ({err})") from err
        start, frames = round(offset_seconds * self.frame_rate), round(seconds * self.frame_rate)
        valid = max(0, min(frames, array.shape[0] - start))
        out = torch.zeros(array.shape[1], frames)
        if valid:
            out[:, :valid] = array[start:start + valid].T
        return out, valid


class ShardItems(Dataset):
    """The trainer's dataset over :class:`ShardBatches` keys: ``make(cut, seed)`` turns each into an item."""

    def __init__(self, make: Callable[[Any, int], dict[str, Any]]):
        self.make = make

    def __getitem__(self, key: tuple[Any, int]) -> dict[str, Any]:
        return self.make(*key)

    def __len__(self) -> int:  # unknown without reading every shard; the sampler decides
        raise TypeError("a shard stream has no length")
