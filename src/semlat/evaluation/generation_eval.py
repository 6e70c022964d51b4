"""Generation metrics: ``semlat eval tts`` (WER / CER / PER, SIM, FD) and ``semlat eval audio`` (FD).

**Lists of generated audio** (:func:`read_audio_list`): JSON Lines, one object per clip, with
``audio`` (a path, relative to the list's folder or absolute) and, for TTS, ``text`` (the target
transcript), optionally ``phonemes`` (target IPA; else espeak-ng phonemises ``text`` when the ASR
judge recognises phonemes), ``prompt`` (the prompt / reference-speaker audio for SIM) and ``id``
(default: ``audio``). A semlat manifest is such a list. ``semlat eval audio`` also takes a folder
(every audio file under it, sorted) and, as the reference, a ``.npz`` of statistics saved by an earlier
run with the same embedding model.

**TTS** (:func:`evaluate_tts`), per clip: the ASR judge's transcript and its error rate against the
target (WER and CER for a text judge such as Whisper; PER for the offline phoneme judge; CER and WER
for a character judge), and SIM, the speaker judge's cosine between the clip and its prompt. Error
rates are reported two ways: **corpus** (total edits / total reference units, jiwer's convention)
and the mean of per-utterance rates with a bootstrap interval (Seed-TTS-eval and F5-TTS average
per utterance). Rows are appended to ``utterances.jsonl`` as they are done and a rerun resumes.

**Fréchet distance** (with a reference set): embeddings of the generated and the reference audio by
a pluggable model (:mod:`semlat.evaluation.embedders`: the offline judge's encoder, PANNs Cnn14,
VGGish), then :func:`~semlat.evaluation.frechet.frechet_distance`. Both sets' statistics are saved
(``generated_stats.npz``, ``reference_stats.npz``) so a fixed reference is embedded once.

Every figure carries its judge: ``report.json`` has a ``judges`` section and each metric a ``judge``
field; ``report.md`` prints it beside the figure, so the offline judge's PER is never read as
Whisper's WER.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm import tqdm

from semlat._version import __version__
from semlat.audio.io import load_audio
from semlat.errors import AudioError, ConfigError, DataError
from semlat.evaluation.dnsmos import FIGURES, DNSMOSJudge, load_mos_judge
from semlat.evaluation.embedders import default_pooling, embed_set, load_audio_embedder
from semlat.evaluation.frechet import EmbeddingStats, frechet_distance
from semlat.evaluation.judges import (
    JUDGE_RATE,
    ASRJudge,
    SpeakerJudge,
    edit_distance,
    load_asr_judge,
    load_speaker_judge,
    normalize_text,
    split_chars,
    split_phonemes,
)
from semlat.evaluation.metrics import MetricInfo
from semlat.evaluation.recon_eval import (
    aggregate,
    batches,
    check_run,
    finite_or_none,
    output_folder,
    ratio_ci,
    read_rows,
)
from semlat.text.espeak import phonemize as espeak_ipa
from semlat.utils.figures import number, percent
from semlat.utils.files import atomic_write_text, sha256_file

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
ROWS_NAME = "utterances.jsonl"
TTS_RUN_KEYS = ("listing_sha256", "asr", "speaker", "mos")

TTS_COLUMNS = MappingProxyType({info.name: info for info in (
    MetricInfo("wer", "asr", "WER", "fraction", "0..inf", False, "word error rate of the ASR transcript against the text"),
    MetricInfo("cer", "asr", "CER", "fraction", "0..inf", False, "character error rate (spaces between words count)"),
    MetricInfo("per", "asr", "PER", "fraction", "0..inf", False, "phoneme error rate against the target IPA"),
    MetricInfo("sim", "speaker", "SIM", "cosine", "-1..1", True, "speaker-embedding cosine of clip and prompt"),
    MetricInfo("dnsmos_ovrl", "mos", "DNSMOS OVRL", "MOS", "1..5", True, "DNSMOS P.835 overall quality"),
    MetricInfo("dnsmos_sig", "mos", "DNSMOS SIG", "MOS", "1..5", True, "DNSMOS P.835 speech signal quality"),
    MetricInfo("dnsmos_bak", "mos", "DNSMOS BAK", "MOS", "1..5", True, "DNSMOS P.835 background (noise) quality"),
    MetricInfo("dnsmos_p808", "mos", "DNSMOS P.808", "MOS", "1..5", True, "DNSMOS P.808 overall quality"),
)})


@dataclass(frozen=True)
class ListedAudio:
    """One clip of an audio list: ``id``, resolved ``path`` and the optional TTS fields."""

    id: str
    path: Path
    text: str | None = None
    phonemes: str | None = None
    prompt: Path | None = None


def _resolve(root: Path, value: Any, where: str, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty path string")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def read_audio_list(path: str | os.PathLike) -> list[ListedAudio]:
    """Read a JSON Lines list of clips (see the module docstring); one-line DataError per bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such list file")
    items: list[ListedAudio] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (a JSON Lines list of clips was expected)") from None
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: a line must be a JSON object")
        audio = _resolve(path.parent, row.get("audio"), where, "audio")
        item_id = str(row.get("id", row["audio"]))
        if item_id in seen:
            raise DataError(f"{where}: duplicate id {item_id!r}")
        seen.add(item_id)
        for key in ("text", "phonemes"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise DataError(f"{where}: {key!r} must be a string")
        prompt = _resolve(path.parent, row["prompt"], where, "prompt") if row.get("prompt") is not None else None
        items.append(ListedAudio(item_id, audio, row.get("text"), row.get("phonemes"), prompt))
    if not items:
        raise DataError(f"{path}: lists no clip")
    return items


def collect_audio(source: str | os.PathLike) -> list[ListedAudio]:
    """Clips of a folder (every audio file under it, sorted by relative path) or of a JSON Lines list."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise DataError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under this folder")
        return [ListedAudio(p.relative_to(source).as_posix(), p) for p in files]
    return read_audio_list(source)


# --- phonemes -------------------------------------------------------------------------------

def phonemize(text: str, language: str = "en-us") -> str:
    """espeak-ng IPA of ``text`` (the demo corpus's convention); a one-line error without espeak-ng."""
    return espeak_ipa(text, language, needed_for="PER targets (or give 'phonemes' in the list)")


# --- per-clip scoring -----------------------------------------------------------------------

def asr_columns(judge: ASRJudge | None) -> list[str]:
    """Which error rates a judge can give: text and character judges WER + CER, phoneme judges PER."""
    if judge is None:
        return []
    return ["per"] if judge.units == "phonemes" else ["wer", "cer"]


def _units(kind: str, text: str) -> list[str]:
    if kind == "wer":
        return normalize_text(text).split()
    if kind == "cer":
        return split_chars(text)
    return split_phonemes(text)


def score_transcript(hypothesis: str, target: str, kind: str) -> tuple[float, int, int]:
    """``(rate, edits, reference units)`` of one transcript; the rate is NaN for an empty reference."""
    hyp, ref = _units(kind, hypothesis), _units(kind, target)
    edits = edit_distance(hyp, ref)
    return (edits / len(ref) if ref else math.nan), edits, len(ref)


def score_clip(item: ListedAudio, audio: np.ndarray, hypothesis: str | None, columns: Sequence[str],
             speaker: SpeakerJudge | None, language: str, mos: DNSMOSJudge | None = None) -> dict[str, Any]:
    """One clip's row: ``audio`` (16 kHz ``[N]``) scored with the ASR ``hypothesis`` against the item's text or
    phonemes, SIM against its prompt with ``speaker``, DNSMOS with ``mos``; ``columns`` as :func:`asr_columns`
    plus ``sim`` and the DNSMOS figures."""
    scores: dict[str, float | None] = {}
    undefined: dict[str, str] = {}
    counts: dict[str, list[int]] = {}
    for kind in columns:
        if TTS_COLUMNS[kind].group != "asr":
            continue
        target = item.text
        if kind == "per":
            target = item.phonemes or (phonemize(item.text, language) if item.text else None)
        if target is None or hypothesis is None:
            scores[kind], undefined[kind] = None, "no target text"
            continue
        rate, edits, n = score_transcript(hypothesis, target, kind)
        scores[kind] = finite_or_none(rate)
        counts[kind] = [edits, n]
        if not n:
            undefined[kind] = "empty target"
    if "sim" in columns:
        if item.prompt is None:
            scores["sim"], undefined["sim"] = None, "no prompt"
        else:
            try:
                prompt, _ = load_audio(item.prompt, JUDGE_RATE)
                value = speaker.similarity(audio, prompt[0].numpy(), JUDGE_RATE)
            except AudioError as err:
                value = math.nan
                undefined["sim"] = f"prompt: {err}"
            scores["sim"] = finite_or_none(value)
            if not math.isfinite(value):
                undefined.setdefault("sim", getattr(value, "reason", None) or "undefined")
    if mos is not None:
        figures, reason = mos.score(audio)
        for name, value in figures.items():
            scores[name] = finite_or_none(value)
            if reason:
                undefined[name] = reason
    return {"id": item.id, "audio": str(item.path), "text": item.text, "hypothesis": hypothesis,
            "prompt": None if item.prompt is None else str(item.prompt), "duration": round(len(audio) / JUDGE_RATE, 6),
            "scores": {c: scores.get(c) for c in columns}, "counts": counts, "undefined": undefined}


def corpus_rates(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, tuple[float | None, list]]:
    """Corpus error rate per ASR column: total edits / total reference units over the rows, and its 95 %
    bootstrap interval over clips (:func:`~semlat.evaluation.recon_eval.ratio_ci`): ``{kind: (rate, [low,
    high])}``."""
    out = {}
    for kind in columns:
        if TTS_COLUMNS[kind].group != "asr":
            continue
        counts = [r["counts"][kind] for r in rows if kind in r.get("counts", {})]
        rate, low, high = ratio_ci([c[0] for c in counts], [c[1] for c in counts])
        out[kind] = (finite_or_none(rate), [finite_or_none(low), finite_or_none(high)])
    return out


# --- Fréchet distance -----------------------------------------------------------------------

def _signals(items: Sequence[ListedAudio], rate: int, rejects: list[dict[str, str]]) -> Iterator[tuple[str, Any, int]]:
    for item in items:
        try:
            audio, _ = load_audio(item.path, rate)
        except AudioError as err:
            rejects.append({"id": item.id, "reason": str(err)})
            continue
        yield item.id, audio[0].numpy(), rate


def set_statistics(embedder: Any, items: Sequence[ListedAudio], pooling: str, progress: bool, desc: str,
                   rejects: list[dict[str, str]]) -> tuple[EmbeddingStats, int]:
    """Embed every clip and summarise: ``(statistics, clips used)``; DataError with under 2 rows."""
    rows, used = embed_set(embedder, _signals(items, embedder.sample_rate, rejects), pooling=pooling,
                           progress=progress, total=len(items), desc=desc)
    if len(rows) < 2:
        raise DataError(f"{desc}: only {len(rows)} embedding row(s); a covariance needs at least 2 "
                        f"(use more clips or pooling 'frames')")
    return EmbeddingStats.from_embeddings(rows, embedder.label), len(used)


def frechet_section(generated: Sequence[ListedAudio], reference: str | os.PathLike, embedding: str, out: Path, *,
                    pooling: str | None, device: str, progress: bool) -> dict[str, Any]:
    """Embed both sets (or load the reference's ``.npz``), save statistics, return the FD figure."""
    embedder = load_audio_embedder(embedding, device=device)
    pooling = pooling or default_pooling(embedder)
    rejects: list[dict[str, str]] = []
    generated_stats, generated_clips = set_statistics(embedder, generated, pooling, progress, "embedding generated",
                                                      rejects)
    reference_path = Path(reference)
    if reference_path.suffix == ".npz":
        reference_stats, reference_clips = EmbeddingStats.load(reference_path), None
        if reference_stats.embedder != embedder.label:
            raise ConfigError(f"{reference_path}: statistics of {reference_stats.embedder!r}, not of "
                              f"{embedder.label!r}; recompute them with this embedding model")
    else:
        reference_stats, reference_clips = set_statistics(embedder, collect_audio(reference_path), pooling, progress,
                                                          "embedding reference", rejects)
        reference_stats.save(out / "reference_stats.npz")
    generated_stats.save(out / "generated_stats.npz")
    value = frechet_distance(generated_stats, reference_stats)
    return {
        "value": value, "label": "FD", "better": "lower", "judge": embedder.label, "pooling": pooling,
        "description": f"Fréchet distance of {embedder.label} embeddings ({pooling}), generated vs reference",
        "generated": {"clips": generated_clips, "rows": generated_stats.n, "stats": "generated_stats.npz"},
        "reference": {"source": str(reference_path.resolve()), "clips": reference_clips, "rows": reference_stats.n,
                      "stats": str(reference_path.resolve()) if reference_clips is None else "reference_stats.npz"},
        "rejects": rejects,
    }


# --- the commands ---------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def evaluate_tts(listing: str | os.PathLike, out: str | os.PathLike, *, asr: str | None = None,
                 speaker: str | None = None, reference: str | os.PathLike | None = None, embedding: str | None = None,
                 pooling: str | None = None, language: str = "en-us", device: str = "cpu", batch_size: int = 8,
                 mos: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score generated speech: error rates with ``asr``, SIM with ``speaker``, FD against ``reference``,
    DNSMOS with ``mos`` (``dnsmos`` or ``dnsmos-personalized``; :mod:`semlat.evaluation.dnsmos`).

    ``asr`` / ``speaker`` are judge specs (:func:`~semlat.evaluation.judges.load_asr_judge`,
    :func:`~semlat.evaluation.judges.load_speaker_judge`); ``embedding`` an embedder spec (default:
    the ASR judge's encoder when ``asr`` is ``ctc:``). Writes ``out/`` (module docstring) and returns
    the report dict. At least one of ``asr``, ``speaker`` and ``reference`` is needed.
    """
    if not (asr or speaker or reference or mos):
        raise ConfigError("nothing to measure: give an ASR judge (--asr), a speaker judge (--speaker), "
                          "a quality judge (--mos) or a reference set (--reference)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    items = read_audio_list(listing)
    out = output_folder(out)
    asr_judge = load_asr_judge(asr, device=device) if asr else None
    speaker_judge = load_speaker_judge(speaker, device=device) if speaker else None
    mos_judge = load_mos_judge(mos) if mos else None
    columns = asr_columns(asr_judge) + (["sim"] if speaker_judge else []) + (list(FIGURES) if mos_judge else [])
    judges = {}
    if asr_judge:
        judges["asr"] = asr_judge.label
    if speaker_judge:
        judges["speaker"] = speaker_judge.label
    if mos_judge:
        judges["mos"] = mos_judge.label
    run = {"listing": str(Path(listing).resolve()), "listing_sha256": sha256_file(listing),
           "asr": judges.get("asr"), "speaker": judges.get("speaker"), "mos": judges.get("mos"), "columns": columns}
    out.mkdir(parents=True, exist_ok=True)
    check_run(out, run, TTS_RUN_KEYS)

    rows_path = out / ROWS_NAME
    done = read_rows(rows_path, {i.id for i in items}, columns)
    pending = [i for i in items if i.id not in done]
    rejects: list[dict[str, str]] = []
    computed = 0
    with rows_path.open("a", encoding="utf-8") as rows_file, \
            tqdm(total=len(pending), desc="scoring", unit="clip", disable=not progress or not pending) as bar:
        for batch in batches(pending if columns else [], batch_size):
            loaded = []
            for item in batch:
                try:
                    audio, _ = load_audio(item.path, JUDGE_RATE)
                except AudioError as err:
                    rejects.append({"id": item.id, "reason": str(err)})
                    continue
                loaded.append((item, audio[0].numpy()))
            hypotheses: list[str | None] = [None] * len(loaded)
            if asr_judge and loaded:
                hypotheses = list(asr_judge.transcribe([a for _, a in loaded], JUDGE_RATE))
            for (item, audio), hypothesis in zip(loaded, hypotheses, strict=True):
                row = score_clip(item, audio, hypothesis, columns, speaker_judge, language, mos_judge)
                done[item.id] = row
                rows_file.write(json.dumps(row, allow_nan=False, ensure_ascii=False) + "\n")
                rows_file.flush()
                computed += 1
            bar.update(len(batch))
    rows = [done[i.id] for i in items if i.id in done]
    if columns and not rows:
        first = f"; first: {rejects[0]['reason']}" if rejects else ""
        raise DataError(f"{listing}: scored none of its {len(items)} clip(s) ({len(rejects)} unreadable{first})")

    frechet = None
    if reference is not None:
        if embedding is None:
            if not (asr and asr.strip().lower().startswith("ctc:")):
                raise ConfigError("FD needs an embedding model: give --embedding (ctc:/path, panns:/file, vggish:/file)")
            embedding = asr
        frechet = frechet_section(items, reference, embedding, out, pooling=pooling, device=device, progress=progress)
        judges["embedding"] = frechet["judge"]

    metrics = aggregate(rows, columns, TTS_COLUMNS)
    judge_of = {"asr": judges.get("asr"), "speaker": judges.get("speaker"), "mos": judges.get("mos")}
    for name, figures in metrics.items():
        figures["judge"] = judge_of[TTS_COLUMNS[name].group]
    for name, (value, interval) in corpus_rates(rows, columns).items():
        metrics[name]["corpus"] = value
        metrics[name]["corpus_ci95"] = interval
    report = {
        "kind": "tts", "semlat_version": __version__, "created": _now(),
        "data": {"listing": run["listing"], "listing_sha256": run["listing_sha256"], "clips": len(items),
                 "scored": len(rows), "rejected": len(rejects)},
        "settings": {"language": language, "device": device, "batch_size": batch_size,
                     "error_rates": "corpus: total edits / total reference units; mean: per-clip rates averaged, "
                                    "95 % percentile bootstrap CI"},
        "judges": judges, "metrics": metrics, "frechet": frechet, "rejects": rejects,
        "run": {"computed": computed, "resumed": len(rows) - computed, "rows": ROWS_NAME}, "utterances": rows,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", markdown_report(report))
    return report


def evaluate_audio(generated: str | os.PathLike, reference: str | os.PathLike, out: str | os.PathLike, *,
                   embedding: str, pooling: str | None = None, device: str = "cpu",
                   progress: bool = True) -> dict[str, Any]:
    """Fréchet distance between generated audio and a reference set (folders, lists or a ``.npz``)."""
    out = output_folder(out)
    items = collect_audio(generated)
    out.mkdir(parents=True, exist_ok=True)
    frechet = frechet_section(items, reference, embedding, out, pooling=pooling, device=device, progress=progress)
    report = {
        "kind": "audio", "semlat_version": __version__, "created": _now(),
        "data": {"generated": str(Path(generated).resolve()), "clips": len(items),
                 "reference": frechet["reference"]["source"]},
        "judges": {"embedding": frechet["judge"]}, "frechet": frechet,
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", markdown_report(report))
    return report


# --- Markdown -------------------------------------------------------------------------------

def _rate(value: float | None, pct: bool) -> str:
    """An error rate in percent (two decimals), any other figure as a number."""
    return percent(value, 2) if pct else number(value)


def metrics_table(report: dict[str, Any]) -> str:
    """Every figure with its judge: error rates (corpus and mean), SIM and FD."""
    lines = ["| metric | value | mean [95 % CI] | n | better | judge |", "|---|---:|---:|---:|---|---|"]
    for name, m in (report.get("metrics") or {}).items():
        pct = TTS_COLUMNS[name].group == "asr"
        low, high = m["ci95"]
        ci = "" if low is None else f" [{_rate(low, pct)}, {_rate(high, pct)}]"
        value = number(m["mean"])
        if pct:
            low_c, high_c = m.get("corpus_ci95") or [None, None]
            value = _rate(m.get("corpus"), pct) + (
                f" [{_rate(low_c, pct)}, {_rate(high_c, pct)}]" if low_c is not None else "") + " (corpus)"
        n = f"{m['n']}" + (f" (+{m['undefined']} undefined)" if m["undefined"] else "")
        lines.append(f"| {m['label']} | {value} | {_rate(m['mean'], pct)}{ci} | {n} | "
                     f"{'↑' if m['better'] == 'higher' else '↓'} {m['better']} | {m['judge']} |")
    fd = report.get("frechet")
    if fd:
        n = f"{fd['generated']['rows']} vs {fd['reference']['rows']} rows"
        lines.append(f"| FD ({fd['pooling']}) | {fd['value']:.3f} | | {n} | ↓ lower | {fd['judge']} |")
    return "\n".join(lines) + "\n"


def markdown_report(report: dict[str, Any]) -> str:
    """``report.md`` of a tts or audio evaluation."""
    data = report["data"]
    if report["kind"] == "tts":
        title = "# TTS evaluation"
        where = (f"- list: `{data['listing']}`: {data['scored']} of {data['clips']} clips scored, "
                 f"{data['rejected']} rejected")
    else:
        title = "# Audio generation evaluation"
        where = f"- generated: `{data['generated']}` ({data['clips']} clips); reference: `{data['reference']}`"
    lines = [title, "", where, f"- semlat {report['semlat_version']}, {report['created']}", "",
             metrics_table(report), "Judges (each figure names the one that produced it):", ""]
    lines += [f"- {role}: {label}" for role, label in report["judges"].items()]
    if report["kind"] == "tts":
        lines += ["", f"Error rates: {report['settings']['error_rates']}."]
        undefined = [(m["label"], r, c) for m in report["metrics"].values() for r, c in m["undefined_reasons"].items()]
        if undefined:
            lines += ["", "Undefined scores (left out of the means):", ""]
            lines += [f"- {label}: {count} x {reason}" for label, reason, count in undefined]
    rejects = list(report.get("rejects") or []) + list((report.get("frechet") or {}).get("rejects") or [])
    if rejects:
        lines += ["", f"Rejected inputs ({len(rejects)}):", ""]
        lines += [f"- `{r['id']}`: {r['reason']}" for r in rejects]
    return "\n".join(lines) + "\n"

