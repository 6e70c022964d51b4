"""Teacher features: extract once (resumable, sharded across ranks) into a tensor store, read lazily in training.

A feature cache is a :mod:`tensor store <semlat.data.store>` of kind ``features``: one ``[dim, T]``
tensor per utterance (channels first, fp16 by default), keyed by the manifest's ``audio`` field, with
the settings that decide the features (the teacher's canonical spec, its rates and dim, the manifest,
split, ``max_seconds`` and the chunking) and per-channel statistics in the index. Resume, rank
sharding, rejects and the refusal of a folder made with another teacher or settings are the store's
(see :mod:`semlat.data.store`). :class:`FeatureCache` is the store's reader plus the teacher checks.

**Long utterances** run through the teacher in windows of ``chunk_seconds`` of frames plus
``context_seconds`` of context on each side (:func:`semlat.chunking.run_chunked`); only the centre
frames of each window are kept, cut on exact frame boundaries (the audio is resampled once, whole, to
the teacher's rate, whose hop is a whole number of samples), so the result has exactly the frames an
unchunked pass gives. For a teacher whose receptive field fits in the context (a convolutional one)
the chunked features equal the unchunked ones to float rounding (tested: < 1e-5). Transformer
teachers attend over their whole input, so for utterances longer than ``chunk_seconds + 2 *
context_seconds`` (34 s by default) a frame sees at least ``context_seconds`` and at most
``chunk_seconds + 2 * context_seconds`` of audio around it rather than the whole file: the features
are those of a ~34 s excerpt, not bit-equal to a whole-file pass. That excerpt is already longer than
the crops HuBERT/WavLM are pre-trained on (~16 s), so little long-range information is lost; the exact
difference depends on the model and is not measured here (it needs real weights). Shorter utterances
run in one pass, exactly. The audio itself is read whole (``load_audio``'s 1-hour limit applies); the
teacher's activations, the part that grows quadratically, stay bounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from semlat.audio.io import load_audio
from semlat.audio.processing import resample
from semlat.chunking import frames_for, run_chunked
from semlat.data.manifest import Manifest
from semlat.data.store import (
    FORMAT,
    StoreWriter,
    TensorStore,
    dtype_name,
    parse_dtype,
)
from semlat.errors import AudioError, ConfigError, DataError
from semlat.semantic.teachers import Teacher, TeacherSpec
from semlat.utils.devices import pick_device

__all__ = ["FORMAT", "FeatureCache", "canonical_spec", "extract_features", "teacher_features"]


def canonical_spec(teacher: str | TeacherSpec | Teacher) -> str:
    """The canonical spec string of a teacher (absolute path, layers), as caches record it."""
    spec = teacher.spec if isinstance(teacher, Teacher) else teacher
    return str(TeacherSpec.parse(str(spec)))


def _settings(teacher: Teacher, manifest: Path, split: str | None, dtype: torch.dtype,
              max_seconds: float | None, chunk_seconds: float, context_seconds: float) -> dict[str, Any]:
    """Everything that decides the features."""
    return {
        "kind": "features", "teacher": canonical_spec(teacher), "sample_rate": int(teacher.sample_rate),
        "frame_rate": float(teacher.frame_rate), "dim": int(teacher.dim), "dtype": dtype_name(dtype),
        "manifest": str(manifest.resolve()), "split": split, "max_seconds": max_seconds,
        "chunk_seconds": float(chunk_seconds), "context_seconds": float(context_seconds),
    }


def _run_teacher(teacher: Teacher, audio: torch.Tensor) -> torch.Tensor:
    """One pass: ``audio [N]`` at the teacher's rate -> ``[dim, T]`` float32 (teacher's device)."""
    features, lengths = teacher.extract(audio[None], teacher.sample_rate)
    return features[0, : int(lengths[0])].T


def teacher_features(teacher: Teacher, audio: torch.Tensor, *, chunk_seconds: float = 30.0,
                     context_seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Features of one utterance, in windows when it is long (see the module docstring).

    ``audio [N]`` at ``teacher.sample_rate`` -> ``[dim, T]`` in ``dtype`` on the CPU, with
    ``T = teacher.num_frames(N)``. Windows hold ``chunk_seconds`` of kept frames plus
    ``context_seconds`` on each side; utterances of up to ``chunk + 2 * context`` run in one pass,
    as do teachers whose hop is not a whole number of samples.
    """
    total = teacher.num_frames(audio.shape[-1])
    hop = teacher.sample_rate / teacher.frame_rate
    chunk, context = frames_for(chunk_seconds, teacher.frame_rate), frames_for(context_seconds, teacher.frame_rate)
    if abs(hop - round(hop)) > 1e-6:
        chunk = max(chunk, total)  # one pass
    features = run_chunked(lambda piece: _run_teacher(teacher, piece), audio, frames=total, chunk=chunk,
                           context=context, in_hop=round(hop), out_hop=1)
    return features.to(dtype).cpu()


