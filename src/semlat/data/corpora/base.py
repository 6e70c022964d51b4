"""The pieces every corpus preparer shares: what it returns, its option and layout checks, file keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from semlat.data.prepare import Candidate
from semlat.errors import DataError


@dataclass
class Gathered:
    """What a preparer found: files to probe and ``(path, reason)`` pairs for files it left out."""

    candidates: list[Candidate] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Corpus:
    """One corpus: its kind (``speech``, ``captions`` or ``events``), a one-line layout and its preparer."""

    name: str
    kind: str
    layout: str
    gather: Callable[..., Gathered]
    via: str = "semlat"
    #: its audio lies inside archives: ``gather(root, options, extract_to)`` unpacks what it keeps into
    #: ``extract_to`` (beside the manifest), which :func:`~semlat.data.corpora.prepare_corpus` removes on failure
    archived: bool = False


def take_options(name: str, options: dict, allowed: dict) -> dict:
    """``allowed`` (name -> default) filled from ``options``; an unknown option is a one-line error."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise DataError(f"corpus {name!r} takes no option {', '.join(unknown)} (its options: {takes})")
    return {**allowed, **options}


def require(root: Path, name: str, *paths: str) -> None:
    """A one-line error naming the first of ``paths`` (relative to ``root``) that does not exist."""
    for rel in paths:
        if not (root / rel).exists():
            raise DataError(f"{root}: not a {name} root: {rel} is missing")


def audio_index(root: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """Every audio file under ``root`` by its stem (the first in sorted order wins a clash)."""
    exts = {e.lower() for e in extensions}
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in exts and path.is_file():
            index.setdefault(path.stem, path)
    return index


def key_of(root: Path, name: str, path: Path) -> str:
    """A file's stable key: ``<corpus>/<path under the root>``."""
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = path.as_posix().lstrip("/")
    return f"{name}/{rel}"


def part_split(part: str | None) -> str | None:
    """A corpus part's split by its name: ``dev*`` is valid, ``test*`` test, any other train; None: none."""
    if not part:
        return None
    if part.startswith("dev"):
        return "valid"
    if part.startswith("test"):
        return "test"
    return "train"
