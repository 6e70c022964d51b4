"""Inference with a model folder: encode, decode and reconstruct files or whole manifests.

Models load in eval mode with weight norm folded away. ``precision`` is "fp32", "bf16" or
"fp16" (autocast; the half precisions are meant for GPUs). Long inputs are processed in chunks
(:mod:`semlat.latent_space`), so memory stays bounded whatever the length.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from semlat.audio.io import load_audio, save_audio
from semlat.checkpoints import load_model, read_model_folder
from semlat.data.latents import LatentReader, LatentWriter
from semlat.data.manifest import OPTIONAL_FIELDS, Manifest
from semlat.errors import AudioError, ConfigError, SemlatError
from semlat.latent_space import LatentSpace, decode_chunked, encode_chunked
from semlat.nn.weight_norm import remove_weight_norm
from semlat.utils.files import atomic_write_text

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Codec:
    """A loaded latent space plus how to run it."""

    model: nn.Module
    folder: Path
    model_type: str
    device: torch.device
    precision: str = "fp32"
    chunk_seconds: float = 30.0
    context_seconds: float = 2.0

    @property
    def space(self) -> LatentSpace:
        return self.model  # type: ignore[return-value]

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        dtype = _DTYPES[self.precision]
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            yield

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` at the model's rate -> ``[B, D, ceil(N / hop)]`` (float32)."""
        with self._running():
            latents = encode_chunked(self.space, audio.to(self.device), self.chunk_seconds, self.context_seconds)
        return latents.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, D, T]`` -> ``[B, 1, T * hop]`` (float32)."""
        with self._running():
            audio = decode_chunked(self.space, latents.to(self.device), self.chunk_seconds, self.context_seconds)
        return audio.float()


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is available")
    return torch.device(device)


def load_codec(folder: str | os.PathLike, device: str = "auto", precision: str = "fp32",
               chunk_seconds: float = 30.0, context_seconds: float = 2.0) -> Codec:
    """Load a model folder for inference (eval mode, weight norm removed)."""
    if precision not in _DTYPES:
        raise ConfigError(f"precision must be one of {', '.join(_DTYPES)}, got {precision!r}")
    _, meta = read_model_folder(folder)
    target = pick_device(device)
    model = remove_weight_norm(load_model(folder, device=target))
    if not isinstance(model, LatentSpace):
        raise ConfigError(f"{folder}: a {meta['model_type']} model is not a latent space (no encode/decode)")
    return Codec(model, Path(folder), meta["model_type"], target, precision, chunk_seconds, context_seconds)


def _model_meta(codec: Codec) -> dict:
    space = codec.space
    return {"latent_dim": space.latent_dim, "frame_rate": space.frame_rate, "sample_rate": space.sample_rate,
            "model": str(codec.folder), "model_type": codec.model_type, "dtype": "float32"}


def _inputs(source: str | os.PathLike, split: str | None) -> tuple[list[tuple[str, Path, dict]], bool]:
    """``(id, path, metadata)`` of every input, and whether ``source`` was a manifest."""
    source = Path(source)
    if source.suffix == ".jsonl":
        manifest = Manifest.read(source, split=split)
        items = []
        for i, u in enumerate(manifest):
            meta = {k: getattr(u, k) for k in OPTIONAL_FIELDS if getattr(u, k) is not None}
            items.append((u.audio, manifest.audio_path(i), meta))
        return items, True
    return [(source.name, source, {})], False


def _report_rejects(folder: Path, rejects: list[tuple[str, str]], total: int) -> None:
    if rejects:
        atomic_write_text(folder / "rejects.tsv", "".join(f"{i}\t{r}\n" for i, r in rejects))
        if len(rejects) == total:
            raise SemlatError(f"every input failed; first: {rejects[0][0]}: {rejects[0][1]}")


def encode_to_folder(codec: Codec, source: str | os.PathLike, out: str | os.PathLike, *,
                     split: str | None = None, progress: bool = True) -> tuple[int, list[tuple[str, str]]]:
    """Encode an audio file or every utterance of a manifest into a latent folder.

    Bad audio files are skipped and listed in ``out/rejects.tsv``. Returns (written, rejects).
    """
    items, _ = _inputs(source, split)
    writer = LatentWriter(out, _model_meta(codec))
    rejects: list[tuple[str, str]] = []
    sr = codec.space.sample_rate
    for item_id, path, meta in tqdm(items, desc="encoding", unit="file", disable=not progress or len(items) < 2):
        try:
            audio, _ = load_audio(path, sr)
        except AudioError as err:
            rejects.append((item_id, str(err)))
            continue
        latents = codec.encode(audio[None])[0]
        writer.add(item_id, latents, {"duration": audio.shape[-1] / sr, **meta})
    _report_rejects(Path(out), rejects, len(items))
    writer.close()
    return len(writer.items), rejects


def _wav_name(item_id: str) -> str:
    stem = item_id.rsplit(".", 1)[0] if "." in Path(item_id).name else item_id
    return stem + ".wav"


def decode_folder(codec: Codec, latents: str | os.PathLike, out: str | os.PathLike, *,
                  progress: bool = True) -> int:
    """Decode every item of a latent folder into ``out/<id>.wav`` (cropped to the encoded duration)."""
    reader = LatentReader(latents)
    space = codec.space
    if reader.index.get("latent_dim") != space.latent_dim or reader.index.get("frame_rate") != space.frame_rate:
        raise ConfigError(f"{latents}: latents of dim {reader.index.get('latent_dim')} at "
                          f"{reader.index.get('frame_rate')} Hz do not fit this model "
                          f"({space.latent_dim} at {space.frame_rate} Hz)")
    count = 0
    for item, z in tqdm(reader, total=len(reader), desc="decoding", unit="file", disable=not progress or len(reader) < 2):
        audio = codec.decode(z[None])[0]
        if "duration" in item:
            audio = audio[..., : round(item["duration"] * space.sample_rate)]
        save_audio(Path(out) / _wav_name(item["id"]), audio, space.sample_rate)
        count += 1
    return count


def reconstruct(codec: Codec, source: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
                progress: bool = True) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Encode then decode a file (``out`` is a .wav) or a manifest (``out`` is a folder).

    Returns the ``(id, input path, output path)`` of every reconstruction and the rejects.
    """
    items, is_manifest = _inputs(source, split)
    sr = codec.space.sample_rate
    done, rejects = [], []
    for item_id, path, _ in tqdm(items, desc="reconstructing", unit="file", disable=not progress or len(items) < 2):
        try:
            audio, _ = load_audio(path, sr)
        except AudioError as err:
            if not is_manifest:
                raise
            rejects.append((item_id, str(err)))
            continue
        recon = codec.decode(codec.encode(audio[None]))[0, :, : audio.shape[-1]]
        target = Path(out) / _wav_name(item_id) if is_manifest else Path(out)
        save_audio(target, recon, sr)
        done.append((item_id, Path(path), target))
    if is_manifest:
        _report_rejects(Path(out), rejects, len(items))
    return done, rejects