def _read_audio(path: Path, sample_rate: int, max_seconds: float | None) -> tuple[torch.Tensor, float]:
    """``(audio [N] at sample_rate, duration in seconds)``: read at the file's rate (cut to
    ``max_seconds``), then resampled once, whole."""
    audio, sr = load_audio(path, duration=max_seconds)
    if max_seconds is not None:
        audio = audio[:, : round(max_seconds * sr)]
    duration = audio.shape[-1] / sr
    if sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
    return audio[0], duration


def _utterances(manifest: Manifest) -> list[tuple[str, Path]]:
    """``(id, path)`` per utterance, in manifest order; a repeated ``audio`` entry counts once."""
    seen: dict[str, Path] = {}
    for i, u in enumerate(manifest):
        seen.setdefault(u.audio, manifest.audio_path(i))
    return list(seen.items())


def extract_features(teacher: Teacher, manifest: str | os.PathLike, out: str | os.PathLike, *,
                     split: str | None = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype | str = torch.float16, shard_bytes: int = 256 << 20, progress: bool = True,
                     max_seconds: float | None = None, chunk_seconds: float = 30.0, context_seconds: float = 2.0,
                     rank: int | None = None, world_size: int | None = None) -> Path:
    """Run a frozen teacher over every utterance of a manifest and store its features in ``out``.

    Args:
        teacher: a loaded :class:`Teacher` (:func:`semlat.models.load_teacher` of a spec such as
            ``hf:/models/wavlm-large@23``).
        manifest, split: the utterances (only ``split`` when given); ids are the ``audio`` fields.
        device: where the teacher runs (``cuda``/``auto`` use ``cuda:$LOCAL_RANK``).
        dtype: storage precision of the ``[dim, T]`` features (fp16 by default).
        shard_bytes: a shard is written once this many bytes of features are queued.
        max_seconds: utterances are cut to their first ``max_seconds`` (as ``UtteranceDataset`` does).
        chunk_seconds, context_seconds: windows for long utterances (see the module docstring).
        rank, world_size: this process's share (items ``rank::world_size``); by default from
            torch.distributed when it is initialised, else the whole manifest.

    Unreadable or too-short audio is skipped and listed in ``out/rejects.tsv``; it is an error only when
    every utterance fails. A rerun resumes. Under torch.distributed every rank must call this; rank 0
    writes the index after all ranks finish. Returns the index path.
    """
    items = _utterances(Manifest.read(manifest, split=split))
    if not items:
        raise DataError(f"{manifest}: no utterances" + (f" in split {split!r}" if split else ""))
    if not isinstance(teacher, Teacher):
        raise TypeError("extract_features takes a loaded Teacher: semlat.models.load_teacher(spec)")
    model = teacher.to(pick_device(device)).freeze()
    storage = parse_dtype(dtype)
    settings = _settings(model, Path(manifest), split, storage, max_seconds, chunk_seconds, context_seconds)
    writer = StoreWriter(out, settings, rank=rank, world_size=world_size, shard_bytes=shard_bytes)
    mine = writer.mine(items)
    todo = [(i, p) for i, p in mine if i not in writer.done]
    show = progress and writer.ranks.rank == 0
    with writer, tqdm(total=len(mine), initial=len(mine) - len(todo), desc="teacher features", unit="file",
                      disable=not show, dynamic_ncols=True) as bar:
        for item_id, path in todo:
            try:
                audio, duration = _read_audio(path, model.sample_rate, max_seconds)
                if model.num_frames(audio.shape[-1]) <= 0:
                    raise AudioError(f"{path}: {duration:.3f} s is too short for the teacher (no frames)")
            except AudioError as err:
                writer.reject(item_id, str(err))
                bar.update(1)
                continue
            features = teacher_features(model, audio, chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                                        dtype=storage)
            writer.add(item_id, features, {"duration": round(duration, 6)})
            bar.update(1)
    return writer.finish([i for i, _ in items])


