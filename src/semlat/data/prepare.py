"""``semlat data prepare``: build a manifest from folders of audio or a CSV/TSV list.

Steps: find audio files (folders are scanned recursively; a list file names them), attach
transcripts from sidecar files, probe each file's header in parallel (no full decode unless
``verify`` or resampling asks for it), optionally resample into an output folder, assign
deterministic splits, and write the manifest plus a rejects list. Bad files are rejected with a
reason, never fatal. Reruns produce the same manifest bytes.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from semlat.audio.io import load_audio, probe_audio, save_audio
from semlat.data.manifest import SPLITS, Manifest, Utterance
from semlat.data.splits import assign_split
from semlat.errors import AudioError, DataError
from semlat.utils.files import atomic_write_text
from semlat.utils.parallel import parallel_map

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc",
                    ".au", ".caf", ".w64", ".rf64", ".sph", ".nist")
#: Sidecar transcript names tried for ``x.wav``, first match wins (LibriTTS writes ``.normalized.txt``).
SIDECAR_SUFFIXES = (".normalized.txt", ".txt", ".lab", ".original.txt")
LIST_PATH_COLUMNS = ("audio", "path", "file", "filename", "audio_path", "wav")
LIST_FIELD_ALIASES = {"transcript": "text", "transcription": "text", "sentence": "text",
                      "speaker_id": "speaker", "spk": "speaker"}


@dataclass
class PrepareOptions:
    """Everything ``data prepare`` needs; written as ``<manifest>.config.json`` beside the output."""

    inputs: list[str]
    manifest: str
    resample_to: int | None = None
    audio_out: str | None = None
    audio_format: str = "flac"
    mono: bool = True
    valid_fraction: float = 0.02
    test_fraction: float = 0.02
    split_by: str = "utterance"
    split_salt: str = "semlat"
    speaker_depth: int = 1
    min_duration: float = 0.0
    max_duration: float = 3600.0
    verify: bool = False
    workers: int | None = None
    progress: bool = True
    extensions: list[str] = field(default_factory=lambda: list(AUDIO_EXTENSIONS))


@dataclass(frozen=True)
class Candidate:
    """One audio file to probe: where it is, its stable key (for splits and resampled names) and labels."""

    source: str          # absolute path of the audio file
    key: str             # stable id: "<input name>/<path within input>"
    text: str | None
    speaker: str | None
    meta: tuple          # (name, value) pairs from a list file
    target: str | None   # absolute output path when resampling


@dataclass(frozen=True)
class _Probed:
    candidate: Candidate
    audio: str | None = None
    duration: float = 0.0
    sample_rate: int = 0
    reject: str | None = None


def _read_sidecar(audio: Path, folder_transcripts: dict[str, str]) -> str | None:
    base = audio.with_suffix("")
    for suffix in SIDECAR_SUFFIXES:
        side = base.with_name(base.name + suffix)
        if side.is_file():
            return " ".join(side.read_text(encoding="utf-8", errors="replace").split()) or None
    return folder_transcripts.get(audio.stem)


def _folder_transcripts(folder: Path) -> dict[str, str]:
    """LibriSpeech-style ``*.trans.txt`` files: lines of ``<utterance id> <text>``."""
    table: dict[str, str] = {}
    for trans in sorted(folder.glob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            uid, _, text = line.strip().partition(" ")
            if uid and text:
                table[uid] = " ".join(text.split())
    return table


def _speaker_of(rel: Path, depth: int) -> str | None:
    parents = rel.parent.parts
    if depth <= 0 or len(parents) < depth:
        return None
    return parents[-depth]


def _scan_folder(root: Path, opts: PrepareOptions) -> list[Candidate]:
    exts = {e.lower() for e in opts.extensions}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    transcripts: dict[Path, dict[str, str]] = {}
    out = []
    for path in files:
        if path.parent not in transcripts:
            transcripts[path.parent] = _folder_transcripts(path.parent)
        rel = path.relative_to(root)
        out.append(Candidate(
            source=str(path.resolve()), key=f"{root.name}/{rel.as_posix()}",
            text=_read_sidecar(path, transcripts[path.parent]),
            speaker=_speaker_of(rel, opts.speaker_depth), meta=(), target=None,
        ))
    return out


def _resolve_listed(base: Path, name: str, exts: Sequence[str]) -> Path:
    path = Path(name) if Path(name).is_absolute() else base / name
    if path.suffix or path.exists():
        return path
    for ext in exts:  # list files such as LJSpeech's give ids without an extension
        if path.with_suffix(ext).exists():
            return path.with_suffix(ext)
    return path


def _read_list(list_path: Path, opts: PrepareOptions) -> list[Candidate]:
    text = list_path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{list_path}: list file is empty")
    if list_path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",\t|;").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    header = [h.strip().lower() for h in (rows[0].keys() if rows else [])]
    path_col = next((c for c in LIST_PATH_COLUMNS if c in header), None)
    if path_col is None:
        raise DataError(f"{list_path}: needs a header row with a path column "
                        f"(one of: {', '.join(LIST_PATH_COLUMNS)})")
    out = []
    for number, row in enumerate(rows, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        name = row.pop(path_col)
        if not name:
            raise DataError(f"{list_path}:{number}: empty {path_col!r} value")
        fields_: dict[str, str] = {}
        for k, v in row.items():
            if v:
                fields_[LIST_FIELD_ALIASES.get(k, k)] = v
        path = _resolve_listed(list_path.parent, name, opts.extensions)
        text_ = fields_.pop("text", None)
        if text_ is None and path.exists():
            text_ = _read_sidecar(path, {})
        speaker = fields_.pop("speaker", None)
        fields_.pop("duration", None)
        fields_.pop("sample_rate", None)
        out.append(Candidate(
            source=str(path.resolve()), key=f"{list_path.stem}/{name}", text=text_,
            speaker=speaker, meta=tuple(sorted(fields_.items())), target=None,
        ))
    return out


def _probe(c: Candidate, opts_dict: dict) -> _Probed:
    """Runs in a worker: header probe (or decode), optional resample. Never raises AudioError."""
    try:
        info = probe_audio(c.source, max_duration=opts_dict["max_duration"])
        if info.duration < opts_dict["min_duration"]:
            return _Probed(c, reject=f"shorter than {opts_dict['min_duration']} s ({info.duration:.3f} s)")
        if c.target is None:
            if opts_dict["verify"]:
                load_audio(c.source, max_duration=opts_dict["max_duration"], mono=False)
            return _Probed(c, audio=c.source, duration=info.duration, sample_rate=info.sample_rate)
        target = Path(c.target)
        sr = opts_dict["resample_to"]
        if target.is_file() and target.stat().st_mtime >= Path(c.source).stat().st_mtime:
            try:
                done = probe_audio(target, max_duration=None)
                if done.sample_rate == sr:
                    return _Probed(c, audio=str(target), duration=done.duration, sample_rate=sr)
            except AudioError:
                pass  # unreadable leftover: regenerate it below
        audio, _ = load_audio(c.source, sr, mono=opts_dict["mono"], max_duration=opts_dict["max_duration"])
        save_audio(target, audio, sr)
        return _Probed(c, audio=str(target), duration=audio.shape[-1] / sr, sample_rate=sr)
    except AudioError as err:
        return _Probed(c, reject=str(err).removeprefix(f"{c.source}: "))


def _probe_star(args: tuple) -> _Probed:
    return _probe(*args)


def prepare_manifest(opts: PrepareOptions) -> tuple[Manifest, list[tuple[str, str]]]:
    """Build and write the manifest described by ``opts``; returns it and the ``(path, reason)`` rejects."""
    check_options(opts)
    candidates: list[Candidate] = []
    for spec in opts.inputs:
        path = Path(spec)
        if path.is_dir():
            candidates.extend(_scan_folder(path, opts))
        elif path.is_file():
            candidates.extend(_read_list(path, opts))
        else:
            raise DataError(f"{path}: no such folder or list file")
    if not candidates:
        raise DataError(f"no audio files found in {', '.join(opts.inputs)} "
                        f"(extensions: {' '.join(opts.extensions)})")
    return write_candidates(candidates, opts)


def check_options(opts: PrepareOptions) -> None:
    """One-line errors for option values that no input could make valid."""
    if opts.split_by not in ("utterance", "speaker"):
        raise DataError(f"split_by must be 'utterance' or 'speaker', got {opts.split_by!r}")
    if opts.resample_to is not None and opts.resample_to <= 0:
        raise DataError(f"resample rate must be positive, got {opts.resample_to}")
    if Path(opts.manifest).suffix != ".jsonl":
        raise DataError(f"{opts.manifest}: the manifest must be a .jsonl file")


def write_candidates(candidates: Sequence[Candidate], opts: PrepareOptions,
                     rejects: Sequence[tuple[str, str]] = (),
                     extra_config: dict | None = None) -> tuple[Manifest, list[tuple[str, str]]]:
    """Probe (or resample) ``candidates``, assign splits and write the manifest, its rejects and config.

    ``rejects`` are ``(path, reason)`` pairs found before probing (a corpus preparer's files without a
    transcript, say); they are written with the probe's own. A candidate whose ``meta`` holds ``split``
    keeps it; ``caption``, ``label`` and ``phonemes`` in ``meta`` become those manifest fields. Nothing is
    written unless at least one file is kept.
    """
    check_options(opts)
    manifest_path = Path(opts.manifest)
    seen: dict[str, str] = {}
    for c in candidates:
        if c.key in seen:
            raise DataError(f"two inputs give the same file key {c.key!r}; rename one input folder")
        seen[c.key] = c.source
    if opts.resample_to is not None:
        out_root = Path(opts.audio_out) if opts.audio_out else manifest_path.parent / "audio"
        ext = "." + opts.audio_format.lower().lstrip(".")
        candidates = [
            Candidate(c.source, c.key, c.text, c.speaker, c.meta,
                      str((out_root / Path(c.key).with_suffix(ext)).resolve()))
            for c in candidates
        ]
    opts_dict = asdict(opts)
    probed = list(parallel_map(
        _probe_star, [(c, opts_dict) for c in candidates], workers=opts.workers,
        desc="probing" if opts.resample_to is None else f"resampling to {opts.resample_to} Hz",
        unit="file", progress=opts.progress,
    ))
    utterances, rejects = [], list(rejects)
    root = manifest_path.parent.resolve()
    for p in probed:
        c = p.candidate
        if p.reject is not None:
            rejects.append((c.source, p.reject))
            continue
        meta = dict(c.meta)
        split = meta.pop("split", None)
        if split is not None and split not in SPLITS:
            rejects.append((c.source, f"unknown split {split!r} in list file"))
            continue
        if split is None:
            key = c.speaker if opts.split_by == "speaker" and c.speaker else meta.get("split_key", c.key)
            split = assign_split(key, opts.valid_fraction, opts.test_fraction, opts.split_salt)
        meta.pop("split_key", None)
        known = {k: meta.pop(k, None) for k in ("phonemes", "caption", "label")}
        utterances.append(Utterance(
            audio=Path(os.path.relpath(p.audio, root)).as_posix(), duration=p.duration,
            sample_rate=p.sample_rate, text=c.text, speaker=c.speaker, split=split, extra=meta, **known,
        ))
    if not utterances:
        first = f"; first: {rejects[0][0]}: {rejects[0][1]}" if rejects else ""
        raise DataError(f"every one of the {len(rejects)} files was rejected{first}")
    utterances.sort(key=lambda u: u.audio)
    manifest = Manifest(utterances, root)
    manifest.write(manifest_path)
    rejects.sort()
    atomic_write_text(rejects_path(manifest_path), "".join(f"{p}\t{r}\n" for p, r in rejects))
    config = {k: v for k, v in asdict(opts).items() if k not in ("workers", "progress")}
    config.update(extra_config or {})
    atomic_write_text(manifest_path.with_name(manifest_path.stem + ".config.json"),
                      json.dumps(config, indent=2) + "\n")
    return manifest, rejects


def rejects_path(manifest_path: str | os.PathLike) -> Path:
    """Where the rejects list of a manifest is written: ``<name>.rejects.tsv`` beside it."""
    p = Path(manifest_path)
    return p.with_name(p.stem + ".rejects.tsv")
