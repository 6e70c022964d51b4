"""Precomputed teacher features: extract once (resumable, sharded across ranks), read lazily in training.

Layout of a feature cache (written by :func:`extract_features`, read by :class:`FeatureCache`)::

    cache.json                               the settings of the run that owns the folder (written first)
    features-r00-00000.safetensors           one tensor [T, dim] per item, keyed by its id (the manifest's
    features-r01-00000.safetensors           ``audio`` field); rank r writes ``features-r{r:02d}-{n:05d}``
    index.json                               {"format": "semlat-features/1", "teacher", "sample_rate",
                                              "frame_rate", "dim", "dtype", "manifest", "split",
                                              "max_seconds", "chunk_seconds", "context_seconds",
                                              "items": [{"id", "shard", "frames", "duration"}]}
    rejects.tsv                              utterances that could not be read: ``id<TAB>reason``

Shards are written atomically as they fill, each with its items' ids, frame counts and durations
(and the run's settings) in its safetensors metadata, so a shard file either exists whole or not
at all. ``index.json`` is written last, from the shards' metadata: a folder with an index is complete.

**Resume.** ``cache.json`` records the teacher (canonical spec) and every setting that changes the
features. A rerun into the same folder checks it (a different teacher or setting is refused with a
:class:`~semlat.errors.DataError`), skips every item found in a complete shard (of any rank, so the
number of ranks may change between runs), removes its own rank's half-written temporary shards, and
numbers its new shards after the existing ones. An interrupted shard (killed before its rename) is
simply redone; on an ordinary exception or Ctrl-C the items finished so far are flushed first.
Rejected utterances are retried by a rerun (the file may have been fixed). Each rank records its
rejects in ``rejects-r{rank:02d}.tsv`` when it finishes; the index writer merges them into ``rejects.tsv``.

**Long utterances** run through the teacher in windows of ``chunk_seconds`` of frames plus
``context_seconds`` of context on each side; only the centre frames of each window are kept, cut on
exact frame boundaries (the audio is resampled once, whole, to the teacher's rate, whose hop is a
whole number of samples), so the result has exactly the frames an unchunked pass gives. For a teacher
whose receptive field fits in the context (a convolutional one) the chunked features equal the
unchunked ones to float rounding (tested: < 1e-5). Transformer teachers attend over their whole
input, so for utterances longer than ``chunk_seconds + 2 * context_seconds`` (34 s by default) a
frame sees at least ``context_seconds`` and at most ``chunk_seconds + 2 * context_seconds`` of audio
around it rather than the whole file: the features are those of a ~34 s excerpt, not bit-equal to
a whole-file pass. That excerpt is already longer than the crops HuBERT/WavLM are pre-trained on
(~16 s), so little long-range information is lost; the exact difference depends on the model and is
not measured here (it needs real weights). Shorter utterances run in one pass, exactly. The audio
itself is read whole (``load_audio``'s 1-hour limit applies); the teacher's activations, the part
that grows quadratically, stay bounded.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from semlat.audio.io import load_audio
from semlat.audio.processing import resample
from semlat.checkpoints import write_tensors
from semlat.data.manifest import Manifest
from semlat.errors import AudioError, ConfigError, DataError
from semlat.semantic.teachers import Teacher, TeacherSpec, load_teacher
from semlat.utils.files import atomic_write_text

FORMAT = "semlat-features/1"
INDEX = "index.json"
MARKER = "cache.json"
REJECTS = "rejects.tsv"
SHARD_PATTERN = re.compile(r"features-r(\d{2,})-(\d{5,})\.safetensors")
DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float32": torch.float32, "fp32": torch.float32}


# --------------------------------------------------------------------------------------------------
# Small helpers: ranks, devices, dtypes, settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranks:
    """This process's share of the work: ``rank`` of ``world_size``; ``synced`` when barriers work."""

    rank: int
    world_size: int
    synced: bool

    def barrier(self) -> None:
        if self.synced:
            dist.barrier()


