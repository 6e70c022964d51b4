"""The app's work, without any UI: reconstruct and score, latent diagnostics, TTS, text-to-audio, reports.

Every function takes a :class:`Workspace` (what the app serves, its guard, its shared models and its
output folder) and returns plain data: paths of the files it wrote under ``workspace.out`` and rows of
figures. Each call writes into a fresh job folder ``out/<kind>/<time>-<id>/`` (audio, PNGs and a
``job.json`` with every setting), so results are never overwritten and can be listened to later.
Bad input raises a :class:`~semlat.errors.SemlatError` with a one-line message; the UI shows it.
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semlat.app.catalog import Catalog, Entry
from semlat.app.guard import MAX_UPLOAD_MB, PathGuard, Refused, check_upload
from semlat.app.models import ModelCache
from semlat.audio.io import load_audio, save_audio
from semlat.audio.processing import resample
from semlat.data.manifest import Manifest
from semlat.errors import DataError
from semlat.evaluation import plots
from semlat.evaluation.metrics import COLUMNS, GROUPS
from semlat.evaluation.recon_eval import finite_or_none
from semlat.utils.files import atomic_write_text

#: called with (fraction done 0..1, what is happening)
Progress = Callable[[float, str], None]
JUDGE_RATE = 16000
#: utterances listed per manifest in the pickers
MAX_LISTED_UTTERANCES = 300


def _quiet(fraction: float, desc: str) -> None:
    del fraction, desc


@dataclass
class Workspace:
    """What the app serves (``catalog``), its path ``guard``, the shared ``models`` and its output folder."""

    catalog: Catalog
    guard: PathGuard
    models: ModelCache
    out: Path
    max_upload_mb: float = MAX_UPLOAD_MB
    settings: dict[str, Any] = field(default_factory=dict)
    #: ASR judge specs the operator added (``whisper:/path``, ``ctc:/path``), offered beside the served CTC judges
    asr_specs: list[str] = field(default_factory=list)
    #: the speaker judge for SIM (``resemblyzer`` or ``wavlm-sv:/path``)
    speaker_spec: str = "resemblyzer"

    def asr_choices(self) -> list[str]:
        """What the TTS judges offer for PER/WER: the served CTC judges by name, then the operator's specs."""
        return [*self.catalog.names("judge"), *self.asr_specs]

    def asr_spec(self, choice: str) -> str:
        """The judge spec of an ASR choice (:class:`Refused` for anything not offered)."""
        if choice in self.asr_specs:
            return choice
        return f"ctc:{self.entry('judge', choice, 'ASR judge').path}"

    def entry(self, kind: str, name: str, what: str) -> Entry:
        """The catalog entry ``name`` of ``kind``; :class:`Refused` for a name the app does not offer."""
        found = self.catalog.find(kind, name) if name else None
        if found is None:
            article = "an" if what[:1].lower() in "aeiou" else "a"
            raise Refused(f"choose {article} {what}" if not name else
                          f"refused: {name!r} is not {article} {what} this app serves")
        return found

    def job(self, kind: str, settings: dict[str, Any]) -> Path:
        """A fresh folder ``out/<kind>/<UTC time>-<8 hex>/`` holding ``job.json`` with ``settings``."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        folder = self.out / kind / f"{stamp}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        atomic_write_text(folder / "job.json", json.dumps({"kind": kind, **settings}, indent=2, default=str) + "\n")
        return folder


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "item"


# --- inputs -------------------------------------------------------------------------------------

def manifest_items(ws: Workspace, manifest_name: str) -> list[tuple[str, int]]:
    """``(label, index)`` of the first utterances of a served manifest (for a picker)."""
    entry = ws.entry("manifest", manifest_name, "manifest")
    data = Manifest.read(entry.path)
    items = []
    for index, u in enumerate(data):
        if index >= MAX_LISTED_UTTERANCES:
            break
        words = f": {u.text[:50]}" if u.text else (f": {u.caption[:50]}" if u.caption else "")
        items.append((f"{index:04d} {u.audio}{words}", index))
    return items


def manifest_utterance(ws: Workspace, manifest_name: str, index: int) -> tuple[Path, str]:
    """The audio path (checked by the guard) and text of utterance ``index`` of a served manifest."""
    entry = ws.entry("manifest", manifest_name, "manifest")
    data = Manifest.read(entry.path)
    if not 0 <= int(index) < len(data):
        raise Refused(f"{manifest_name}: no utterance {index}")
    path = ws.guard.check(data.audio_path(int(index)), "audio file")
    return path, data[int(index)].text or ""


def input_audio(ws: Workspace, audio: str | None) -> Path:
    """The audio of a request: a file under a served folder (a picked manifest utterance) as it is, anything else
    (an upload or a recording) only after :func:`~semlat.app.guard.check_upload` (size limit, readable audio)."""
    if not audio:
        raise Refused("give audio: upload or record a file, or pick an utterance of a manifest")
    try:
        served = ws.guard.check(audio, "audio file")
    except Refused:
        check_upload(audio, ws.max_upload_mb)
        return Path(audio)
    if not served.is_file():
        raise Refused(f"{audio}: no such file")
    return served


# --- reconstruct & compare ------------------------------------------------------------------------

@dataclass
class Reconstruction:
    """One model's result: its listening file (at the model's output rate), spectrogram, latent image and scores."""

    model: str
    audio: Path
    spectrogram: Path
    latents: Path
    scores: dict[str, float | None]
    info: str


def _stage(progress: Progress, index: int, count: int, low: float, high: float, desc: str) -> Callable[[int, int], None]:
    """A chunk-loop callback that reports model ``index`` of ``count`` between ``low`` and ``high`` of its share."""

    def report(done: int, total: int) -> None:
        progress((index + low + (high - low) * done / max(1, total)) / count, f"{desc} (chunk {done} of {total})")

    return report


def reconstruct_compare(ws: Workspace, audio: Path, model_names: Sequence[str], metrics: Sequence[str] | None = None,
                        progress: Progress = _quiet) -> tuple[Path, Path, list[Reconstruction]]:
    """Encode and decode ``audio`` with every chosen latent space; score each reconstruction against the input
    at the model's input rate (``semlat eval recon``'s convention). Returns the job folder, the input's
    spectrogram and one :class:`Reconstruction` per model, in the order given."""
    if not model_names:
        raise Refused("choose at least one latent space")
    entries = [ws.entry("space", name, "latent space") for name in model_names]
    groups = [g for g in GROUPS if metrics is None or g in metrics]  # none ticked: no metrics
    job = ws.job("reconstruct", {"input": str(audio), "models": [str(e.path) for e in entries], "metrics": groups})
    original, rate = load_audio(audio)  # [1, N] at the file's rate, read once
    input_spec = plots.spectrogram(original[0].numpy(), rate, job / "input.png", "input")
    suite = ws.models.get("metrics", ",".join(groups)) if groups else None
    results = []
    for k, entry in enumerate(entries):
        progress(k / len(entries), f"{entry.name}: loading")
        space = ws.models.get("space", entry.path)
        reference = resample(original, rate, space.input_rate)  # [1, N'] at the model's rate, as load_audio gives
        start = time.perf_counter()
        latents = space.encode(reference[None], _stage(progress, k, len(entries), 0.1, 0.4, f"{entry.name}: encoding"))
        decoded = space.decode(latents, _stage(progress, k, len(entries), 0.4, 0.7, f"{entry.name}: decoding")).cpu()
        seconds = time.perf_counter() - start
        n_out = round(reference.shape[-1] * space.output_rate / space.input_rate)
        heard = decoded[0, :, :n_out]
        scored = resample(decoded, space.output_rate, space.input_rate) if space.output_rate != space.input_rate \
            else decoded
        scored = scored[0, 0, : reference.shape[-1]]
        name = f"{k:02d}-{_slug(entry.name)}"
        wav = save_audio(job / f"{name}.wav", heard, space.output_rate)
        spec = plots.spectrogram(heard[0].numpy(), space.output_rate, job / f"{name}-spectrogram.png", entry.name)
        image = plots.latent_image(latents[0].cpu().numpy(), space.frame_rate, job / f"{name}-latents.png",
                                   f"{entry.name}: {space.latent_dim} x {space.frame_rate:g} Hz")
        progress((k + 0.8) / len(entries), f"{entry.name}: scoring")
        scores = {}
        if suite is not None:
            scores = {column: finite_or_none(value) for column, value in suite(scored, reference[0], space.input_rate).items()}
        info = (f"{space.latent_dim} x {space.frame_rate:g} Hz ({space.latent_dim * space.frame_rate:g} floats/s), "
                f"{space.input_rate} -> {space.output_rate} Hz, {seconds:.2f} s")
        results.append(Reconstruction(entry.name, wav, spec, image, scores, info))
    rows = [{"model": r.model, "latents": r.info, **r.scores} for r in results]
    atomic_write_text(job / "scores.json", json.dumps(rows, indent=2, allow_nan=False) + "\n")
    progress(1.0, "done")
    return job, input_spec, results


def score_table(results: Sequence[Reconstruction]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows (one per model) of the reconstruction metrics, labelled as ``eval recon`` labels them."""
    columns = [c for c in COLUMNS if any(c in r.scores for r in results)]
    headers = ["model", *[f"{COLUMNS[c].label} ({'↑' if COLUMNS[c].higher_is_better else '↓'})" for c in columns]]
    rows = [[r.model, *[None if r.scores.get(c) is None else round(r.scores[c], 4) for c in columns]] for r in results]
    return headers, rows


