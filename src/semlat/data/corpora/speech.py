"""The speech corpora the papers train and test on, read by Lhotse's recipes.

Lhotse (``lhotse.recipes.prepare_*``) parses each corpus's own metadata (LibriTTS's ``.trans.tsv`` and
``.book.tsv``, LibriSpeech's ``.trans.txt``, LJSpeech's ``metadata.csv``, VCTK's ``txt/`` tree, HiFiTTS's
JSON manifests, Emilia's JSONL, WenetSpeech4TTS's file lists) into recordings and supervisions; this
module checks the root's layout first (Lhotse's own checks are asserts), runs the recipe without its
manifest cache (a rerun sees the tree as it is now), and turns each supervision into a manifest row:
the audio file, the transcript, the speaker, the corpus's own split where it has one (LibriTTS's
``dev-*`` parts are ``valid``, ``test-*`` parts ``test``) and the rest of Lhotse's fields (language,
gender, the original text) as extra keys.

Emilia's later WebDataset release (tar archives of mp3 + json pairs, which Lhotse's recipe does not read) is read
here (``emilia_wds``), its kept audio unpacked beside the manifest.

What the recipes skip is reported, not dropped: every audio file of the corpus that no transcript names
is a reject ("no transcript"), and every file a transcript names that is missing ("listed ... but the
audio file is missing", from the recipe's own warnings). A supervision that covers only part of its
recording is rejected too (semlat's manifest holds whole files).
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from semlat.data.corpora.base import Corpus, Gathered, key_of, part_split, require, take_options
from semlat.data.prepare import AUDIO_EXTENSIONS, Candidate
from semlat.errors import DataError

LIBRITTS_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                  "train-other-500")
LIBRISPEECH_PARTS = LIBRITTS_PARTS + ("dev-clean-2", "train-clean-5")
EMILIA_LANGUAGES = ("de", "en", "fr", "ja", "ko", "zh")
WENETSPEECH4TTS_PARTS = ("Basic", "Standard", "Premium")
#: A supervision further than this from its recording's start or end is a segment, not a whole file (s).
WHOLE_FILE_TOLERANCE = 0.05
_MISSING = re.compile(r"No such file: (.+)$")
_UNRECORDED = re.compile(r"No recording exists for utterance id ([^\s,]+)")


class _Warnings(logging.Handler):
    """Collects the warnings a recipe logs (Lhotse's recipes log skipped files on the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _collect_warnings() -> Iterator[_Warnings]:
    handler = _Warnings()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _pairs(result: Any) -> Iterator[tuple[str | None, Any, Any]]:
    """``(part, recording, supervision)`` from any recipe's return value (one set, parts, or a CutSet)."""
    from lhotse import CutSet

    if isinstance(result, CutSet):
        for cut in result:
            for sup in cut.supervisions:
                yield None, cut.recording, sup
        return
    parts = {None: result} if "recordings" in result else result
    for part, sets in parts.items():
        recordings = sets["recordings"]
        for sup in sets["supervisions"]:
            yield part, recordings[sup.recording_id], sup


def _row(name: str, root: Path, part: str | None, recording: Any, sup: Any,
         split_of: Callable[[str | None], str | None]) -> tuple[Candidate | None, tuple[str, str] | None]:
    source = recording.sources[0]
    if source.type != "file":
        return None, (recording.id, f"a {source.type} source, not an audio file")
    path = Path(source.source)
    if sup.start > WHOLE_FILE_TOLERANCE or sup.start + sup.duration < recording.duration - WHOLE_FILE_TOLERANCE:
        return None, (str(path), f"the transcript covers {sup.start:.2f}-{sup.start + sup.duration:.2f} s of "
                                 f"{recording.duration:.2f} s (semlat's manifest holds whole files)")
    text = " ".join((sup.text or "").split())
    if not text:
        return None, (str(path), "empty transcript")
    meta: dict[str, Any] = {}
    if sup.language:
        meta["language"] = sup.language
    if getattr(sup, "gender", None):
        meta["gender"] = sup.gender
    for key, value in (sup.custom or {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            meta[key] = value
    if part is not None:
        meta["part"] = part
    split = split_of(part)
    if split is not None:
        meta["split"] = split
    return Candidate(source=str(path.resolve()), key=key_of(root, name, path), text=text,
                     speaker=sup.speaker or None, meta=tuple(sorted(meta.items())), target=None), None


def _gather(name: str, root: Path, run: Callable[[], Any], audio_files: list[Path],
            split_of: Callable[[str | None], str | None] = part_split,
            listed_missing: Sequence[Path] = ()) -> Gathered:
    """Run ``run`` (a Lhotse recipe call), turn its supervisions into candidates, report what it skipped.

    ``audio_files``: every audio file of the corpus on disk (those no supervision names are rejects, "no
    transcript"); ``listed_missing``: files the corpus's metadata names that are not on disk, for recipes
    that skip them without a warning.
    """
    with _collect_warnings() as warnings:
        try:
            result = run()
        except (AssertionError, ValueError, KeyError, IndexError, OSError) as err:
            raise DataError(f"{root}: Lhotse's {name} recipe could not read this root: {err}") from err
    gathered = Gathered()
    kept: set[str] = set()
    for part, recording, sup in _pairs(result):
        candidate, reject = _row(name, root, part, recording, sup, split_of)
        if reject is not None:
            gathered.rejects.append(reject)
            kept.add(reject[0])
            continue
        gathered.candidates.append(candidate)
        kept.add(candidate.source)
    missing = "listed with a transcript but the audio file is missing"
    for message in warnings.messages:
        match = _MISSING.search(message)
        if match and Path(match.group(1).strip()).suffix.lower() in AUDIO_EXTENSIONS:
            gathered.rejects.append((match.group(1).strip(), missing))  # (a missing transcript file: swept below)
        match = _UNRECORDED.search(message)
        if match:
            gathered.rejects.append((f"{name} utterance {match.group(1)}", missing))
    gathered.rejects += [(str(p), missing) for p in listed_missing]
    for path in audio_files:
        if str(path.resolve()) not in kept:
            gathered.rejects.append((str(path.resolve()), "no transcript"))
    gathered.candidates.sort(key=lambda c: c.key)
    return gathered


def _present_parts(root: Path, name: str, known: tuple[str, ...], wanted: Any) -> list[str]:
    present = [p for p in known if (root / p).is_dir()]
    if wanted:
        chosen = [wanted] if isinstance(wanted, str) else list(wanted)
        for part in chosen:
            if part not in known:
                raise DataError(f"unknown {name} part {part!r}; known: {', '.join(known)}")
            if part not in present:
                raise DataError(f"{root}: not a {name} root with part {part}: {root / part} is missing")
        return chosen
    if not present:
        raise DataError(f"{root}: not a {name} root: none of its part folders ({', '.join(known)}) is there")
    return present


def _glob(root: Path, parts: list[str], pattern: str) -> list[Path]:
    return sorted(p for part in parts for p in (root / part).rglob(pattern) if not p.name.startswith("._"))


def gather_libritts(root: Path, options: dict, name: str = "libritts") -> Gathered:
    """LibriTTS (and LibriTTS-R): ``<part>/<speaker>/<chapter>/<id>.wav`` with ``.trans.tsv``/``.book.tsv``."""
    from lhotse.recipes import prepare_libritts

    opts = take_options(name, options, {"parts": None})
    parts = _present_parts(root, name, LIBRITTS_PARTS, opts["parts"])
    for part in parts:
        if not any((root / part).rglob("*.trans.tsv")):
            raise DataError(f"{root / part}: no *.trans.tsv transcript files (not a {name} part)")
    return _gather(name, root, lambda: prepare_libritts(root, dataset_parts=parts), _glob(root, parts, "*.wav"))


def gather_librittsr(root: Path, options: dict) -> Gathered:
    """LibriTTS-R: LibriTTS's layout and transcripts, restored audio."""
    return gather_libritts(root, options, name="librittsr")


def gather_librispeech(root: Path, options: dict) -> Gathered:
    """LibriSpeech: ``<part>/<speaker>/<chapter>/<id>.flac`` with ``<speaker>-<chapter>.trans.txt``."""
    from lhotse.recipes import prepare_librispeech

    opts = take_options("librispeech", options, {"parts": None})
    parts = _present_parts(root, "librispeech", LIBRISPEECH_PARTS, opts["parts"])
    return _gather("librispeech", root, lambda: prepare_librispeech(root, dataset_parts=parts),
                   _glob(root, parts, "*.flac"))


def gather_ljspeech(root: Path, options: dict) -> Gathered:
    """LJSpeech: ``metadata.csv`` (``id|text|normalized``) and ``wavs/<id>.wav``; one speaker, no splits."""
    from lhotse.recipes import prepare_ljspeech

    take_options("ljspeech", options, {})
    require(root, "LJSpeech", "metadata.csv", "wavs")
    for number, line in enumerate((root / "metadata.csv").read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and line.count("|") != 2:
            raise DataError(f"{root / 'metadata.csv'}:{number}: expected 'id|text|normalized text'")

    def run() -> Any:
        result = prepare_ljspeech(root)
        for sup in result["supervisions"]:  # one reader, so the speaker is known
            sup.speaker = sup.speaker or "LJ"
        return result

    return _gather("ljspeech", root, run, sorted((root / "wavs").glob("*.wav")), split_of=lambda part: None)


def gather_vctk(root: Path, options: dict) -> Gathered:
    """VCTK 0.92 (``wav48_silence_trimmed/<spk>/<spk>_<n>_<mic>.flac``, ``txt/``, ``speaker-info.txt``) or
    the older release (``wav48/<spk>/<spk>_<n>.wav``); option ``mic`` (0.92 only): ``mic1`` or ``mic2``."""
    from lhotse.recipes import prepare_vctk

    opts = take_options("vctk", options, {"mic": "mic2"})
    if opts["mic"] not in ("mic1", "mic2"):
        raise DataError(f"vctk mic must be mic1 or mic2, got {opts['mic']!r}")
    require(root, "VCTK", "txt", "speaker-info.txt")
    new = (root / "wav48_silence_trimmed").is_dir()
    if not new and not (root / "wav48").is_dir():
        raise DataError(f"{root}: not a VCTK root: wav48_silence_trimmed (or wav48) is missing")
    audio = (sorted((root / "wav48_silence_trimmed").rglob(f"*_{opts['mic']}.flac")) if new
             else sorted((root / "wav48").rglob("*.wav")))
    return _gather("vctk", root, lambda: prepare_vctk(root, use_edinburgh_vctk_url=new, mic_id=opts["mic"]),
                   audio, split_of=lambda part: None)


def gather_hifitts(root: Path, options: dict) -> Gathered:
    """Hi-Fi TTS: ``<speaker>_manifest_<clean|other>_<train|dev|test>.json`` and the audio they name."""
    from lhotse.recipes import prepare_hifitts

    take_options("hifitts", options, {})
    manifests = sorted(root.glob("*_manifest_*.json"))
    if not manifests:
        raise DataError(f"{root}: not a Hi-Fi TTS root: no <speaker>_manifest_<clean|other>_<part>.json files")
    audio = sorted(p for p in (root / "audio").rglob("*.flac")) if (root / "audio").is_dir() else []

    def split_of(part: str | None) -> str | None:
        return part_split((part or "").rsplit("_", 1)[-1])

    return _gather("hifitts", root, lambda: prepare_hifitts(root), audio, split_of=split_of)


def gather_emilia(root: Path, options: dict) -> Gathered:
    """Emilia (the raw release): ``raw/<LANG>/<LANG>_B*.jsonl`` naming ``raw/<LANG>/.../mp3/*.mp3``;
    option ``language`` (de, en, fr, ja, ko, zh; default en)."""
    from lhotse.recipes.emilia import prepare_emilia

    opts = take_options("emilia", options, {"language": "en"})
    lang = str(opts["language"]).lower()
    if lang not in EMILIA_LANGUAGES:
        raise DataError(f"emilia language must be one of {', '.join(EMILIA_LANGUAGES)}, got {lang!r}")
    folder = f"raw/{lang.upper()}"
    require(root, "Emilia", folder)
    if not any((root / folder).glob("*.jsonl")):
        raise DataError(f"{root / folder}: no *.jsonl metadata files (not an Emilia language folder)")
    audio = sorted((root / folder).rglob("*.mp3"))
    listed_missing = []  # Lhotse's recipe skips these without a word
    for jsonl in sorted((root / folder).glob("*.jsonl")):
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    wav = json.loads(line)["wav"]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise DataError(f"{jsonl}:{number}: expected a JSON object with 'wav' ({err})") from err
                if not (root / folder / wav).is_file():
                    listed_missing.append(root / folder / wav)
    return _gather("emilia", root, lambda: prepare_emilia(root, lang=lang, num_jobs=1), audio,
                   split_of=lambda part: None, listed_missing=listed_missing)


#: Emilia's WebDataset release: its sources' folders (``-O source=``)
EMILIA_WDS_SOURCES = {"emilia": ("Emilia",), "yodas": ("Emilia-YODAS",), "both": ("Emilia", "Emilia-YODAS")}
_WDS_AUDIO = (".mp3", ".wav", ".flac")


def gather_emilia_wds(root: Path, options: dict, extract_to: Path) -> Gathered:
    """Emilia's WebDataset release (Emilia and Emilia-YODAS): ``<source>/<LANG>/<LANG>-B<NNNNNN>.tar``, each
    holding ``<id>.mp3`` and ``<id>.json`` (``text``, ``speaker``, ``language``, ``duration``, ``dnsmos``) per
    utterance. Every kept utterance's audio is unpacked into ``extract_to/<source>/<LANG>/<tar>/``; a json
    without its audio, audio without its json and an empty transcript are rejects; an unreadable tar or json is a
    one-line error naming it. Options ``language`` (default en) and ``source`` (emilia, yodas, both; default
    emilia)."""
    opts = take_options("emilia_wds", options, {"language": "en", "source": "emilia"})
    lang = str(opts["language"]).lower()
    if lang not in EMILIA_LANGUAGES:
        raise DataError(f"emilia_wds language must be one of {', '.join(EMILIA_LANGUAGES)}, got {lang!r}")
    if opts["source"] not in EMILIA_WDS_SOURCES:
        raise DataError(f"emilia_wds source must be one of {', '.join(EMILIA_WDS_SOURCES)}, got {opts['source']!r}")
    folders = [f"{source}/{lang.upper()}" for source in EMILIA_WDS_SOURCES[opts["source"]]]
    require(root, "Emilia WebDataset", *folders)
    gathered = Gathered()
    for folder in folders:
        tars = sorted((root / folder).glob(f"{lang.upper()}-B*.tar"))
        if not tars:
            raise DataError(f"{root / folder}: no {lang.upper()}-B*.tar archives (not an Emilia WebDataset folder)")
        for tar in tars:
            _gather_emilia_tar(root, tar, extract_to / folder / tar.stem, gathered)
    return gathered


def _gather_emilia_tar(root: Path, tar_path: Path, out: Path, gathered: Gathered) -> None:
    metadata: dict[str, dict] = {}
    audio: dict[str, Path] = {}
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name)
                data = tar.extractfile(member).read()
                if name.suffix == ".json":
                    try:
                        meta = json.loads(data)
                    except (json.JSONDecodeError, UnicodeDecodeError) as err:
                        raise DataError(f"{tar_path}: {member.name}: not valid JSON ({err})") from err
                    if not isinstance(meta, dict):
                        raise DataError(f"{tar_path}: {member.name}: not a JSON object")
                    metadata[name.stem] = meta
                elif name.suffix.lower() in _WDS_AUDIO:
                    target = out / name.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    audio[name.stem] = target
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{tar_path}: truncated or unreadable tar ({type(err).__name__}: {err})") from err
    for stem in sorted(set(metadata) | set(audio)):
        meta, path = metadata.get(stem), audio.get(stem)
        if path is None:
            gathered.rejects.append((f"{tar_path}:{stem}", "listed (its .json) but the audio is missing in the tar"))
            continue
        if meta is None:
            gathered.rejects.append((str(path.resolve()), "no transcript (no .json beside it in the tar)"))
            continue
        text = " ".join(str(meta.get("text") or "").split())
        if not text:
            gathered.rejects.append((str(path.resolve()), "empty transcript"))
            continue
        extra = {k: meta[k] for k in ("language", "dnsmos") if isinstance(meta.get(k), (str, int, float))}
        extra["archive"] = tar_path.name
        gathered.candidates.append(Candidate(
            source=str(path.resolve()), key=f"emilia_wds/{tar_path.relative_to(root).with_suffix('').as_posix()}/"
                                            f"{path.name}", text=text, speaker=str(meta.get("speaker") or "") or None,
            meta=tuple(sorted(extra.items())), target=None))


def gather_wenetspeech4tts(root: Path, options: dict) -> Gathered:
    """WenetSpeech4TTS: ``filelists/Basic_filelist.lst``, ``DNSMOS_P808Scores/*_DNSMOS.lst`` and each
    part's ``wavs/`` and ``txts/``; option ``parts`` (Basic, Standard, Premium; default Premium)."""
    from lhotse.recipes import prepare_wenetspeech4tts

    opts = take_options("wenetspeech4tts", options, {"parts": "Premium"})
    parts = [opts["parts"]] if isinstance(opts["parts"], str) else list(opts["parts"])
    for part in parts:
        if part not in WENETSPEECH4TTS_PARTS:
            raise DataError(f"unknown wenetspeech4tts part {part!r}; known: {', '.join(WENETSPEECH4TTS_PARTS)}")
    require(root, "WenetSpeech4TTS", "filelists/Basic_filelist.lst", "DNSMOS_P808Scores/Basic_DNSMOS.lst",
            "DNSMOS_P808Scores/Standard_DNSMOS.lst", "DNSMOS_P808Scores/Premium_DNSMOS.lst")
    # Premium is inside Standard, which is inside Basic: the audio of a part is under its own folders and
    # the smaller parts' folders.
    nested = {"Basic": ("Basic", "Standard", "Premium"), "Standard": ("Standard", "Premium"),
              "Premium": ("Premium",)}
    folders = sorted({f for part in parts for f in nested[part]})
    audio = sorted(p for f in folders if (root / f).is_dir() for p in (root / f).rglob("*.wav"))
    return _gather("wenetspeech4tts", root, lambda: prepare_wenetspeech4tts(root, dataset_parts=parts), audio,
                   split_of=lambda part: None)


SPEECH_CORPORA = (
    Corpus("libritts", "speech", "<part>/<speaker>/<chapter>/*.wav + *.trans.tsv, *.book.tsv", gather_libritts,
           "lhotse"),
    Corpus("librittsr", "speech", "as libritts (LibriTTS_R)", gather_librittsr, "lhotse"),
    Corpus("librispeech", "speech", "<part>/<speaker>/<chapter>/*.flac + *.trans.txt", gather_librispeech, "lhotse"),
    Corpus("ljspeech", "speech", "metadata.csv + wavs/*.wav", gather_ljspeech, "lhotse"),
    Corpus("vctk", "speech", "txt/, speaker-info.txt, wav48_silence_trimmed/ (or wav48/)", gather_vctk, "lhotse"),
    Corpus("hifitts", "speech", "*_manifest_*.json + audio/", gather_hifitts, "lhotse"),
    Corpus("emilia", "speech", "raw/<LANG>/*.jsonl + mp3 files", gather_emilia, "lhotse"),
    Corpus("emilia_wds", "speech", "Emilia[-YODAS]/<LANG>/<LANG>-B*.tar (mp3 + json per utterance)", gather_emilia_wds,
           archived=True),
    Corpus("wenetspeech4tts", "speech", "filelists/, DNSMOS_P808Scores/, <part>/*/wavs, txts",
           gather_wenetspeech4tts, "lhotse"),
)
