"""What the app can offer: model folders, manifests and reports found under the folders it serves.

:func:`scan` walks each root (symbolic links are not followed out of it) and sorts what it finds:

- **model folders** (``config.json`` + ``model.safetensors``), by ``model_type``: latent spaces
  (every type whose class encodes and decodes), TTS models, text-to-audio models and CTC judges; a
  training run's ``checkpoints/step-*`` folders count once, as the newest step;
- **manifests**: ``*.jsonl`` files whose first line has ``audio``, ``duration`` and ``sample_rate``;
- **alignments**: ``*.jsonl`` files whose first line has ``id`` and ``segments`` (``eval latents --alignments``);
- **reports**: folders with a ``report.md`` (``semlat eval``'s reports, the demo's report).

Names shown to users are paths relative to their root (prefixed with the root's name when the app
serves several). Nothing is loaded here: scanning reads only small JSON headers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from semlat.checkpoints import CONFIG_NAME, WEIGHTS_NAME, read_model_meta
from semlat.errors import CheckpointError
from semlat.models import MODEL_TYPES
from semlat.utils.registry import resolve

#: model_type -> catalog kind, for the types the app uses beyond latent spaces
KINDS = {"tts": "tts", "ar_tts": "tts", "tta": "tta", "ctc_judge": "judge"}
#: folders never descended into (logs, caches, audio outputs of evaluations)
SKIP_DIRS = {"tensorboard", "__pycache__", ".git", "node_modules"}
#: at most this many entries of each kind (a guard against serving a whole disk)
MAX_ENTRIES = 500
MAX_DEPTH = 8


@dataclass(frozen=True)
class Entry:
    """One thing the app offers: ``name`` (shown), ``path`` (resolved), ``kind`` and ``detail``: the
    ``model_type`` of a model folder, the ``kind`` of a report (``reconstruction``, ``latents``, ``tts``, ...)."""

    name: str
    path: Path
    kind: str
    detail: str | None = None


@dataclass
class Catalog:
    """Everything found under ``roots``, by kind; ``entries(kind)`` lists one kind in name order."""

    roots: list[Path]
    items: dict[str, list[Entry]] = field(default_factory=dict)

    def entries(self, kind: str) -> list[Entry]:
        return self.items.get(kind, [])

    def names(self, kind: str) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def find(self, kind: str, name: str) -> Entry | None:
        """The entry of ``kind`` called ``name`` (exactly as listed), or None."""
        return next((e for e in self.entries(kind) if e.name == name), None)

    def summary(self) -> str:
        """``3 latent spaces, 1 TTS model, ...``: a one-line count."""
        labels = (("space", "latent space"), ("tts", "TTS model"), ("tta", "text-to-audio model"),
                  ("judge", "CTC judge"), ("manifest", "manifest"), ("report", "report"))
        parts = []
        for kind, label in labels:
            n = len(self.entries(kind))
            parts.append(f"{n} {label}{'' if n == 1 else 's'}")
        return ", ".join(parts)


def _is_space_type(model_type: str) -> bool:
    target = MODEL_TYPES.get(model_type)
    if target is None:
        return False
    cls = resolve(target)
    return callable(getattr(cls, "encode", None)) and callable(getattr(cls, "decode", None))


def _model_kind(folder: Path) -> tuple[str, str] | None:
    if not (folder / CONFIG_NAME).is_file():
        return None
    try:
        meta = read_model_meta(folder)
    except CheckpointError:
        return None
    model_type = meta.get("model_type") if isinstance(meta, dict) else None
    if not isinstance(model_type, str):
        return None
    if model_type in KINDS:
        return KINDS[model_type], model_type
    return ("space", model_type) if _is_space_type(model_type) else None


def _jsonl_kind(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(first, dict):
        return None
    if {"audio", "duration", "sample_rate"} <= first.keys():
        return "manifest"
    if {"id", "segments"} <= first.keys():
        return "alignments"
    return None


def _report_kind(folder: Path) -> str | None:
    try:
        with (folder / "report.json").open(encoding="utf-8") as f:
            head = f.read(4096)
    except OSError:
        return None
    match = re.search(r'"kind":\s*"([a-z_]+)"', head)  # the key comes first in semlat's reports
    return match.group(1) if match else None


def _newest_steps(names: Iterable[str]) -> set[str]:
    """In a ``checkpoints`` folder, the step folders that are not the newest (skipped)."""
    steps = sorted(n for n in names if n.startswith("step-"))
    return set(steps[:-1])


def _label(root: Path, path: Path, prefix: str) -> str:
    relative = path.relative_to(root).as_posix()
    if relative == ".":
        relative = root.name
    if "/checkpoints/step-" in f"/{relative}":
        run, _, step = relative.rpartition("/checkpoints/")
        relative = f"{run or root.name} ({step})"
    return f"{prefix}{relative}"


def scan(roots: Sequence[str | os.PathLike]) -> Catalog:
    """Walk ``roots`` (folders) and sort what is found (module docstring). Missing roots are a ValueError."""
    resolved = []
    for root in roots:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{root}: not a folder")
        resolved.append(path)
    catalog = Catalog(resolved)
    prefixed = len(resolved) > 1
    found: dict[str, list[Entry]] = {}

    def add(kind: str, entry: Entry) -> None:
        bucket = found.setdefault(kind, [])
        if len(bucket) < MAX_ENTRIES and all(e.path != entry.path for e in bucket):
            bucket.append(entry)

    for root in resolved:
        prefix = f"{root.name}/" if prefixed else ""
        for current, dirs, files in os.walk(root):
            here = Path(current)
            depth = len(here.relative_to(root).parts)
            if CONFIG_NAME in files and WEIGHTS_NAME in files:
                kind = _model_kind(here)
                if kind is not None:
                    add(kind[0], Entry(_label(root, here, prefix), here, kind[0], kind[1]))
                dirs[:] = []  # nothing below a model folder
                continue
            if "report.md" in files:
                add("report", Entry(_label(root, here, prefix), here, "report", _report_kind(here)))
            for name in sorted(files):
                if name.endswith(".jsonl"):
                    kind = _jsonl_kind(here / name)
                    if kind is not None:
                        add(kind, Entry(_label(root, here / name, prefix), here / name, kind))
            skipped = _newest_steps(dirs) if here.name == "checkpoints" else set()
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and d not in skipped and not d.startswith(".")
                             and depth < MAX_DEPTH and not (here / d).is_symlink())
    catalog.items = {kind: sorted(entries, key=lambda e: e.name) for kind, entries in found.items()}
    return catalog
