"""The tensor store: ``[D, T]`` tensors on disk, written resumably by any number of ranks, read by id.

Latents (``semlat encode``) and teacher features (``semlat features extract``) are both stores; the
generative recipes read them through :class:`~semlat.data.store_dataset.StoreDataset`; one sequence as a file
of its own is :mod:`semlat.data.latent_file`; which share a process writes is :mod:`semlat.data.sharding`. Layout of a store folder::

    store.json                        the settings of the run that owns the folder (written first)
    tensors-r00-00000.safetensors     one tensor [D, T] (channels first) per item, keyed by its id;
    tensors-r01-00000.safetensors     rank r writes tensors-r{r:02d}-{n:05d}
    index.json                        {"format": "semlat-store/1", **settings,
                                       "stats": {"frames", "mean": [D], "std": [D]},
                                       "items": [{"id", "shard", "frames", ...item fields}]}
    rejects.tsv                       items that could not be made: ``id<TAB>reason``

Settings name what made the tensors (``kind``: "latents" or "features"; ``dim``; ``frame_rate``;
``dtype``; the model or teacher; the source manifest, ...). Each shard is written atomically with its
items, the settings and its share of the statistics in the safetensors metadata, so a shard either
exists whole or not at all; ``index.json`` is written last, from the shards: a folder with an index is
complete.

**Resume.** A rerun into the same folder with the same settings skips every item of a complete shard
(of any rank: the number of ranks may change between runs), deletes its own rank's half-written
temporaries and numbers its new shards after the existing ones; other settings are refused with a
one-line :class:`~semlat.errors.DataError`. Rejected items are retried by a rerun.

**Statistics.** Every shard records, per channel, the frame count, mean and sum of squared deviations
of its items (float64, of the values as stored); :func:`merge_stats` combines them (Chan et al.'s
pairwise update), so the index's ``mean`` and ``std`` (population) equal a single pass over every
frame of every item whatever the ranks and shards.

Folders written by earlier versions still read: ``semlat-latents/1`` (``semlat encode``, ``[D, T]``)
and ``semlat-features/1`` (feature caches, time-major ``[T, dim]``, transposed on read); neither has
statistics.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from semlat.checkpoints import write_tensors
from semlat.data.sharding import Ranks
from semlat.errors import ConfigError, DataError
from semlat.utils.files import atomic_write_text

FORMAT = "semlat-store/1"
LEGACY_LATENTS = "semlat-latents/1"
LEGACY_FEATURES = "semlat-features/1"
INDEX = "index.json"
MARKER = "store.json"
REJECTS = "rejects.tsv"
SHARD_PATTERN = re.compile(r"tensors-r(\d{2,})-(\d{5,})\.safetensors")
DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float32": torch.float32, "fp32": torch.float32}
#: the single-tensor file ``semlat encode IN.wav OUT.safetensors`` writes


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A storage dtype from a name or a dtype (float16, bfloat16 or float32)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"storage dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ConfigError(f"storage dtype must be float16, bfloat16 or float32, got {dtype}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


@dataclass
class ChannelStats:
    """Per-channel running statistics: ``count`` frames, ``mean [D]`` and ``m2 [D]`` (sum of squared
    deviations), float64."""

    count: int
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def of(cls, tensor: torch.Tensor) -> ChannelStats:
        """Statistics of one ``[D, T]`` tensor."""
        x = tensor.detach().to("cpu", torch.float64)
        mean = x.mean(dim=1) if x.shape[1] else torch.zeros(x.shape[0], dtype=torch.float64)
        return cls(int(x.shape[1]), mean, (x - mean[:, None]).square().sum(dim=1))

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Both sets of frames together (Chan et al.'s pairwise update)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta.square() * (self.count * other.count / count)
        return ChannelStats(count, mean, m2)

    @property
    def std(self) -> torch.Tensor:
        """Population standard deviation ``[D]``."""
        return (self.m2 / max(1, self.count)).sqrt()

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelStats:
        return cls(int(data["count"]), torch.tensor(data["mean"], dtype=torch.float64),
                   torch.tensor(data["m2"], dtype=torch.float64))


def merge_stats(parts: Iterable[ChannelStats]) -> ChannelStats | None:
    """All parts merged, or ``None`` for no part."""
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    return total


def summary(stats: ChannelStats | None) -> dict[str, Any] | None:
    """The index's ``stats`` entry: ``{"frames", "mean": [D], "std": [D]}``."""
    if stats is None:
        return None
    return {"frames": stats.count, "mean": [float(v) for v in stats.mean], "std": [float(v) for v in stats.std]}


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