def _ranks(rank: int | None, world_size: int | None) -> _Ranks:
    """Rank and world size from the arguments, else from torch.distributed, else ``0`` of ``1``."""
    initialised = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside a world of {world_size} processes")
    synced = initialised and world_size > 1 and dist.get_world_size() == world_size
    return _Ranks(rank, world_size, synced)


def _device(device: str | torch.device) -> torch.device:
    """``auto``/``cuda`` pick ``cuda:$LOCAL_RANK`` (as under torchrun); anything else is taken as is."""
    if str(device) in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if str(device) == "cuda":
                raise ConfigError("device=cuda but no CUDA device is available")
            return torch.device("cpu")
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device(device)


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"feature dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ConfigError(f"feature dtype must be float16, bfloat16 or float32, got {dtype}")
    return dtype


def _load(teacher: str | TeacherSpec | Teacher, device: torch.device) -> Teacher:
    """The teacher, frozen, on ``device``."""
    if isinstance(teacher, Teacher):
        return teacher.to(device).freeze()
    return load_teacher(teacher, device)


def canonical_spec(teacher: str | TeacherSpec | Teacher) -> str:
    """The canonical spec string of a teacher (absolute path, layers), as caches record it."""
    spec = teacher.spec if isinstance(teacher, Teacher) else teacher
    return str(TeacherSpec.parse(str(spec)))


def _settings(teacher: Teacher, manifest: Path, split: str | None, dtype: torch.dtype,
              max_seconds: float | None, chunk_seconds: float, context_seconds: float) -> dict[str, Any]:
    """Everything that decides the features; a JSON round trip so it compares equal to what was read."""
    settings = {
        "format": FORMAT, "teacher": canonical_spec(teacher), "sample_rate": int(teacher.sample_rate),
        "frame_rate": float(teacher.frame_rate), "dim": int(teacher.dim), "dtype": str(dtype).removeprefix("torch."),
        "manifest": str(manifest.resolve()), "split": split, "max_seconds": max_seconds,
        "chunk_seconds": float(chunk_seconds), "context_seconds": float(context_seconds),
    }
    return json.loads(json.dumps(settings))


def _mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``key=old`` vs ``key=new`` for the first setting that differs (teacher first), else ``None``."""
    for key in ("format", "teacher", *sorted(set(old) | set(new))):
        if old.get(key) != new.get(key):
            return f"{key}={old.get(key)!r} (this run: {key}={new.get(key)!r})"
    return None


def _check_marker(out: Path, settings: Mapping[str, Any]) -> None:
    """Refuse a folder that another teacher or other settings wrote (``cache.json``)."""
    path = out / MARKER
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON ({err.msg}); delete the folder to start over") from None
    difference = _mismatch(old, settings) if isinstance(old, dict) else "not a JSON object"
    if difference:
        raise DataError(f"{out}: already holds teacher features made with {difference}; "
                        "use another folder or delete this one")


# --------------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    """Where one finished item lives."""

    shard: str
    frames: int
    duration: float


def _shard_files(out: Path) -> list[tuple[int, int, Path]]:
    """``(rank, number, path)`` of every final-named shard in ``out``, sorted by name."""
    found = []
    for path in sorted(out.glob("features-r*-*.safetensors")):
        match = SHARD_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match[1]), int(match[2]), path))
    return found


def _shard_items(path: Path, settings: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The items listed in a shard's metadata, or ``None`` if the file is unreadable (not complete).

    Raises DataError when the shard was written with other settings.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        items = json.loads(meta["items"])
        shard_settings = json.loads(meta["settings"])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
        return None
    difference = _mismatch(shard_settings, settings)
    if difference:
        raise DataError(f"{path}: shard made with {difference}; use another folder or delete this one")
    return items


def _complete_items(out: Path, settings: Mapping[str, Any]) -> dict[str, _Stored]:
    """Every item in a complete shard of ``out`` (first shard by name wins for duplicates)."""
    stored: dict[str, _Stored] = {}
    for _, _, path in _shard_files(out):
        for item in _shard_items(path, settings) or []:
            stored.setdefault(item["id"], _Stored(path.name, int(item["frames"]), float(item["duration"])))
    return stored


def _remove_stale_temporaries(out: Path, rank: int) -> None:
    """Delete this rank's half-written shards (temporary names left by a killed run)."""
    for path in out.glob(f".features-r{rank:02d}-*.tmp.safetensors"):
        path.unlink(missing_ok=True)