# --- latents --------------------------------------------------------------------------------------

def latent_report(ws: Workspace, model_name: str, manifest_name: str, split: str | None = None,
                  max_utterances: int | None = 100, alignments_name: str | None = None,
                  recompute: bool = False) -> tuple[Path, dict[str, Any]]:
    """``semlat eval latents`` for a served model and manifest, computed once into
    ``out/latents/<model>--<manifest>--<split>--<n>/`` and read back from there on later calls."""
    model = ws.entry("space", model_name, "latent space")
    manifest = ws.entry("manifest", manifest_name, "manifest")
    alignments = ws.entry("alignments", alignments_name, "alignments file") if alignments_name else None
    key = "--".join(_slug(x) for x in (model.name, manifest.name, split or "all", str(max_utterances or "all"),
                                       alignments.name if alignments else "no-alignments"))
    folder = ws.out / "latents" / key
    if (folder / "report.json").is_file() and not recompute:
        return folder, read_report(folder)
    from semlat.evaluation.latent_eval import evaluate_latents

    report = evaluate_latents(model.path, manifest.path, folder, split=split or None,
                              alignments=alignments.path if alignments else None, device=str(ws.models.device),
                              max_utterances=max_utterances)
    return folder, report


def probe_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The probes of a latents report with their chance levels, as table rows (percent)."""
    headers = ["probe", "accuracy %", "chance (majority) %", "balanced acc. %", "chance (1/classes) %", "classes",
               "test rows"]

    def pct(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 1)

    rows = []
    for name, p in report.get("probes", {}).items():
        if "skipped" in p:
            rows.append([f"{name} (skipped: {p['skipped']})", None, None, None, None, None, None])
            continue
        rows.append([name, pct(p["accuracy"]), pct(p["chance"]), pct(p["balanced_accuracy"]),
                     pct(p["balanced_chance"]), p["classes"], p["n_test"]])
    return headers, rows


# --- reports ----------------------------------------------------------------------------------------

def read_report(folder: Path) -> dict[str, Any]:
    """A report folder's ``report.json`` (an empty dict when it has only ``report.md``)."""
    path = folder / "report.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def report_view(ws: Workspace, folder: str) -> tuple[Path, str, list[Path]]:
    """A report folder (a served report's name, or a path the guard allows): its Markdown, with image links
    replaced by their captions, and the PNGs beside it (shown separately)."""
    entry = ws.catalog.find("report", folder)
    path = entry.path if entry is not None else ws.guard.check(folder, "report folder")
    if path.is_file():
        path = path.parent
    if not (path / "report.md").is_file():
        raise Refused(f"{folder}: no report.md in this folder")
    text = (path / "report.md").read_text(encoding="utf-8")
    text = _IMAGE.sub(lambda m: f"*(figure: {m.group(1) or m.group(2)}, shown below)*", text)
    images = sorted(p for p in path.glob("*.png") if p.is_file())
    return path, text, images