def jsonable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON round trip, so settings compare equal to what is read back."""
    return json.loads(json.dumps(dict(settings)))


def settings_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``key=old (this run: key=new)`` for the first setting that differs, else ``None``."""
    for key in ("format", "kind", *sorted(set(old) | set(new))):
        if old.get(key) != new.get(key):
            return f"{key}={old.get(key)!r} (this run: {key}={new.get(key)!r})"
    return None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stored:
    shard: str
    item: dict[str, Any]


def shard_files(folder: Path) -> list[tuple[int, int, Path]]:
    """``(rank, number, path)`` of every shard file of a store folder, in name order."""
    found = []
    for path in sorted(folder.glob("tensors-r*-*.safetensors")):
        match = SHARD_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match[1]), int(match[2]), path))
    return found


def shard_meta(path: Path, settings: Mapping[str, Any]) -> tuple[list[dict[str, Any]], ChannelStats | None] | None:
    """A shard's items and statistics, or ``None`` if the file is unreadable (not complete). Raises
    DataError when the shard was written with other settings."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        items = json.loads(meta["items"])
        shard_settings = json.loads(meta["settings"])
        stats = json.loads(meta.get("stats", "null"))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
        return None
    difference = settings_mismatch(shard_settings, settings)
    if difference:
        raise DataError(f"{path}: shard made with {difference}; use another folder or delete this one")
    return items, (ChannelStats.from_json(stats) if stats else None)


def _complete(folder: Path, settings: Mapping[str, Any]) -> tuple[dict[str, _Stored], list[ChannelStats]]:
    """Every item in a complete shard (first shard by name wins for duplicates) and the shards' stats."""
    stored: dict[str, _Stored] = {}
    stats: list[ChannelStats] = []
    for _, _, path in shard_files(folder):
        found = shard_meta(path, settings)
        if found is None:
            continue
        items, shard_stats = found
        duplicate = False
        for item in items:
            duplicate |= item["id"] in stored
            stored.setdefault(item["id"], _Stored(path.name, item))
        if shard_stats is not None and not duplicate:
            stats.append(shard_stats)
    return stored, stats