class _ShardWriter:
    """Collects ``[T, dim]`` features and writes ``features-r{rank}-{n}`` shards of ~``shard_bytes``."""

    def __init__(self, out: Path, rank: int, settings: Mapping[str, Any], shard_bytes: int):
        self.out, self.rank, self.shard_bytes = out, rank, shard_bytes
        self.settings_json = json.dumps(settings, sort_keys=True)
        used = [n for r, n, _ in _shard_files(out) if r == rank]
        self.number = max(used, default=-1) + 1
        self.pending: dict[str, torch.Tensor] = {}
        self.items: list[dict[str, Any]] = []
        self.pending_bytes = 0

    def add(self, item_id: str, features: torch.Tensor, duration: float) -> None:
        """Queue ``features [T, dim]`` of ``item_id``; writes a shard once ``shard_bytes`` are queued."""
        self.pending[item_id] = features.contiguous()
        self.items.append({"id": item_id, "frames": int(features.shape[0]), "duration": round(duration, 6)})
        self.pending_bytes += features.numel() * features.element_size()
        if self.pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the queued items as one shard (atomically)."""
        if not self.pending:
            return
        name = f"features-r{self.rank:02d}-{self.number:05d}.safetensors"
        metadata = {"format": FORMAT, "settings": self.settings_json, "items": json.dumps(self.items)}
        write_tensors(self.out / name, self.pending, metadata)
        self.pending, self.items, self.pending_bytes = {}, [], 0
        self.number += 1


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


def _run_teacher(teacher: Teacher, audio: torch.Tensor) -> torch.Tensor:
    """One pass: ``audio [N]`` at the teacher's rate -> ``[T, dim]`` float32 (teacher's device)."""
    features, lengths = teacher.extract(audio[None], teacher.sample_rate)
    return features[0, : int(lengths[0])]


def teacher_features(teacher: Teacher, audio: torch.Tensor, *, chunk_seconds: float = 30.0,
                     context_seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Features of one utterance, in windows when it is long (see the module docstring).

    ``audio [N]`` at ``teacher.sample_rate`` -> ``[T, dim]`` in ``dtype`` on the CPU, with
    ``T = teacher.num_frames(N)``. Windows hold ``chunk_seconds`` of kept frames plus
    ``context_seconds`` on each side; utterances of up to ``chunk + 2 * context`` run in one pass,
    as do teachers whose hop is not a whole number of samples.
    """
    total = teacher.num_frames(audio.shape[-1])
    hop = teacher.sample_rate / teacher.frame_rate
    chunk = max(1, round(chunk_seconds * teacher.frame_rate))
    context = max(0, round(context_seconds * teacher.frame_rate))
    if total <= chunk + 2 * context or abs(hop - round(hop)) > 1e-6:
        return _run_teacher(teacher, audio).to(dtype).cpu()
    hop = round(hop)
    pieces = []
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        left, right = max(0, start - context), min(total, stop + context)
        end = audio.shape[-1] if right >= total else min(audio.shape[-1], right * hop)
        piece = _run_teacher(teacher, audio[left * hop:end])[start - left:stop - left]
        if piece.shape[0] != stop - start:
            raise RuntimeError(f"teacher window [{left}, {right}) gave too few frames: the teacher's receptive "
                               f"field is wider than context_seconds={context_seconds}")
        pieces.append(piece.to(dtype).cpu())
    return torch.cat(pieces)


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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write_rank_rejects(out: Path, rank: int, rejects: Iterable[tuple[str, str]]) -> None:
    """This rank's rejects, written when it finishes (``rejects-r{rank}.tsv``, maybe empty)."""
    atomic_write_text(out / f"rejects-r{rank:02d}.tsv", "".join(f"{i}\t{_one_line(r)}\n" for i, r in rejects))


