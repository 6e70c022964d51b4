"""The JSON Lines manifest: one utterance per line.

Fields (DESIGN.md): ``audio`` (path relative to the manifest's folder, or absolute), ``duration``
(seconds), ``sample_rate`` (Hz) and, where known, ``text``, ``phonemes``, ``speaker``, ``caption``,
``label`` and ``split``. Any other key is kept in :attr:`Utterance.extra` and written back, so
manifests extended by users survive a round trip.

Writing is deterministic: lines keep their order, known keys come first in a fixed order, extra
keys follow sorted, durations are rounded to microseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, overload

from semlat.errors import DataError
from semlat.utils.files import atomic_write_text

OPTIONAL_FIELDS = ("text", "phonemes", "speaker", "caption", "label", "split")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    """One manifest line. ``audio`` is stored as written (relative paths use ``/``)."""

    audio: str
    duration: float
    sample_rate: int
    text: str | None = None
    phonemes: str | None = None
    speaker: str | None = None
    caption: str | None = None
    label: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this line, keys in canonical order."""
        out: dict[str, Any] = {"audio": self.audio, "duration": round(self.duration, 6),
                               "sample_rate": self.sample_rate}
        for key in OPTIONAL_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for key in sorted(self.extra):
            out[key] = self.extra[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> Utterance:
        """Validate and build; ``where`` (e.g. ``"m.jsonl:12"``) prefixes error messages."""
        if not isinstance(data, dict):
            raise DataError(f"{where}: a line must be a JSON object")
        for key in ("audio", "duration", "sample_rate"):
            if key not in data:
                raise DataError(f"{where}: missing required key {key!r}")
        audio, duration, sr = data["audio"], data["duration"], data["sample_rate"]
        if not isinstance(audio, str) or not audio:
            raise DataError(f"{where}: 'audio' must be a non-empty path string")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not duration > 0:
            raise DataError(f"{where}: 'duration' must be a positive number of seconds, got {duration!r}")
        if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
            raise DataError(f"{where}: 'sample_rate' must be a positive integer, got {sr!r}")
        known = {f.name for f in fields(cls)} - {"extra"}
        optional = {}
        for key in OPTIONAL_FIELDS:
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
            optional[key] = value
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(audio=audio, duration=float(duration), sample_rate=sr, extra=extra, **optional)


class Manifest(Sequence[Utterance]):
    """An ordered list of :class:`Utterance` plus the folder their relative paths start from."""

    def __init__(self, utterances: Iterable[Utterance], root: str | os.PathLike = "."):
        self.utterances = list(utterances)
        self.root = Path(root)

    @overload
    def __getitem__(self, index: int) -> Utterance: ...
    @overload
    def __getitem__(self, index: slice) -> Manifest: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Manifest(self.utterances[index], self.root)
        return self.utterances[index]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} utterances, {self.total_duration / 3600:.2f} h, root={str(self.root)!r})"

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    @property
    def total_duration(self) -> float:
        """Seconds of audio in all utterances."""
        return sum(self.durations)

    def audio_path(self, index: int) -> Path:
        """Absolute-or-root-relative path of utterance ``index``'s audio file."""
        return self.root / self.utterances[index].audio

    def select(self, indices: Iterable[int]) -> Manifest:
        """A manifest of the given utterances, in the given order."""
        return Manifest([self.utterances[i] for i in indices], self.root)

    def split(self, *names: str) -> Manifest:
        """Only the utterances whose ``split`` is one of ``names``."""
        unknown = set(names) - set(SPLITS)
        if unknown:
            raise DataError(f"unknown split {min(unknown)!r}; splits are {', '.join(SPLITS)}")
        return Manifest([u for u in self.utterances if u.split in names], self.root)

    def speakers(self) -> list[str]:
        """Sorted distinct speaker ids."""
        return sorted({u.speaker for u in self.utterances if u.speaker is not None})

    @classmethod
    def read(cls, path: str | os.PathLike, split: str | None = None) -> Manifest:
        """Read a ``.jsonl`` manifest; ``split`` keeps only that split. Errors name file and line."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such manifest")
        utterances = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{where}: invalid JSON ({err.msg})") from None
                utterances.append(Utterance.from_dict(data, where))
        if not utterances:
            raise DataError(f"{path}: manifest has no utterances")
        manifest = cls(utterances, path.parent)
        return manifest.split(split) if split else manifest

    @classmethod
    def read_split(cls, path: str | os.PathLike, split: str | None) -> Manifest:
        """:meth:`read` with ``split``, where an empty result is a DataError naming the file and the split."""
        manifest = cls.read(path, split=split)
        if len(manifest) == 0:
            raise DataError(f"{path}: no utterances in split {split!r}")
        return manifest

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path``; relative audio paths are rewritten relative to its folder."""
        path = Path(path)
        target = path.parent.resolve()
        source = self.root.resolve()
        lines = []
        for u in self.utterances:
            audio = u.audio
            if not Path(audio).is_absolute() and source != target:
                audio = Path(os.path.relpath(source / audio, target)).as_posix()
                u = replace(u, audio=audio)
            lines.append(json.dumps(u.to_dict(), ensure_ascii=False))
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        return path


def relative_audio_path(audio: str | os.PathLike, manifest_dir: str | os.PathLike) -> str:
    """``audio`` relative to ``manifest_dir``, with ``/`` separators."""
    return Path(os.path.relpath(Path(audio).resolve(), Path(manifest_dir).resolve())).as_posix()