def check_features(where: str, made_with: str, have_rate: float, have_dim: int, teacher: str | TeacherSpec | Teacher,
                   frame_rate: float | None = None, dim: int | None = None) -> None:
    """Raise ConfigError unless features made with teacher ``made_with`` (at ``have_rate`` frames/s, ``have_dim``
    wide; a cache, or shards carrying them) are ``teacher``'s (same canonical spec, layers included) with the given
    ``frame_rate`` and ``dim``."""
    wanted, have = canonical_spec(teacher), canonical_spec(made_with)
    if wanted != have:
        raise ConfigError(f"{where} was made with teacher {have}, but the config asks for {wanted}; extract features "
                          "with that teacher or point to other features")
    if frame_rate is not None and abs(float(frame_rate) - float(have_rate)) > 1e-6:
        raise ConfigError(f"{where} ({have}) has {float(have_rate):g} frames/s, the config expects {float(frame_rate):g}")
    if dim is not None and int(dim) != int(have_dim):
        raise ConfigError(f"{where} ({have}) has dim {have_dim}, the config expects {dim}")


class FeatureCache(TensorStore):
    """A finished feature cache: the store's ``get(id) -> [dim, T]`` and ``crop``, plus the teacher it
    was made with (:meth:`check`) and :meth:`crop_seconds` for pairing with audio crops."""

    def __init__(self, folder: str | os.PathLike, *, max_open: int = 64):
        super().__init__(folder, max_open=max_open)
        if self.kind != "features" or "teacher" not in self.index:
            raise DataError(f"{self.folder}: a store of {self.kind}, not a teacher feature cache")

    @property
    def teacher(self) -> TeacherSpec:
        return TeacherSpec.parse(self.index["teacher"])

    @property
    def sample_rate(self) -> int:
        """The teacher's audio rate."""
        return int(self.index["sample_rate"])

    def check(self, teacher: str | TeacherSpec | Teacher, frame_rate: float | None = None,
              dim: int | None = None) -> None:
        """Raise ConfigError unless this cache was made by ``teacher`` (same canonical spec, layers
        included) with the given ``frame_rate`` and ``dim``."""
        check_features(f"feature cache {self.folder}", self.index["teacher"], self.frame_rate, self.dim, teacher,
                       frame_rate, dim)

    def crop_seconds(self, item_id: str, offset_seconds: float, seconds: float) -> tuple[torch.Tensor, int]:
        """The features of ``[offset, offset + seconds)`` of ``item_id``, for pairing with an audio crop.

        Frame ``i`` sits at time ``i / frame_rate``; the crop starts at frame ``round(offset * frame_rate)``
        (the nearest one, so it is off by at most half a frame) and holds ``F = round(seconds * frame_rate)``
        frames. Returns ``(features [dim, F] float32, valid)`` as :meth:`crop` does.
        """
        if offset_seconds < 0 or seconds <= 0:
            raise ValueError(f"crop needs offset >= 0 and seconds > 0, got {offset_seconds}, {seconds}")
        return self.crop(item_id, round(offset_seconds * self.frame_rate), round(seconds * self.frame_rate))

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r}, {len(self)} items, teacher={self.index['teacher']})"
