"""Inference with a model folder: ``semlat.load`` and encode, decode and reconstruct files, folders or manifests.

:func:`load` returns a :class:`LoadedSpace`: the model (eval mode, weight norm folded away) plus how
to run it. It is itself a :class:`~semlat.latent_space.LatentSpace` and takes tensors or paths::

    space = semlat.load("runs/vae/checkpoints/step-00010000", device="cuda", precision="bf16")
    z = space.encode("speech.wav")              # [1, D, T] (the file is resampled to input_rate)
    audio = space.decode(z)                      # [1, 1, T * hop] at output_rate
    space.save(audio, "out.wav")

``precision`` is "fp32", "bf16" or "fp16" (autocast; the half precisions are meant for GPUs). Long
inputs run through the one chunk loop (:mod:`semlat.chunking`), so memory stays bounded whatever the
length; sampling decoders get a seed per chunk and crossfaded overlaps (``overlap_seconds``).

Files in, files out (the ``semlat encode/decode/reconstruct`` commands): a single input with a
file-shaped OUT (``.safetensors`` for latents, ``.wav``/``.flac`` for audio) writes that file; a
manifest (``.jsonl``) or a folder of audio writes a folder (latents: a :mod:`tensor store
<semlat.data.store>`, resumable; audio: one file per input); an OUT that cannot hold the input is a
one-line error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from semlat.audio.io import load_audio, save_audio
from semlat.checkpoints import model_from_state, read_model_folder, update_model_meta
from semlat.data.latent_file import orient_latents, read_latent_file, save_latent_file
from semlat.data.manifest import OPTIONAL_FIELDS, Manifest
from semlat.data.prepare import AUDIO_EXTENSIONS
from semlat.data.store import StoreWriter, TensorStore
from semlat.errors import AudioError, ConfigError, DataError, SemlatError
from semlat.latent_space import LatentSpace, decode_chunked, decode_stream, encode_chunked, space_info
from semlat.nn.weight_norm import remove_weight_norm
from semlat.utils.devices import pick_device
from semlat.utils.registry import resolve

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
LATENT_SUFFIXES = (".safetensors",)
AUDIO_OUT_SUFFIXES = (".wav", ".flac")


@dataclass
class LoadedSpace:
    """A loaded latent space plus how to run it; a LatentSpace itself (tensors or paths in)."""

    model: nn.Module
    folder: Path
    model_type: str
    device: torch.device
    precision: str = "fp32"
    chunk_seconds: float = 30.0
    context_seconds: float = 2.0
    overlap_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def space(self) -> LatentSpace:
        return self.model  # type: ignore[return-value]

    @property
    def input_rate(self) -> int:
        return int(self.space.input_rate)

    @property
    def output_rate(self) -> int:
        return int(self.space.output_rate)

    @property
    def latent_dim(self) -> int:
        return int(self.space.latent_dim)

    @property
    def frame_rate(self) -> float:
        return float(self.space.frame_rate)

    @property
    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean [D], std [D])`` recorded in the folder's config.json (``semlat encode --record-stats``)."""
        stats = self.meta.get("latent_stats")
        if not stats:
            return None
        return torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)

    def info(self) -> dict[str, Any]:
        """Rates, size and provenance, as latent stores and reports record them."""
        return {**space_info(self.space), "model": str(self.folder.resolve()), "model_type": self.model_type}

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        dtype = _DTYPES[self.precision]
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            yield

    def encode(self, audio: torch.Tensor | str | os.PathLike,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """``[B, 1, N]`` at ``input_rate`` (or an audio file's path) -> ``[B, D, ceil(N / hop)]`` float32;
        ``progress(chunks done, chunks)`` is called after each chunk of the chunk loop."""
        if not isinstance(audio, torch.Tensor):
            audio = load_audio(audio, self.input_rate)[0][None]
        with self._running():
            latents = encode_chunked(self.space, audio.to(self.device), self.chunk_seconds, self.context_seconds,
                                     progress)
        return latents.float()

    def decode(self, latents: torch.Tensor | str | os.PathLike, progress: Callable[[int, int], None] | None = None,
               **options: Any) -> torch.Tensor:
        """``[B, D, T]`` (or a latent file's path) -> ``[B, 1, T * hop]`` float32 at ``output_rate``.

        ``options`` are the model's sampling options (``steps``, ``schedule``, ``seed``); deterministic
        models accept ``seed`` alone. ``progress`` as for :meth:`encode`."""
        if not isinstance(latents, torch.Tensor):
            latents = self.read_latents(latents)[0][None]
        with self._running():
            audio = decode_chunked(self.space, latents.to(self.device), self.chunk_seconds, self.context_seconds,
                                   self.overlap_seconds, progress, **options)
        return audio.float()

    def decode_stream(self, chunk_seconds: float = 1.0, **options: Any) -> _DecodeStream:
        """Incremental decoding (streaming TTS): ``push(latents [B, D, n])`` returns the audio ``[B, 1, m]`` that is
        final so far (or None), ``finish()`` the rest; windows of ``chunk_seconds`` with this space's context and
        overlap, so the joined audio equals :meth:`decode` with ``chunk_seconds`` set to the same value."""
        return _DecodeStream(self, decode_stream(self.space, chunk_seconds, self.context_seconds, self.overlap_seconds,
                                                 **options))

    def save(self, audio: torch.Tensor, path: str | os.PathLike) -> Path:
        """Write decoded audio (``[1, 1, N]``, ``[1, N]`` or ``[N]``) at ``output_rate`` (the suffix picks
        the format)."""
        return save_audio(path, audio.reshape(1, -1).cpu(), self.output_rate)

    def read_latents(self, path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
        """A latent file's ``([D, T], meta)`` for this space: read (semlat's file or a plain one), oriented and
        checked against the space's width and frame rate."""
        tensor, meta = read_latent_file(path)
        tensor = orient_latents(tensor, meta, self.latent_dim, str(path))
        self.check_latents(tensor.shape[0], meta.get("frame_rate"), str(path))
        return tensor, meta

    def check_latents(self, dim: int | None, frame_rate: float | None, where: str) -> None:
        """One-line ConfigError unless latents of width ``dim`` at ``frame_rate`` fit this model."""
        if dim is not None and int(dim) != self.latent_dim or \
                frame_rate is not None and abs(float(frame_rate) - self.frame_rate) > 1e-6:
            raise ConfigError(f"{where}: latents of dim {dim} at {frame_rate} Hz do not fit this model "
                              f"({self.latent_dim} at {self.frame_rate:g} Hz)")


#: the old name of :class:`LoadedSpace`
Codec = LoadedSpace


#: the model types that sit below this module (autoencoders, vocoders, semantic encoders): those it can build;
#: the ones that are latent spaces load (``"module:Class"``, imported on use so the CLI starts fast; every
#: module named here is below :mod:`semlat.inference`, so no name closes a cycle). :mod:`semlat.models` adds
#: the types above (TTS, TTA, duration models, judges).
SPACE_TYPES: Mapping[str, str] = MappingProxyType({
    "wave_vae": "semlat.autoencoders.wave_vae:WaveVAE",
    "bigvgan": "semlat.vocoders.mel_vocoder:MelVocoder",
    "mel_dcae": "semlat.autoencoders.mel_space:MelDCAESpace",
    "hubert_teacher": "semlat.semantic.hubert_teacher:HubertTeacherModel",
    "vocos": "semlat.vocoders.vocos:Vocos",
    "griffin_lim": "semlat.vocoders.griffin_lim:GriffinLimVocoder",
    "dasheng": "semlat.semantic.dasheng:Dasheng",
    "semantic_vocoder": "semlat.autoencoders.semantic_vocoder:SemanticVocoder",
})


class _DecodeStream:
    """A :class:`~semlat.chunking.ChunkStream` of a loaded space's decode, run in its precision and device."""

    def __init__(self, loaded: LoadedSpace, stream: Any):
        self.loaded, self.stream = loaded, stream

    def _run(self, call: Callable[[], torch.Tensor | None]) -> torch.Tensor | None:
        with self.loaded._running():
            out = call()
        return None if out is None else out.float()

    def push(self, latents: torch.Tensor) -> torch.Tensor | None:
        return self._run(lambda: self.stream.push(latents.to(self.loaded.device)))

    def finish(self) -> torch.Tensor | None:
        return self._run(self.stream.finish)


def load(folder: str | os.PathLike, device: str | torch.device = "auto", precision: str = "fp32", *,
         chunk_seconds: float = 30.0, context_seconds: float = 2.0, overlap_seconds: float = 0.0) -> LoadedSpace:
    """Load a model folder for inference (eval mode, weight norm removed): semlat's one entry point.

    ``device``: auto, cpu, cuda or cuda:N. ``precision``: fp32, bf16 or fp16 (autocast). The chunk
    settings bound memory on long inputs (see :mod:`semlat.chunking`)."""
    if precision not in _DTYPES:
        raise ConfigError(f"precision must be one of {', '.join(_DTYPES)}, got {precision!r}")
    state, meta = read_model_folder(folder)  # read once: weights and description
    target = pick_device(device)
    if meta["model_type"] not in SPACE_TYPES:
        raise ConfigError(f"{folder}: a {meta['model_type']} model is not a latent space (no encode/decode)")
    model = remove_weight_norm(model_from_state(resolve(SPACE_TYPES[meta["model_type"]]), state, meta, str(folder),
                                                target))
    if not isinstance(model, LatentSpace):
        raise ConfigError(f"{folder}: a {meta['model_type']} model is not a latent space (no encode/decode)")
    return LoadedSpace(model, Path(folder), meta["model_type"], target, precision, chunk_seconds, context_seconds,
                       overlap_seconds, meta)


def load_codec(folder: str | os.PathLike, device: str | torch.device = "auto", precision: str = "fp32",
               chunk_seconds: float = 30.0, context_seconds: float = 2.0) -> LoadedSpace:
    """The same as :func:`load` (kept for callers of the earlier name)."""
    return load(folder, device, precision, chunk_seconds=chunk_seconds, context_seconds=context_seconds)


# ------------------------------------------------------------------------------------------------
# Inputs and outputs
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    id: str
    path: Path
    meta: dict[str, Any]


def _inputs(source: str | os.PathLike, split: str | None) -> tuple[list[_Input], bool]:
    """Every input of a manifest (``.jsonl``), a folder of audio (recursive) or one file, and whether
    there may be many."""
    source = Path(source)
    if source.suffix == ".jsonl":
        manifest = Manifest.read(source, split=split)
        items = []
        for i, u in enumerate(manifest):
            meta = {k: getattr(u, k) for k in OPTIONAL_FIELDS if getattr(u, k) is not None}
            items.append(_Input(u.audio, manifest.audio_path(i), meta))
        return items, True
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise DataError(f"{source}: a folder with no audio files ({' '.join(AUDIO_EXTENSIONS)})")
        return [_Input(str(p.relative_to(source)), p, {}) for p in files], True
    if split is not None:
        raise ConfigError(f"--split applies to a manifest, not to {source}")
    if not source.exists():
        raise AudioError(f"{source}: no such file")
    return [_Input(source.name, source, {})], False


def _file_shaped(out: Path, suffixes: tuple[str, ...]) -> bool:
    return out.suffix.lower() in suffixes and not out.is_dir()


def _refuse_file_out(out: Path, source: str | os.PathLike) -> None:
    if out.suffix.lower() in (*LATENT_SUFFIXES, *AUDIO_OUT_SUFFIXES) and not out.is_dir():
        raise ConfigError(f"{source} holds many inputs: OUT must be a folder, not a file like {out.name}")


def _wav_name(item_id: str) -> str:
    stem = item_id.rsplit(".", 1)[0] if "." in Path(item_id).name else item_id
    return stem + ".wav"


def _report_rejects(folder: Path, rejects: list[tuple[str, str]], total: int) -> None:
    from semlat.utils.files import atomic_write_text

    if rejects:
        atomic_write_text(folder / "rejects.tsv", "".join(f"{i}\t{r}\n" for i, r in rejects))
        if len(rejects) == total:
            raise SemlatError(f"every input failed; first: {rejects[0][0]}: {rejects[0][1]}")


# ------------------------------------------------------------------------------------------------
# encode
# ------------------------------------------------------------------------------------------------


def latent_store_settings(space: LoadedSpace, source: str | os.PathLike, split: str | None) -> dict[str, Any]:
    """What decides the latents of a store written by :func:`encode_to_store`."""
    return {"kind": "latents", "dim": space.latent_dim, "dtype": "float32", **space.info(),
            "source": str(Path(source).resolve()), "split": split, "chunk_seconds": space.chunk_seconds,
            "context_seconds": space.context_seconds}


def encode_to_store(space: LoadedSpace, source: str | os.PathLike, out: str | os.PathLike, *,
                    split: str | None = None, progress: bool = True, rank: int | None = None,
                    world_size: int | None = None, alignments: str | os.PathLike | None = None
                    ) -> tuple[int, list[tuple[str, str]], Path]:
    """Encode every input of a manifest or folder into the tensor store ``out`` (resumable; under
    torch.distributed each rank encodes its share). Items carry ``duration`` and the manifest's
    fields (text, phonemes, speaker, caption, ...); the index carries per-channel statistics.
    With ``alignments`` (a JSONL of :mod:`semlat.data.alignments`, keyed by the manifest's audio paths) each
    aligned item also carries its ``segments`` ``[[label, start_s, end_s], ...]`` in its shard's header, so the
    duration-aligned TTS can stream the store (``data.stream``) without reading an alignment file whole; the
    number of items left without one is ``unaligned`` in the store's settings.
    Returns ``(items stored, rejects, index path)``."""
    items, _ = _inputs(source, split)
    settings = latent_store_settings(space, source, split)
    aligned: dict[str, list[tuple[str, float, float]]] = {}
    if alignments is not None:
        from semlat.data.alignments import read_alignments

        aligned = read_alignments(alignments)
        if not any(it.id in aligned for it in items):
            raise DataError(f"{alignments}: aligns none of the {len(items)} inputs of {source} (ids are the "
                            "manifest's audio paths)")
        settings["alignments"] = str(Path(alignments).resolve())
        settings["unaligned"] = sum(it.id not in aligned for it in items)
    writer = StoreWriter(out, settings, rank=rank, world_size=world_size)
    mine = writer.mine(items)
    todo = [it for it in mine if it.id not in writer.done]
    show = progress and writer.ranks.rank == 0 and len(items) > 1
    with writer, tqdm(total=len(mine), initial=len(mine) - len(todo), desc="encoding", unit="file",
                      disable=not show, dynamic_ncols=True) as bar:
        for it in todo:
            try:
                audio, _ = load_audio(it.path, space.input_rate)
            except AudioError as err:
                writer.reject(it.id, str(err))
                bar.update(1)
                continue
            latents = space.encode(audio[None])[0]
            meta = {"duration": audio.shape[-1] / space.input_rate, **it.meta}
            if it.id in aligned:
                meta["segments"] = [list(segment) for segment in aligned[it.id]]
            writer.add(it.id, latents, meta)
            bar.update(1)
    index = writer.finish([it.id for it in items])
    store = TensorStore(out)
    rejects = []
    if (Path(out) / "rejects.tsv").is_file():
        rejects = [tuple(line.split("\t", 1)) for line in (Path(out) / "rejects.tsv").read_text().splitlines()]
    return len(store), rejects, index


def encode(space: LoadedSpace, source: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
           progress: bool = True, alignments: str | os.PathLike | None = None) -> tuple[int, list[tuple[str, str]]]:
    """``semlat encode``: one file -> ``OUT.safetensors`` (or into the store folder OUT); a manifest or
    folder -> the store folder OUT (``alignments``: see :func:`encode_to_store`). Returns ``(sequences written,
    rejects)``."""
    out = Path(out)
    items, many = _inputs(source, split)
    if alignments is not None and Path(source).suffix != ".jsonl":
        raise ConfigError(f"--alignments needs a manifest (.jsonl) as SOURCE: its ids are the manifest's audio "
                          f"paths, not {source}")
    if many:
        _refuse_file_out(out, source)
        count, rejects, _ = encode_to_store(space, source, out, split=split, progress=progress, alignments=alignments)
        return count, rejects
    if _file_shaped(out, AUDIO_OUT_SUFFIXES):
        raise ConfigError(f"{out}: encode writes latents: give a .safetensors file or a folder as OUT")
    if not _file_shaped(out, LATENT_SUFFIXES):
        count, rejects, _ = encode_to_store(space, source, out, progress=progress)
        return count, rejects
    item = items[0]
    audio, _ = load_audio(item.path, space.input_rate)
    latents = space.encode(audio[None])[0]
    save_latent_file(out, latents, {"id": item.id, "duration": audio.shape[-1] / space.input_rate, **space.info()})
    return 1, []


def record_stats(space: LoadedSpace, store_folder: str | os.PathLike) -> dict[str, Any]:
    """Copy a latent store's per-channel statistics into the model folder's config.json
    (``latent_stats``: mean, std, frames, store), where generative models find them."""
    store = TensorStore(store_folder)
    stats = store.index.get("stats")
    if not stats:
        raise DataError(f"{store_folder}: has no statistics (an older folder: encode it again)")
    space.check_latents(store.dim, store.frame_rate, str(store_folder))
    entry = {**stats, "store": str(Path(store_folder).resolve())}
    update_model_meta(space.folder, latent_stats=entry)
    space.meta["latent_stats"] = entry
    return entry


# ------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------


def _decode_one(space: LoadedSpace, latents: torch.Tensor, duration: float | None, target: Path,
                options: Mapping[str, Any]) -> Path:
    audio = space.decode(latents[None], **options)[0]
    if duration is not None:
        audio = audio[..., : round(duration * space.output_rate)]
    return save_audio(target, audio, space.output_rate)


def decode(space: LoadedSpace, latents: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True,
           **options: Any) -> int:
    """``semlat decode``: a latent file -> ``OUT.wav`` (or ``OUT/<id>.wav``); a store folder -> ``OUT/<id>.wav``
    for every item (a store of one item may also go to ``OUT.wav``). Audio is cropped to the encoded
    duration. ``options`` are decode options (steps, seed, ...). Returns the files written."""
    latents, out = Path(latents), Path(out)
    if latents.is_file():
        tensor, meta = space.read_latents(latents)
        target = out if _file_shaped(out, AUDIO_OUT_SUFFIXES) else out / _wav_name(meta.get("id") or latents.stem)
        _decode_one(space, tensor, meta.get("duration"), target, options)
        return 1
    if not latents.is_dir():
        raise DataError(f"{latents}: no such latent file or folder")
    store = TensorStore(latents)
    space.check_latents(store.dim, store.frame_rate, str(latents))
    single = _file_shaped(out, AUDIO_OUT_SUFFIXES)
    if single and len(store) != 1:
        raise ConfigError(f"{latents} holds {len(store)} latent sequences: OUT must be a folder, not {out.name}")
    count = 0
    for item, z in tqdm(store, total=len(store), desc="decoding", unit="file", disable=not progress or len(store) < 2):
        target = out if single else out / _wav_name(item["id"])
        _decode_one(space, z.float(), item.get("duration"), target, options)
        count += 1
    return count



# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------


def reconstruct(space: LoadedSpace, source: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
                progress: bool = True, **options: Any) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Encode then decode: a file -> ``OUT.wav`` (or ``OUT/<name>.wav``), a manifest or folder -> a folder.

    Returns the ``(id, input path, output path)`` of every reconstruction and the rejects."""
    items, many = _inputs(source, split)
    out = Path(out)
    if many:
        _refuse_file_out(out, source)
    elif _file_shaped(out, LATENT_SUFFIXES):
        raise ConfigError(f"{out}: reconstruct writes audio: give a .wav/.flac file or a folder as OUT")
    done, rejects = [], []
    for it in tqdm(items, desc="reconstructing", unit="file", disable=not progress or len(items) < 2):
        try:
            audio, _ = load_audio(it.path, space.input_rate)
        except AudioError as err:
            if not many:
                raise
            rejects.append((it.id, str(err)))
            continue
        duration = audio.shape[-1] / space.input_rate
        if many or not _file_shaped(out, AUDIO_OUT_SUFFIXES):
            target = out / _wav_name(it.id)
        else:
            target = out
        _decode_one(space, space.encode(audio[None])[0], duration, target, options)
        done.append((it.id, it.path, target))
    if many:
        _report_rejects(out, rejects, len(items))
    return done, rejects