def compare(ws: Workspace, folders: Sequence[str]) -> str:
    """``semlat eval compare`` of served ``eval recon`` / ``eval latents`` report folders, as Markdown."""
    if len(folders) < 1:
        raise Refused("choose one or more reports to compare")
    from semlat.evaluation.compare import compare_reports

    paths = []
    for name in folders:
        entry = ws.catalog.find("report", name)
        paths.append(entry.path if entry is not None else ws.guard.check(name, "report folder"))
    try:
        return compare_reports(paths, [Path(n).as_posix() for n in folders])
    except (KeyError, TypeError) as err:
        raise DataError(f"these reports cannot be compared ({err})") from None


# --- generation -------------------------------------------------------------------------------------

@dataclass
class Generated:
    """A generated clip: its file, spectrogram, (for TTA) latent image, and the figures measured on it."""

    audio: Path
    spectrogram: Path
    figures: dict[str, Any]
    latents: Path | None = None


def judge_tts(ws: Workspace, audio: torch.Tensor, rate: int, text: str, prompt: Path, asr: str | None,
              speaker: bool, mos: bool) -> dict[str, Any]:
    """The offline judges' figures for one generated clip: PER or WER/CER with the ASR judge ``asr`` (a served CTC
    judge's name or an operator's spec, :meth:`Workspace.asr_choices`), SIM against the prompt with the workspace's
    speaker judge, and DNSMOS, as ``semlat eval tts`` computes them."""
    from semlat.evaluation.dnsmos import FIGURES as MOS_FIGURES
    from semlat.evaluation.generation_eval import TTS_COLUMNS, ListedAudio, asr_columns, score_clip

    clip = resample(audio.reshape(1, -1), rate, JUDGE_RATE)[0].numpy() if rate != JUDGE_RATE else audio.numpy()
    asr_judge = ws.models.get("asr", ws.asr_spec(asr)) if asr else None
    speaker_judge = ws.models.get("speaker", ws.speaker_spec) if speaker else None
    mos_judge = ws.models.get("mos", "dnsmos") if mos else None
    columns = asr_columns(asr_judge) + (["sim"] if speaker_judge else []) + (list(MOS_FIGURES) if mos_judge else [])
    if not columns:
        return {}
    hypothesis = asr_judge.transcribe([clip], JUDGE_RATE)[0] if asr_judge else None
    row = score_clip(ListedAudio("generated", Path("generated.wav"), text, None, prompt), clip, hypothesis, columns,
                     speaker_judge, "en-us", mos_judge)
    figures: dict[str, Any] = {TTS_COLUMNS[name].label: value for name, value in row["scores"].items()}
    if hypothesis is not None:
        figures[f"transcript ({asr_judge.units})"] = hypothesis
    for name, reason in row["undefined"].items():
        figures[f"{TTS_COLUMNS[name].label} undefined"] = reason
    return figures


