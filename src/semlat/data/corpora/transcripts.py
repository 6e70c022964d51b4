"""LibriSpeech-PC: LibriSpeech's audio with punctuated, cased transcripts (F5-TTS's test set).

The release is a set of NeMo-style JSON Lines manifests, one per LibriSpeech part (``test-clean.json``,
``dev-clean.json``, ...), each line ``{"audio_filepath": ..., "duration": ..., "text": ...}`` with paths
relative to the LibriSpeech folder. ROOT is that folder (the one holding ``test-clean/``...) with the
manifests in it or in ``ROOT/manifests``. Utterances that the release left out (it drops those whose
punctuation could not be restored) are reported as rejects of the parts it covers, and a manifest line
whose audio file is missing is a reject too.
"""

from __future__ import annotations

import json
from pathlib import Path

from semlat.data.corpora.base import Corpus, Gathered, key_of, part_split, take_options
from semlat.data.corpora.speech import LIBRISPEECH_PARTS
from semlat.data.prepare import Candidate
from semlat.errors import DataError


def _manifests(root: Path) -> list[Path]:
    found = []
    for folder in (root, root / "manifests"):
        found += [folder / f"{part}.json" for part in LIBRISPEECH_PARTS if (folder / f"{part}.json").is_file()]
    return found


def _resolve(root: Path, manifest: Path, name: str) -> Path:
    path = Path(name)
    if path.is_absolute():
        return path
    for base in (root, manifest.parent, root.parent):
        if (base / path).exists():
            return base / path
    return root / path


def gather_librispeech_pc(root: Path, options: dict) -> Gathered:
    """Rows of every LibriSpeech-PC manifest found at ``root``; splits from the part names."""
    take_options("librispeech_pc", options, {})
    manifests = _manifests(root)
    if not manifests:
        raise DataError(f"{root}: not a LibriSpeech-PC root: no <part>.json manifest (e.g. test-clean.json) "
                        f"in it or in {root / 'manifests'}")
    gathered = Gathered()
    named: set[str] = set()
    for manifest in manifests:
        part = manifest.stem
        for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio, text = row["audio_filepath"], row["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataError(f"{manifest}:{number}: expected a JSON object with audio_filepath and text "
                                f"({err})") from err
            path = _resolve(root, manifest, audio).resolve()
            named.add(str(path))
            if not path.is_file():
                gathered.rejects.append((str(path), "listed with a transcript but the audio file is missing"))
                continue
            text = " ".join(str(text).split())
            if not text:
                gathered.rejects.append((str(path), "empty transcript"))
                continue
            meta = (("part", part), ("split", part_split(part)))
            gathered.candidates.append(Candidate(
                source=str(path), key=key_of(root, "librispeech_pc", path), text=text,
                speaker=path.stem.split("-")[0], meta=meta, target=None))
        if (root / part).is_dir():
            for path in sorted((root / part).rglob("*.flac")):
                if str(path.resolve()) not in named:
                    gathered.rejects.append((str(path.resolve()), "no transcript (not in the LibriSpeech-PC "
                                                                  "manifest)"))
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


TRANSCRIPT_CORPORA = (
    Corpus("librispeech_pc", "speech", "LibriSpeech parts + <part>.json NeMo manifests (here or in manifests/)",
           gather_librispeech_pc),
)