def _read_rank_rejects(out: Path, world_size: int) -> dict[str, str]:
    """Reasons from the per-rank reject lists of ranks ``0 .. world_size - 1``."""
    reasons: dict[str, str] = {}
    for rank in range(world_size):
        path = out / f"rejects-r{rank:02d}.tsv"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                item_id, _, reason = line.partition("\t")
                reasons.setdefault(item_id, reason)
    return reasons


def _finalize(out: Path, settings: Mapping[str, Any], ids: list[str], world_size: int, cleanup: bool) -> bool:
    """Write ``index.json`` (and ``rejects.tsv``) once every item is stored or rejected.

    Returns False, writing nothing, when some item is neither (another rank is still running).
    Raises DataError when no item could be extracted.
    """
    stored = _complete_items(out, settings)
    reasons = _read_rank_rejects(out, world_size)
    missing = [i for i in ids if i not in stored]
    if any(i not in reasons for i in missing):
        return False
    if missing:
        atomic_write_text(out / REJECTS, "".join(f"{i}\t{reasons[i]}\n" for i in missing))
    else:
        (out / REJECTS).unlink(missing_ok=True)
    if len(missing) == len(ids):
        raise DataError(f"every utterance failed; first: {missing[0]}: {reasons[missing[0]]} (see {out / REJECTS})")
    items = [{"id": i, "shard": stored[i].shard, "frames": stored[i].frames, "duration": stored[i].duration}
             for i in ids if i in stored]
    index = {**settings, "items": items}
    atomic_write_text(out / INDEX, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    if cleanup:
        for path in out.glob("rejects-r*.tsv"):
            path.unlink(missing_ok=True)
    return True


def _extract_share(teacher: Teacher, todo: list[tuple[str, Path]], writer: _ShardWriter, settings: Mapping[str, Any],
                   bar: tqdm) -> list[tuple[str, str]]:
    """Extract ``todo`` into ``writer``; returns the rejects. Finished items are flushed even when
    this is interrupted."""
    rejects: list[tuple[str, str]] = []
    try:
        for item_id, path in todo:
            try:
                audio, duration = _read_audio(path, teacher.sample_rate, settings["max_seconds"])
                if teacher.num_frames(audio.shape[-1]) <= 0:
                    raise AudioError(f"{path}: {duration:.3f} s is too short for the teacher (no frames)")
            except AudioError as err:
                rejects.append((item_id, str(err)))
                bar.update(1)
                continue
            features = teacher_features(teacher, audio, chunk_seconds=settings["chunk_seconds"],
                                        context_seconds=settings["context_seconds"], dtype=DTYPES[settings["dtype"]])
            writer.add(item_id, features, duration)
            bar.update(1)
    finally:
        writer.flush()
    return rejects


def extract_features(teacher: str | TeacherSpec | Teacher, manifest: str | os.PathLike, out: str | os.PathLike, *,
                     split: str | None = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype | str = torch.float16, shard_bytes: int = 256 << 20, progress: bool = True,
                     max_seconds: float | None = None, chunk_seconds: float = 30.0, context_seconds: float = 2.0,
                     rank: int | None = None, world_size: int | None = None) -> Path:
    """Run a frozen teacher over every utterance of a manifest and store its features in ``out``.

    Args:
        teacher: a spec (``hf:/models/wavlm-large@23``) or a loaded :class:`Teacher`.
        manifest, split: the utterances (only ``split`` when given); ids are the ``audio`` fields.
        device: where the teacher runs (``cuda``/``auto`` use ``cuda:$LOCAL_RANK``).
        dtype: storage precision of the ``[T, dim]`` features (fp16 by default).
        shard_bytes: a shard is written once this many bytes of features are queued.
        max_seconds: utterances are cut to their first ``max_seconds`` (as ``UtteranceDataset`` does).
        chunk_seconds, context_seconds: windows for long utterances (see the module docstring).
        rank, world_size: this process's share (items ``rank::world_size``); by default from
            torch.distributed when it is initialised, else the whole manifest.

    Unreadable or too-short audio is skipped and listed in ``out/rejects.tsv``; it is an error only when
    every utterance fails. A rerun resumes (see the module docstring). Under torch.distributed every
    rank must call this; rank 0 writes the index after all ranks finish. With ``rank``/``world_size``
    given and no process group, the last rank to finish writes it. Returns the index path.
    """
    ranks = _ranks(rank, world_size)
    out = Path(out)
    items = _utterances(Manifest.read(manifest, split=split))
    if not items:
        raise DataError(f"{manifest}: no utterances" + (f" in split {split!r}" if split else ""))
    model = _load(teacher, _device(device))
    settings = _settings(model, Path(manifest), split, _dtype(dtype), max_seconds, chunk_seconds, context_seconds)
    out.mkdir(parents=True, exist_ok=True)
    _check_marker(out, settings)
    done = _complete_items(out, settings)  # also refuses shards written with other settings
    ranks.barrier()  # every rank has checked the folder before rank 0 claims it
    if ranks.rank == 0 or not ranks.synced:
        atomic_write_text(out / MARKER, json.dumps(settings, indent=1) + "\n")
        (out / INDEX).unlink(missing_ok=True)
    ranks.barrier()
    _remove_stale_temporaries(out, ranks.rank)
    mine = items[ranks.rank::ranks.world_size]
    todo = [(i, p) for i, p in mine if i not in done]
    writer = _ShardWriter(out, ranks.rank, settings, shard_bytes)
    show = progress and ranks.rank == 0
    with tqdm(total=len(mine), initial=len(mine) - len(todo), desc="teacher features", unit="file",
              disable=not show, dynamic_ncols=True) as bar:
        rejects = _extract_share(model, todo, writer, settings, bar)
    _write_rank_rejects(out, ranks.rank, rejects)
    return _finish(out, settings, [i for i, _ in items], ranks)


def _finish(out: Path, settings: Mapping[str, Any], ids: list[str], ranks: _Ranks) -> Path:
    """Write the index (rank 0 after a barrier, or any rank that finds the work complete)."""
    ranks.barrier()
    error: DataError | None = None
    if ranks.rank == 0 or not ranks.synced:
        try:
            _finalize(out, settings, ids, ranks.world_size, cleanup=ranks.synced or ranks.world_size == 1)
        except DataError as err:
            error = err
    ranks.barrier()
    if error is not None:
        raise error
    if ranks.synced and not (out / INDEX).is_file():
        raise DataError(f"{out}: some utterances were neither extracted nor rejected; rerun to finish")
    return out / INDEX


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


class FeatureCache:
    """A finished feature cache: ``get(id) -> [T, dim]``, ``crop(id, offset, seconds)``.

    Shards are opened lazily (memory-mapped by safetensors) and at most ``max_open`` stay open. Handles
    are never pickled and are reopened in a forked process, so one cache can be handed to DataLoader
    workers.
    """

    def __init__(self, folder: str | os.PathLike, *, max_open: int = 64):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise DataError(f"{self.folder}: not a finished feature cache ({INDEX} is missing)")
        try:
            self.index = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON ({err.msg})") from None
        if not isinstance(self.index, dict) or self.index.get("format") != FORMAT:
            found = self.index.get("format") if isinstance(self.index, dict) else None
            raise DataError(f"{path}: unknown feature cache format {found!r} (expected {FORMAT})")
        self._items = {item["id"]: item for item in self.index["items"]}
        self.max_open = max_open
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._pid = os.getpid()

    # -- metadata ------------------------------------------------------------------------------------

    @property
    def teacher(self) -> TeacherSpec:
        return TeacherSpec.parse(self.index["teacher"])

    @property
    def frame_rate(self) -> float:
        return float(self.index["frame_rate"])

    @property
    def dim(self) -> int:
        return int(self.index["dim"])

    @property
    def sample_rate(self) -> int:
        """The teacher's audio rate."""
        return int(self.index["sample_rate"])

    @property
    def items(self) -> list[dict[str, Any]]:
        """Index entries ``{"id", "shard", "frames", "duration"}`` in manifest order."""
        return self.index["items"]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def frames(self, item_id: str) -> int:
        """Number of frames stored for ``item_id``."""
        return int(self._item(item_id)["frames"])

    def check(self, teacher: str | TeacherSpec | Teacher, frame_rate: float | None = None,
              dim: int | None = None) -> None:
        """Raise ConfigError unless this cache was made by ``teacher`` (same canonical spec, layers
        included) with the given ``frame_rate`` and ``dim``."""
        wanted, have = canonical_spec(teacher), canonical_spec(self.index["teacher"])
        if wanted != have:
            raise ConfigError(f"feature cache {self.folder} was made with teacher {have}, but the config asks for "
                              f"{wanted}; extract features with that teacher or point to another cache")
        if frame_rate is not None and abs(float(frame_rate) - self.frame_rate) > 1e-6:
            raise ConfigError(f"feature cache {self.folder} ({have}) has {self.frame_rate:g} frames/s, "
                              f"the config expects {float(frame_rate):g}")
        if dim is not None and int(dim) != self.dim:
            raise ConfigError(f"feature cache {self.folder} ({have}) has dim {self.dim}, the config expects {dim}")

    # -- tensors -------------------------------------------------------------------------------------

    def _item(self, item_id: str) -> dict[str, Any]:
        try:
            return self._items[item_id]
        except KeyError:
            raise KeyError(f"{item_id!r} is not in feature cache {self.folder}") from None

    def _handle(self, shard: str) -> Any:
        """The open shard (LRU of ``max_open``), reopened after a fork."""
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            try:
                handle = safe_open(str(self.folder / shard), framework="pt")
            except (SafetensorError, OSError) as err:
                raise DataError(f"{self.folder / shard}: unreadable feature shard ({err})") from None
            self._handles[shard] = handle
            while len(self._handles) > self.max_open:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(shard)
        return handle

    def get(self, item_id: str) -> torch.Tensor:
        """All features of ``item_id``: ``[T, dim]`` in the stored dtype (fp16 by default)."""
        item = self._item(item_id)
        return self._handle(item["shard"]).get_tensor(item_id)

    def crop(self, item_id: str, offset_seconds: float, seconds: float) -> tuple[torch.Tensor, int]:
        """The features of ``[offset, offset + seconds)`` of ``item_id``, for pairing with an audio crop.

        Frame ``i`` sits at time ``i / frame_rate``; the crop starts at frame ``round(offset * frame_rate)``
        (the nearest one, so it is off by at most half a frame) and holds ``F = round(seconds * frame_rate)``
        frames. Returns ``(features [F, dim] float32, valid)``: frames past the end of the utterance are
        zeros and ``valid`` counts the others (``0 <= valid <= F``).
        """
        if offset_seconds < 0 or seconds <= 0:
            raise ValueError(f"crop needs offset >= 0 and seconds > 0, got {offset_seconds}, {seconds}")
        item = self._item(item_id)
        count = round(seconds * self.frame_rate)
        start = round(offset_seconds * self.frame_rate)
        valid = max(0, min(count, int(item["frames"]) - start))
        features = torch.zeros(count, self.dim)
        if valid:
            features[:valid] = self._handle(item["shard"]).get_slice(item_id)[start:start + valid].float()
        return features, valid

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r}, {len(self)} items, teacher={self.index['teacher']})"