def tts(ws: Workspace, model_name: str, prompt: Path, prompt_text: str, text: str, *, steps: int = 32,
        guidance: float = 3.0,
        sway: float = -1.0, speed: float = 1.0, seed: int | None = None, asr: str | None = None,
        speaker: bool = True, mos: bool = False, progress: Progress = _quiet) -> Generated:
    """Zero-shot TTS with a served TTS model (``semlat tts``'s settings), then the chosen judges on the result."""
    from semlat.generation.synthesis import synthesize

    entry = ws.entry("tts", model_name, "TTS model")
    settings = {"model": str(entry.path), "prompt": str(prompt), "prompt_text": prompt_text, "text": text,
                "steps": steps, "guidance": guidance, "sway": sway, "speed": speed, "seed": seed, "asr": asr, "speaker": speaker,
                "mos": mos}
    progress(0.0, f"{entry.name}: loading")
    loaded = ws.models.get("tts", entry.path)
    progress(0.2, f"{entry.name}: generating ({steps} steps)")
    audio = synthesize(loaded, text, prompt, prompt_text, steps=int(steps), guidance=float(guidance), sway=float(sway),
                       speed=float(speed), seed=seed)
    job = ws.job("tts", settings)
    rate = loaded.space.output_rate
    wav = save_audio(job / "generated.wav", audio.reshape(1, -1), rate)
    spec = plots.spectrogram(audio.numpy(), rate, job / "spectrogram.png", f"{entry.name}: {text[:60]}")
    progress(0.8, "judging")
    figures = {"seconds": round(audio.shape[-1] / rate, 3),
               **judge_tts(ws, audio, rate, text, prompt, asr, speaker, mos)}
    atomic_write_text(job / "figures.json", json.dumps(figures, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    progress(1.0, "done")
    return Generated(wav, spec, figures)


def tta(ws: Workspace, model_name: str, caption: str, seconds: float | None = None, *, steps: int | None = None,
        guidance: float | None = None, decode_steps: int | None = None, seed: int | None = None,
        progress: Progress = _quiet) -> Generated:
    """Text-to-audio with a served TTA model (``semlat tta``'s settings): the audio, its spectrogram and latents."""
    from semlat.generation.captioned import decode_latents, generate_latents

    entry = ws.entry("tta", model_name, "text-to-audio model")
    progress(0.0, f"{entry.name}: loading")
    loaded = ws.models.get("tta", entry.path)
    seconds = float(seconds or loaded.model.config.max_seconds)
    settings = {"model": str(entry.path), "caption": caption, "seconds": seconds, "steps": steps, "guidance": guidance,
                "decode_steps": decode_steps, "seed": seed}
    progress(0.1, f"{entry.name}: sampling latents")
    latents = generate_latents(loaded, caption, seconds, steps=steps, guidance=guidance, seed=seed)
    progress(0.6, "decoding")
    audio = decode_latents(loaded, latents, seconds, seed=seed,
                           decode_options={"steps": int(decode_steps)} if decode_steps else None)
    job = ws.job("tta", settings)
    rate = loaded.space.output_rate
    wav = save_audio(job / "generated.wav", audio.reshape(1, -1), rate)
    spec = plots.spectrogram(audio.numpy(), rate, job / "spectrogram.png", caption[:70])
    image = plots.latent_image(latents[0].float().cpu().numpy(), loaded.space.frame_rate, job / "latents.png",
                               f"generated latents: {loaded.space.latent_dim} x {loaded.space.frame_rate:g} Hz")
    x = audio.numpy().astype(np.float64)
    figures = {"seconds": round(len(x) / rate, 3), "peak": round(float(np.abs(x).max()), 4),
               "rms dBFS": round(float(10 * np.log10(np.mean(x ** 2) + 1e-12)), 2), "sample rate": rate}
    atomic_write_text(job / "figures.json", json.dumps(figures, indent=2) + "\n")
    progress(1.0, "done")
    return Generated(wav, spec, figures, image)