class StoreWriter:
    """Writes (or resumes) a store: ``add`` tensors, ``reject`` failures, then ``finish`` with every id.

    Every rank of a torch.distributed job creates one (collectively); each writes its own shards. Use
    it as a context manager so an exception flushes the finished items before it propagates.
    """

    def __init__(self, folder: str | os.PathLike, settings: Mapping[str, Any], *, rank: int | None = None,
                 world_size: int | None = None, shard_bytes: int = 256 << 20, shard_items: int = 4096):
        self.folder = Path(folder)
        self.ranks = Ranks.find(rank, world_size)
        for key in ("kind", "dim", "frame_rate", "dtype"):
            if key not in settings:
                raise ValueError(f"store settings need {key!r}")
        self.settings = jsonable({"format": FORMAT, **settings})
        self.dtype = parse_dtype(self.settings["dtype"])
        self.shard_bytes, self.shard_items = shard_bytes, shard_items
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"{self.folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_marker()
        stored, _ = _complete(self.folder, self.settings)  # also refuses shards made with other settings
        self.done: set[str] = set(stored)
        self.ranks.barrier()  # every rank has checked the folder before rank 0 claims it
        if self.ranks.rank == 0 or not self.ranks.synced:
            atomic_write_text(self.folder / MARKER, json.dumps(self.settings, indent=1) + "\n")
            (self.folder / INDEX).unlink(missing_ok=True)
        self.ranks.barrier()
        for path in self.folder.glob(f".tensors-r{self.ranks.rank:02d}-*.tmp.safetensors"):
            path.unlink(missing_ok=True)
        used = [n for r, n, _ in shard_files(self.folder) if r == self.ranks.rank]
        self.number = max(used, default=-1) + 1
        self.rejects: list[tuple[str, str]] = []
        self._pending: dict[str, torch.Tensor] = {}
        self._items: list[dict[str, Any]] = []
        self._stats: ChannelStats | None = None
        self._bytes = 0

    def _check_marker(self) -> None:
        path = self.folder / MARKER
        if not path.is_file():  # a new folder, or one whose shards say what made them
            index = self.folder / INDEX
            if index.is_file():
                try:
                    found = json.loads(index.read_text(encoding="utf-8")).get("format")
                except (json.JSONDecodeError, AttributeError):
                    found = None
                if found != FORMAT:
                    raise DataError(f"{self.folder}: holds {found or 'an unknown format'}, not a {FORMAT} store; "
                                    "use another folder or delete this one")
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON ({err.msg}); delete the folder to start over") from None
        difference = settings_mismatch(old, self.settings) if isinstance(old, dict) else "not a JSON object"
        if difference:
            raise DataError(f"{self.folder}: already holds tensors made with {difference}; "
                            "use another folder or delete this one")

    def mine(self, ids: Sequence[str]) -> list[str]:
        """This rank's share of ``ids`` (``rank::world_size``)."""
        return list(ids)[self.ranks.rank::self.ranks.world_size]

    def add(self, item_id: str, tensor: torch.Tensor, info: Mapping[str, Any] | None = None) -> None:
        """Queue ``tensor [D, T]`` of ``item_id`` with extra index fields ``info``."""
        if tensor.dim() != 2 or tensor.shape[0] != self.settings["dim"]:
            raise ValueError(f"store {self.folder} takes [{self.settings['dim']}, T] tensors, "
                             f"got {tuple(tensor.shape)} for {item_id!r}")
        if item_id in self._pending:
            raise DataError(f"duplicate id {item_id!r}")
        stored = tensor.detach().to("cpu", self.dtype).contiguous()
        self._pending[item_id] = stored
        self._items.append({"id": item_id, "frames": int(stored.shape[1]), **jsonable(info or {})})
        part = ChannelStats.of(stored)
        self._stats = part if self._stats is None else self._stats.merge(part)
        self._bytes += stored.numel() * stored.element_size()
        if self._bytes >= self.shard_bytes or len(self._pending) >= self.shard_items:
            self.flush()

    def reject(self, item_id: str, reason: str) -> None:
        self.rejects.append((item_id, one_line(reason)))

    def flush(self) -> None:
        """Write the queued items as one shard (atomically)."""
        if not self._pending:
            return
        name = f"tensors-r{self.ranks.rank:02d}-{self.number:05d}.safetensors"
        metadata = {"format": FORMAT, "settings": json.dumps(self.settings, sort_keys=True),
                    "items": json.dumps(self._items, ensure_ascii=False),
                    "stats": json.dumps(self._stats.to_json() if self._stats is not None else None)}
        write_tensors(self.folder / name, self._pending, metadata)
        self._pending, self._items, self._stats, self._bytes = {}, [], None, 0
        self.number += 1

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()

    def finish(self, ids: Sequence[str]) -> Path:
        """Flush, record this rank's rejects, and write the index once every id of ``ids`` is stored or
        rejected (rank 0 after a barrier; without a process group, the last rank to finish)."""
        self.flush()
        atomic_write_text(self.folder / f"rejects-r{self.ranks.rank:02d}.tsv",
                          "".join(f"{i}\t{r}\n" for i, r in self.rejects))
        self.ranks.barrier()
        error: DataError | None = None
        if self.ranks.rank == 0 or not self.ranks.synced:
            try:
                self._finalize(list(ids), cleanup=self.ranks.synced or self.ranks.world_size == 1)
            except DataError as err:
                error = err
        self.ranks.barrier()
        if error is not None:
            raise error
        if self.ranks.synced and not (self.folder / INDEX).is_file():
            raise DataError(f"{self.folder}: some items were neither stored nor rejected; rerun to finish")
        return self.folder / INDEX

    def _finalize(self, ids: list[str], cleanup: bool) -> bool:
        """Write the index (and rejects.tsv) if every id is stored or rejected; False when some rank is
        still running. DataError when every item failed."""
        stored, stats = _complete(self.folder, self.settings)
        reasons: dict[str, str] = {}
        for rank in range(self.ranks.world_size):
            path = self.folder / f"rejects-r{rank:02d}.tsv"
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    item_id, _, reason = line.partition("\t")
                    reasons.setdefault(item_id, reason)
        missing = [i for i in ids if i not in stored]
        if any(i not in reasons for i in missing):
            return False
        if missing:
            atomic_write_text(self.folder / REJECTS, "".join(f"{i}\t{reasons[i]}\n" for i in missing))
        else:
            (self.folder / REJECTS).unlink(missing_ok=True)
        if ids and len(missing) == len(ids):
            raise DataError(f"every item failed; first: {missing[0]}: {reasons[missing[0]]} "
                            f"(see {self.folder / REJECTS})")
        # this run's items in its order, then those an earlier run stored and this one does not list
        listed = set(ids)
        order = [i for i in ids if i in stored] + [i for i in stored if i not in listed]
        items = [{"id": i, "shard": stored[i].shard, **stored[i].item} for i in order]
        index = {**self.settings, "stats": summary(merge_stats(stats)), "items": items}
        atomic_write_text(self.folder / INDEX, json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        if cleanup:
            for path in self.folder.glob("rejects-r*.tsv"):
                path.unlink(missing_ok=True)
        return True


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


class TensorStore:
    """A finished store: ``get(id) -> [D, T]``, ``crop(id, start, frames)``, iteration, statistics.

    Shards open lazily (memory-mapped by safetensors) and at most ``max_open`` stay open. Handles are
    never pickled and are reopened in a forked process, so a store can be handed to DataLoader workers.
    """

    def __init__(self, folder: str | os.PathLike, *, max_open: int = 64):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            hint = " (unfinished: rerun the command that writes it)" if (self.folder / MARKER).is_file() else ""
            raise DataError(f"{self.folder}: not a tensor store ({INDEX} is missing){hint}")
        try:
            self.index = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON ({err.msg})") from None
        found = self.index.get("format") if isinstance(self.index, dict) else None
        if found not in (FORMAT, LEGACY_LATENTS, LEGACY_FEATURES):
            raise DataError(f"{path}: unknown store format {found!r} (expected {FORMAT}); regenerate it with "
                            "`semlat encode` (latents) or `semlat features extract` (teacher features)")
        self.time_major = found == LEGACY_FEATURES
        self._items = {item["id"]: item for item in self.index["items"]}
        self.max_open = max_open
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._pid = os.getpid()

    # -- metadata --------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"latents"`` or ``"features"``."""
        return self.index.get("kind") or ("features" if self.time_major else "latents")

    @property
    def dim(self) -> int:
        """Channels D."""
        return int(self.index["dim"] if "dim" in self.index else self.index["latent_dim"])

    @property
    def frame_rate(self) -> float:
        return float(self.index["frame_rate"])

    @property
    def space_info(self) -> dict[str, Any]:
        """The latent space's metadata the store recorded (``latent_store_settings``: ``latent_dim``,
        ``frame_rate`` and the rates where known): what models trained on it record in their folders."""
        info = {key: self.index[key] for key in ("input_rate", "output_rate", "sample_rate") if key in self.index}
        return {**info, "latent_dim": self.dim, "frame_rate": self.frame_rate}

    @property
    def items(self) -> list[dict[str, Any]]:
        """Index entries ``{"id", "shard", "frames", ...}`` in the order they were listed."""
        return self.index["items"]

    @property
    def stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean [D], std [D])`` float32 over every stored frame, or ``None`` (older folders)."""
        stats = self.index.get("stats")
        if not stats:
            return None
        return torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def item(self, item_id: str) -> dict[str, Any]:
        try:
            return self._items[item_id]
        except KeyError:
            raise KeyError(f"{item_id!r} is not in store {self.folder}") from None

    def frames(self, item_id: str) -> int:
        return int(self.item(item_id)["frames"])

    def seconds(self, item_id: str) -> float:
        return self.frames(item_id) / self.frame_rate

    # -- tensors ---------------------------------------------------------------------------------
    def _handle(self, shard: str) -> Any:
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            try:
                handle = safe_open(str(self.folder / shard), framework="pt")
            except (SafetensorError, OSError) as err:
                raise DataError(f"{self.folder / shard}: unreadable shard ({err})") from None
            self._handles[shard] = handle
            while len(self._handles) > self.max_open:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(shard)
        return handle

    def get(self, item_id: str) -> torch.Tensor:
        """All frames of ``item_id``: ``[D, T]`` in the stored dtype."""
        tensor = self._handle(self.item(item_id)["shard"]).get_tensor(item_id)
        return tensor.T.contiguous() if self.time_major else tensor

    def crop(self, item_id: str, start: int, frames: int) -> tuple[torch.Tensor, int]:
        """Frames ``[start, start + frames)`` of ``item_id`` as ``(float32 [D, frames], valid)``: frames
        past the end are zeros and ``valid`` counts the others (``0 <= valid <= frames``)."""
        if start < 0 or frames <= 0:
            raise ValueError(f"crop needs start >= 0 and frames > 0, got {start}, {frames}")
        item = self.item(item_id)
        valid = max(0, min(frames, int(item["frames"]) - start))
        out = torch.zeros(self.dim, frames)
        if valid:
            piece = self._handle(item["shard"]).get_slice(item_id)
            out[:, :valid] = (piece[start:start + valid].T if self.time_major
                              else piece[:, start:start + valid]).float()
        return out, valid

    def __iter__(self) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        """``(item, tensor [D, T])`` for every item, shard by shard."""
        by_shard: dict[str, list[dict[str, Any]]] = {}
        for item in self.items:
            by_shard.setdefault(item["shard"], []).append(item)
        for shard, items in by_shard.items():
            try:
                with safe_open(str(self.folder / shard), framework="pt") as f:
                    for item in items:
                        tensor = f.get_tensor(item["id"])
                        yield item, (tensor.T.contiguous() if self.time_major else tensor)
            except (SafetensorError, OSError) as err:
                raise DataError(f"{self.folder / shard}: unreadable shard ({err})") from None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.folder)!r}, {len(self)} items, {self.kind} {self.dim} x " \
               f"{self.frame_rate:g} Hz)"
