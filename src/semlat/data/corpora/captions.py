"""Audio-caption and sound-event corpora (SemanticVocoder's text-to-audio data), in their released layouts.

Lhotse has no recipe for these, so they are read here:

* **AudioCaps** — ``train.csv``, ``val.csv``, ``test.csv`` (``audiocap_id,youtube_id,start_time,caption``) in
  ROOT or ``ROOT/dataset``; the clips anywhere under ROOT, named by any of the usual downloaders' rules
  (``<youtube_id>``, ``Y<youtube_id>``, ``<youtube_id>_<start>``, ``<audiocap_id>``). A clip with several
  captions (val and test have five) is one row: ``caption`` is the first, ``captions`` all of them.
* **Clotho** (v2) — ``clotho_captions_{development,validation,evaluation}.csv`` (``file_name,caption_1..5``)
  and the clips in ``development/``, ``validation/``, ``evaluation/``.
* **WavCaps** — ``json_files/<source>/*.json`` (``{"data": [{"id": ..., "caption": ...}, ...]}``, one per
  source: AudioSet_SL, BBC_Sound_Effects, FreeSound, SoundBible) and the clips, named by their id, under
  ROOT; no splits of its own.
* **ESC-50** — ``meta/esc50.csv`` (``filename,fold,target,category,esc10,src_file,take``) and ``audio/``;
  ``label`` is the category; fold ``test_fold`` (default 5) is the test split.
* **AudioSet-style label CSVs** — ``class_labels_indices.csv`` (``index,mid,display_name``) and any
  ``*_segments.csv`` (``YTID, start_seconds, end_seconds, "positive_labels"``, ``#`` comment lines); ``label``
  is the display names joined by ``"; "``, ``labels`` the ids; ``eval_segments.csv`` is the test split.

A listed clip that is not on disk is a reject ("audio file missing", as most YouTube-sourced corpora have
some), an audio file that no caption or label names is one too ("no caption").
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from semlat.data.corpora.base import Corpus, Gathered, audio_index, key_of, require, take_options
from semlat.data.prepare import AUDIO_EXTENSIONS, Candidate
from semlat.errors import DataError

AUDIOCAPS_SPLITS = {"train": "train", "val": "valid", "test": "test"}
CLOTHO_SPLITS = {"development": "train", "validation": "valid", "evaluation": "test"}
AUDIOCAPS_COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


def _read_csv(path: Path, needed: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV with a header; a missing column is a one-line error naming the file."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    header = set(rows[0].keys()) if rows else set()
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}: not the expected CSV: column(s) {', '.join(missing)} missing")
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]


def _find(index: dict[str, Path], names: Iterable[str]) -> Path | None:
    for name in names:
        if name in index:
            return index[name]
    return None


def _start_names(youtube_id: str, start: str) -> list[str]:
    names = [youtube_id, f"Y{youtube_id}"]
    try:
        seconds = float(start)
    except ValueError:
        return names
    forms = {start, f"{seconds:g}", str(int(seconds)), f"{seconds:.3f}", f"{int(seconds * 1000)}"}
    for form in sorted(forms):
        names += [f"{youtube_id}_{form}", f"Y{youtube_id}_{form}"]
    return names


def _unclaimed(gathered: Gathered, files: Iterable[Path], reason: str) -> None:
    used = {c.source for c in gathered.candidates}
    for path in files:
        if str(path.resolve()) not in used:
            gathered.rejects.append((str(path.resolve()), reason))


def _candidate(root: Path, name: str, path: Path, meta: dict) -> Candidate:
    return Candidate(source=str(path.resolve()), key=key_of(root, name, path), text=None, speaker=None,
                     meta=tuple(sorted(meta.items())), target=None)


def gather_audiocaps(root: Path, options: dict) -> Gathered:
    take_options("audiocaps", options, {})
    folder = root / "dataset" if not (root / "train.csv").is_file() and (root / "dataset").is_dir() else root
    csvs = {split: folder / f"{split}.csv" for split in AUDIOCAPS_SPLITS if (folder / f"{split}.csv").is_file()}
    if not csvs:
        raise DataError(f"{root}: not an AudioCaps root: none of train.csv, val.csv, test.csv is there "
                        f"(or in {root / 'dataset'})")
    index = audio_index(root, AUDIO_EXTENSIONS)
    gathered = Gathered()
    clips: dict[Path, dict] = {}
    for split, path in csvs.items():
        for row in _read_csv(path, AUDIOCAPS_COLUMNS):
            clip = _find(index, _start_names(row["youtube_id"], row["start_time"]) + [row["audiocap_id"]])
            if clip is None:
                gathered.rejects.append((f"{path}: {row['youtube_id']} at {row['start_time']} s "
                                         f"(audiocap_id {row['audiocap_id']})", "audio file missing"))
                continue
            entry = clips.setdefault(clip, {"split": AUDIOCAPS_SPLITS[split], "captions": [],
                                            "youtube_id": row["youtube_id"], "start_time": row["start_time"]})
            if entry["split"] != AUDIOCAPS_SPLITS[split]:
                raise DataError(f"{clip}: named by both {entry['split']} and {split}.csv")
            entry["captions"].append(row["caption"])
    for clip, entry in clips.items():
        captions = [c for c in entry.pop("captions") if c]
        if not captions:
            gathered.rejects.append((str(clip.resolve()), "empty caption"))
            continue
        gathered.candidates.append(_candidate(root, "audiocaps", clip,
                                              {**entry, "caption": captions[0], "captions": captions}))
    _unclaimed(gathered, index.values(), "no caption")
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


def gather_clotho(root: Path, options: dict) -> Gathered:
    take_options("clotho", options, {})
    csvs = {s: root / f"clotho_captions_{s}.csv" for s in CLOTHO_SPLITS if (root / f"clotho_captions_{s}.csv").is_file()}
    if not csvs:
        raise DataError(f"{root}: not a Clotho root: no clotho_captions_<development|validation|evaluation>.csv")
    gathered = Gathered()
    for split, path in csvs.items():
        columns = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{root}: not a Clotho root: {split}/ (the audio of {path.name}) is missing")
        for row in _read_csv(path, columns):
            clip = folder / row["file_name"]
            if not clip.is_file():
                gathered.rejects.append((str(clip.resolve()), "listed with captions but the audio file is missing"))
                continue
            captions = [row[f"caption_{i}"] for i in range(1, 6) if row[f"caption_{i}"]]
            if not captions:
                gathered.rejects.append((str(clip.resolve()), "empty caption"))
                continue
            gathered.candidates.append(_candidate(root, "clotho", clip, {
                "caption": captions[0], "captions": captions, "split": CLOTHO_SPLITS[split]}))
        _unclaimed(gathered, sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS),
                   "no caption")
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


def gather_wavcaps(root: Path, options: dict) -> Gathered:
    take_options("wavcaps", options, {})
    require(root, "WavCaps", "json_files")
    jsons = sorted((root / "json_files").rglob("*.json"))
    if not jsons:
        raise DataError(f"{root / 'json_files'}: no <source>/*.json caption files (not a WavCaps root)")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    gathered = Gathered()
    seen: set[Path] = set()
    for path in jsons:
        source = path.parent.name if path.parent != root / "json_files" else path.stem
        try:
            items = json.loads(path.read_text(encoding="utf-8"))["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(f"{path}: expected a JSON object with a 'data' list ({err})") from err
        for number, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item or "caption" not in item:
                raise DataError(f"{path}: data[{number}] needs 'id' and 'caption'")
            stem = Path(str(item["id"])).stem
            matches = by_stem.get(stem, [])
            clip = next((m for m in matches if source in m.parts), matches[0] if matches else None)
            if clip is None:
                gathered.rejects.append((f"{path}: id {item['id']}", "audio file missing"))
                continue
            if clip in seen:
                continue
            seen.add(clip)
            caption = " ".join(str(item["caption"]).split())
            if not caption:
                gathered.rejects.append((str(clip.resolve()), "empty caption"))
                continue
            gathered.candidates.append(_candidate(root, "wavcaps", clip, {"caption": caption, "source": source}))
    _unclaimed(gathered, [p for paths in by_stem.values() for p in paths], "no caption")
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


def gather_esc50(root: Path, options: dict) -> Gathered:
    opts = take_options("esc50", options, {"test_fold": 5})
    require(root, "ESC-50", "meta/esc50.csv", "audio")
    test_fold = int(opts["test_fold"])
    if not 1 <= test_fold <= 5:
        raise DataError(f"esc50 test_fold must be 1..5, got {test_fold}")
    gathered = Gathered()
    for row in _read_csv(root / "meta/esc50.csv", ("filename", "fold", "target", "category", "src_file")):
        clip = root / "audio" / row["filename"]
        if not clip.is_file():
            gathered.rejects.append((str(clip.resolve()), "listed in meta/esc50.csv but the audio file is missing"))
            continue
        meta = {"label": row["category"], "fold": int(row["fold"]), "target": int(row["target"]),
                "split_key": f"esc50/{row['src_file']}"}
        if meta["fold"] == test_fold:
            meta["split"] = "test"
        gathered.candidates.append(_candidate(root, "esc50", clip, meta))
    _unclaimed(gathered, sorted((root / "audio").glob("*.wav")), "no label (not in meta/esc50.csv)")
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


def _segments(path: Path) -> list[tuple[str, str, str, list[str]]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = next(csv.reader([line], skipinitialspace=True))
        if len(parts) < 4:
            raise DataError(f"{path}:{number}: expected 'YTID, start_seconds, end_seconds, \"labels\"'")
        rows.append((parts[0], parts[1], parts[2], [m.strip() for m in parts[3].split(",") if m.strip()]))
    return rows


def gather_audioset(root: Path, options: dict) -> Gathered:
    take_options("audioset", options, {})
    require(root, "AudioSet", "class_labels_indices.csv")
    names = {row["mid"]: row["display_name"]
             for row in _read_csv(root / "class_labels_indices.csv", ("index", "mid", "display_name"))}
    segment_files = sorted(root.glob("*_segments.csv"))
    if not segment_files:
        raise DataError(f"{root}: not an AudioSet root: no *_segments.csv (e.g. balanced_train_segments.csv)")
    index = audio_index(root, AUDIO_EXTENSIONS)
    gathered = Gathered()
    seen: set[Path] = set()
    for path in segment_files:
        split = "test" if path.name.startswith("eval") else "train"
        for ytid, start, end, mids in _segments(path):
            unknown = [m for m in mids if m not in names]
            if unknown:
                raise DataError(f"{path}: {ytid}: label id(s) {', '.join(unknown)} not in class_labels_indices.csv")
            clip = _find(index, _start_names(ytid, start))
            if clip is None:
                gathered.rejects.append((f"{path}: {ytid} at {start} s", "audio file missing"))
                continue
            if clip in seen:
                continue
            seen.add(clip)
            gathered.candidates.append(_candidate(root, "audioset", clip, {
                "label": "; ".join(names[m] for m in mids), "labels": mids, "split": split,
                "youtube_id": ytid, "start_time": start}))
    _unclaimed(gathered, index.values(), "no label")
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


CAPTION_CORPORA = (
    Corpus("audiocaps", "captions", "train.csv, val.csv, test.csv (+ the clips anywhere under ROOT)",
           gather_audiocaps),
    Corpus("clotho", "captions", "clotho_captions_<split>.csv + <split>/ audio", gather_clotho),
    Corpus("wavcaps", "captions", "json_files/<source>/*.json + the clips under ROOT", gather_wavcaps),
    Corpus("esc50", "events", "meta/esc50.csv + audio/", gather_esc50),
    Corpus("audioset", "events", "class_labels_indices.csv + *_segments.csv + the clips under ROOT",
           gather_audioset),
)
