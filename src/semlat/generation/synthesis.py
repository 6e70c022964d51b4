"""Zero-shot TTS from a TTS model folder: prompt audio + prompt text + text -> speech (``semlat tts``).

1. The prompt is read at the latent space's input rate, cut to its first ``MAX_PROMPT_SECONDS`` (F5-TTS clips
   at ~12 s) and encoded: ``Tp`` latent frames.
2. The model's text is ``prompt_text + " " + text`` (``f5`` conditioning), or the bounded ``text`` alone spread
   over the positions the model's own duration predictor gives each unit at the prompt's pace (``durations``
   conditioning, :mod:`.aligned`; ``seconds`` scales them to that total, ``speed`` divides them).
3. Duration (``f5`` conditioning; F5-TTS's rule): ``Tp + Tp / bytes(prompt_text) · bytes(text) / speed`` frames (UTF-8 bytes), or
   a duration model's prediction adapted to the prompt's pace (:mod:`.duration`, ``--duration-model``), or
   ``seconds`` given explicitly; never fewer than the text's tokens + 1 backbone positions (the sampler's
   floor, as F5's: the backbone aligns one token per position, so a 5.4 Hz latent speaks at most 5.4 tokens
   a second unless the model splits each frame into ``frame_split`` positions; see :mod:`.tts`).
4. The flow sampler continues the prompt (``steps``, ``guidance``, sway, ``seed``); the frames after
   the prompt are decoded by the latent space at its output rate.
5. Long text goes in sentence chunks (F5's byte budget), joined with 0.15 s linear cross-fades; a batch list
   (JSONL or TSV of prompt, prompt_text, text, output) runs row by row, or with ``batch`` > 1 its one-chunk rows
   sorted by length and generated several at a time, each as it would come out alone (:func:`synthesize_list`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from semlat.audio.io import AudioStreamWriter, load_audio
from semlat.checkpoints import CONFIG_NAME, load_model_of_type, read_model_meta, resolve_model_folder
from semlat.chunking import chunk_seed
from semlat.data.listing import read_rows
from semlat.errors import AudioError, ConfigError, DataError
from semlat.generation.ar_tts import ARTTSModel
from semlat.generation.duration import DurationPredictor
from semlat.generation.tts import TTSModel
from semlat.inference import LoadedSpace, load

MAX_PROMPT_SECONDS = 12.0
SILENT_RMS = 1e-4
CROSSFADE_SECONDS = 0.15
LIST_FIELDS = ("prompt", "prompt_text", "text", "output")
_SENTENCE = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")


#: the longest an autoregressive model may speak without --seconds: this many times F5's ratio rule, plus
#: AR_EXTRA_SECONDS (a model that never emits its stop ends there; the report says so)
AR_LENGTH_FACTOR = 2.0
AR_EXTRA_SECONDS = 2.0
#: the shortest an autoregressive model may speak (its stop is not heard before): AR_MIN_SECONDS, or
#: AR_MIN_FRACTION of F5's ratio rule when that is longer (a weak stop classifier hears the end of the prompt's
#: utterance as the end of speech; the length of the text says there is more to say)
AR_MIN_SECONDS = 0.25
AR_MIN_FRACTION = 0.5
#: the streaming decoder's window (``--stream``)
STREAM_CHUNK_SECONDS = 1.0


@dataclass
class LoadedTTS:
    """A TTS model (the flow-matching DiT or the autoregressive model) and the latent space it generates in."""

    model: TTSModel | ARTTSModel
    space: LoadedSpace
    folder: Path
    duration: DurationPredictor | None = None  # None: F5's ratio rule


PRECISIONS = ("fp32", "bf16")


def load_tts(folder: str | os.PathLike, device: str | torch.device = "auto", space: str | None = None,
             duration: str | os.PathLike | None = None, precision: str = "fp32") -> LoadedTTS:
    """The TTS model at ``folder`` (a model folder or a training run) and its latent space (``space``
    overrides the path the model records); ``duration``: a duration model folder (or run) to set lengths
    instead of F5's ratio rule; ``precision`` ``bf16`` stores the backbone's weights in bf16
    (:meth:`~semlat.generation.tts.TTSModel.half_backbone`). A space of other rates or size is a one-line
    ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    found = resolve_model_folder(folder)
    autoregressive = (found / CONFIG_NAME).is_file() and read_model_meta(found).get("model_type") == "ar_tts"
    if autoregressive:
        if duration is not None:
            raise ConfigError(f"{found}: an autoregressive TTS sets its own length (its stop classifier, or its "
                              "own duration predictor); --duration-model is for the flow-matching DiT")
        if precision != "fp32":
            raise ConfigError(f"{found}: an autoregressive TTS runs in fp32 (precision {precision!r})")
        model, _, resolved = load_model_of_type(folder, ARTTSModel, "ar_tts", "a TTS model",
                                                "train one with `semlat train ar_tts/...`")
    else:
        model, _, resolved = load_model_of_type(folder, TTSModel, "tts", "a TTS model",
                                                "train one with `semlat train tts/...`")
    path = Path(space or model.config.space)
    if not path.is_absolute():
        path = resolved / path
    if not str(model.config.space) and space is None:
        raise ConfigError(f"{resolved}: the model records no latent space; give one (--space)")
    loaded = load(path, device)
    if loaded.latent_dim != model.config.latent_dim or abs(loaded.frame_rate - model.config.frame_rate) > 1e-6:
        raise ConfigError(f"{path}: a latent space of {loaded.latent_dim} x {loaded.frame_rate:g} Hz, but the TTS "
                          f"model {resolved} was trained on {model.config.latent_dim} x {model.config.frame_rate:g} Hz")
    predictor = None
    if duration is not None:
        predictor, _, _ = load_model_of_type(duration, DurationPredictor, "duration", "a duration model",
                                             "train one with `semlat train duration/...`")
        predictor = predictor.to(loaded.device).eval()
    model = model.to(loaded.device).eval()
    if precision == "bf16":
        model.half_backbone(torch.bfloat16)
    return LoadedTTS(model, loaded, resolved, predictor)


def split_text(text: str, max_bytes: int) -> list[str]:
    """``text`` in chunks of at most ``max_bytes`` UTF-8 bytes, cut after sentence punctuation (a sentence
    longer than that is a chunk of its own)."""
    sentences = [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]
    chunks: list[str] = []
    for sentence in sentences:
        if chunks and len((chunks[-1] + " " + sentence).encode("utf-8")) <= max_bytes:
            chunks[-1] = chunks[-1] + " " + sentence
        else:
            chunks.append(sentence)
    return chunks


def crossfade_concat(pieces: list[torch.Tensor], fade: int) -> torch.Tensor:
    """Join ``[N_i]`` signals, overlapping each pair by ``fade`` samples with a linear cross-fade."""
    out = pieces[0]
    for piece in pieces[1:]:
        n = min(fade, out.shape[-1], piece.shape[-1])
        if n == 0:
            out = torch.cat([out, piece])
            continue
        ramp = torch.linspace(0.0, 1.0, n, dtype=out.dtype)
        out = torch.cat([out[:-n], out[-n:] * (1 - ramp) + piece[:n] * ramp, piece[n:]])
    return out


@dataclass
class Job:
    """One chunk to speak: the prompt's latents ``[1, Tp, D]`` and text, the text, its seed and pace."""

    latents: torch.Tensor
    prompt_text: str
    text: str
    seed: int | None
    speed: float = 1.0
    seconds: float | None = None


def _check_options(steps: int, guidance: float, sway: float, speed: float, seconds: float | None) -> None:
    if speed <= 0:
        raise ConfigError(f"--speed must be positive, got {speed}")
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {seconds}")
    if guidance < 0:
        raise ConfigError(f"--guidance must be >= 0, got {guidance}")
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    if not -1 <= sway <= 1:
        raise ConfigError(f"--sway must be within [-1, 1], got {sway}")


def _window_frames(model: TTSModel | ARTTSModel) -> int:
    """The most latent frames a model's window holds (the AR model's: its context in patches)."""
    if isinstance(model, ARTTSModel):
        return model.config.max_positions * model.config.patch
    return model.config.max_frames


def plan(tts: LoadedTTS, text: str, prompt: str | os.PathLike, prompt_text: str, *, speed: float = 1.0,
         seed: int | None = None, seconds: float | None = None) -> list[Job]:
    """The chunks of one request (checked; the prompt read and encoded): long text is cut into sentence chunks
    (F5-TTS's rule: at most ``bytes(prompt_text) / prompt seconds · (22 - prompt seconds) · speed`` UTF-8 bytes
    each), each with its own seed derived from ``seed``; with ``seconds`` the text is one chunk of that length."""
    space = tts.space
    if not text or not text.strip():
        raise ConfigError("--text is empty")
    if not prompt_text or not prompt_text.strip():
        raise ConfigError("--prompt-text is empty (the transcript of the prompt audio)")
    audio, _ = load_audio(prompt, space.input_rate)
    audio = audio[:, : round(MAX_PROMPT_SECONDS * space.input_rate)]
    if float(audio.square().mean().sqrt()) < SILENT_RMS:
        raise AudioError(f"{prompt}: the prompt is silent")
    latents = rearrange(space.encode(audio[None]), "1 d t -> 1 t d")
    window = _window_frames(tts.model)
    if latents.shape[1] >= window:
        raise AudioError(f"{prompt}: {latents.shape[1]} latent frames, longer than the model's window ({window})")
    prompt_seconds = audio.shape[-1] / space.input_rate
    max_bytes = max(1, int(len(prompt_text.encode("utf-8")) / prompt_seconds * max(1.0, 22 - prompt_seconds) * speed))
    chunks = [text.strip()] if seconds is not None else split_text(text, max_bytes)
    return [Job(latents, prompt_text, chunk, None if seed is None else (seed if len(chunks) == 1 else
                                                                       chunk_seed(seed, index)), speed, seconds)
            for index, chunk in enumerate(chunks)]


def synthesize(tts: LoadedTTS, text: str, prompt: str | os.PathLike, prompt_text: str, *, steps: int = 32,
               guidance: float = 3.0, sway: float = -1.0, speed: float = 1.0, seed: int | None = None,
               seconds: float | None = None, method: str = "euler") -> torch.Tensor:
    """Speech ``[N]`` at ``tts.space.output_rate`` that says ``text`` in the voice of ``prompt``.

    Long text is generated in chunks (:func:`plan`), joined with 0.15 s linear cross-fades. ``steps`` flow steps
    (the AR model's: head steps per patch), ``guidance`` in :mod:`semlat.sampling`'s convention (F5-TTS's
    ``cfg_strength`` 2 is 3)."""
    pieces: list[torch.Tensor] = []
    speak(tts, pieces.append, text=text, prompt=prompt, prompt_text=prompt_text, steps=steps, guidance=guidance,
          sway=sway, speed=speed, seed=seed, seconds=seconds, method=method)
    return torch.cat(pieces)


@dataclass
class Spoken:
    """What :func:`speak` measured: wall seconds to the first audio handed on and in all (from the call, prompt
    reading and encoding included), seconds of audio, and per chunk of text whether an autoregressive model
    ended it with its stop classifier (False: the length limit did; None: a DiT, whose length is planned)."""

    first_audio_seconds: float | None = None
    wall_seconds: float = 0.0
    audio_seconds: float = 0.0
    stopped: list[bool | None] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return self.wall_seconds / max(self.audio_seconds, 1e-9)


class _Joiner:
    """:func:`crossfade_concat` done incrementally: :meth:`add` samples of the current piece, :meth:`next_piece`
    to start the next one, :meth:`close` at the end; what is final goes to ``sink`` as it becomes final (the
    last ``fade`` samples of the output so far are held back for the next piece's cross-fade)."""

    def __init__(self, fade: int, sink: Callable[[torch.Tensor], None]):
        self.fade, self.sink = fade, sink
        self.held = torch.zeros(0)
        self.start: torch.Tensor | None = None  # the new piece's first samples, while its cross-fade waits

    def add(self, samples: torch.Tensor) -> None:
        if self.start is not None:
            self.start = torch.cat([self.start, samples])
            if self.start.shape[0] < min(self.fade, self.held.shape[0]):
                return
            samples, self.start = self._blend(), None
        combined = torch.cat([self.held, samples])
        cut = max(0, combined.shape[0] - self.fade)
        if cut:
            self.sink(combined[:cut])
        self.held = combined[cut:]

    def _blend(self) -> torch.Tensor:
        """The held samples cross-faded with the new piece's start (``crossfade_concat``'s arithmetic)."""
        held, start = self.held, self.start
        n = min(self.fade, held.shape[0], start.shape[0])
        self.held = torch.zeros(0)
        if n == 0:
            return torch.cat([held, start])
        ramp = torch.linspace(0.0, 1.0, n, dtype=start.dtype)
        return torch.cat([held[:-n], held[-n:] * (1 - ramp) + start[:n] * ramp, start[n:]])

    def next_piece(self) -> None:
        if self.start is not None:  # the previous piece was shorter than the fade
            self.held, self.start = self._blend(), None
        self.start = torch.zeros(0)

    def close(self) -> None:
        if self.start is not None:
            self.held, self.start = self._blend(), None
        if self.held.shape[0]:
            self.sink(self.held)
        self.held = torch.zeros(0)


def speak(tts: LoadedTTS, sink: Callable[[torch.Tensor], None], *, text: str, prompt: str | os.PathLike,
          prompt_text: str, steps: int = 32, guidance: float = 3.0, sway: float = -1.0, speed: float = 1.0,
          seed: int | None = None, seconds: float | None = None, method: str = "euler",
          stream: float | None = None) -> Spoken:
    """Say ``text`` in the voice of ``prompt``, handing the audio ``[n]`` to ``sink`` piece by piece; returns what
    was measured (:class:`Spoken`).

    Without ``stream`` each chunk of text is generated, then decoded whole, then handed on (what
    :func:`synthesize` returns). With ``stream`` (seconds) the latents are decoded in windows of that many seconds
    (:meth:`~semlat.inference.LoadedSpace.decode_stream`) as they become available: the AR model's as it generates
    them patch by patch, the DiT's after its sampler; so the first audio comes before the end (the joined
    audio equals the non-streamed one to the decoder's chunking tolerance)."""
    began = time.perf_counter()
    report = Spoken()
    _check_options(steps, guidance, sway, speed, seconds)
    if stream is not None and stream <= 0:
        raise ConfigError(f"--stream-seconds must be positive, got {stream}")
    autoregressive = isinstance(tts.model, ARTTSModel)
    if autoregressive and speed != 1.0 and tts.model.duration is None:
        raise ConfigError("--speed: an autoregressive TTS keeps its own pace (its stop classifier ends the speech)")
    rate = tts.space.output_rate

    def hand_on(audio: torch.Tensor) -> None:
        if audio.numel() and report.first_audio_seconds is None:
            report.first_audio_seconds = time.perf_counter() - began
        report.audio_seconds += audio.numel() / rate
        sink(audio)

    joiner = _Joiner(round(CROSSFADE_SECONDS * rate), hand_on)
    jobs = plan(tts, text, prompt, prompt_text, speed=speed, seed=seed, seconds=seconds)
    sampling = {"steps": steps, "guidance": guidance, "sway": sway, "method": method}
    for index, job in enumerate(jobs):
        if index:
            joiner.next_piece()
        decoder = tts.space.decode_stream(stream) if stream is not None else None

        def frames_out(latents: torch.Tensor, decoder: Any = decoder) -> None:  # [1, n, D] raw
            audio = decoder.push(rearrange(latents, "1 t d -> 1 d t"))
            if audio is not None:
                joiner.add(audio[0, 0].cpu())

        if autoregressive:
            latents, stopped = _generate_ar(tts, job, on_frames=frames_out if decoder is not None else None,
                                            **sampling)
            report.stopped.append(stopped)
        else:
            latents = generate_latents(tts, [job], **sampling)[0]
            report.stopped.append(None)
            if decoder is not None:
                step = max(1, round(stream * tts.space.frame_rate))
                for start in range(0, latents.shape[-1], step):
                    frames_out(rearrange(latents[..., start:start + step], "1 d t -> 1 t d"))
        if decoder is None:
            joiner.add(tts.space.decode(latents)[0, 0].cpu())
        else:
            rest = decoder.finish()
            if rest is not None:
                joiner.add(rest[0, 0].cpu())
    joiner.close()
    report.wall_seconds = time.perf_counter() - began
    return report


def _pad_rows(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    width = max(int(r.shape[0]) for r in rows)
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def _ratio_frames(job: Job, frame_rate: float) -> int:
    """F5-TTS's length rule: the prompt's frames per UTF-8 byte of its text, times the text's bytes, over speed."""
    frames = job.latents.shape[1]
    ratio = frames / max(1, len(job.prompt_text.encode("utf-8")))
    return int(ratio * len(job.text.encode("utf-8")) / job.speed)


def _planned(model: TTSModel | ARTTSModel, job: Job, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``durations`` conditioning: the bounded ids ``[1, Nt]`` of ``job.text`` and their positions ``[1, Nt]`` from
    the model's duration predictor, at the prompt's pace (or ``job.seconds`` in all, over ``job.speed``)."""
    row = model.bounded_ids([job.text.strip()]).to(device)
    planned = model.plan_durations(row, model.bounded_ids([job.prompt_text.strip()]).to(device),
                                   job.latents.shape[1] / model.config.frame_rate, job.speed, job.seconds)
    return row, planned


def _generate_ar(tts: LoadedTTS, job: Job, *, steps: int, guidance: float, sway: float, method: str,
                 on_frames: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, bool | None]:
    """One chunk with the autoregressive model: its generated latents ``[1, D, T]`` (the prompt's not included)
    and whether the stop classifier ended them (None with ``durations`` conditioning: the duration predictor's
    plan at the prompt's pace, or ``job.seconds``, sets the length). Length limit: ``job.seconds``, or
    :data:`AR_LENGTH_FACTOR` times F5's ratio rule plus :data:`AR_EXTRA_SECONDS`; its stop is heard from
    :data:`AR_MIN_FRACTION` of the rule on (at least :data:`AR_MIN_SECONDS`). ``sway`` does not apply (the head's
    grid is uniform)."""
    model, space = tts.model, tts.space
    rate = model.config.frame_rate
    if model.duration is not None:  # durations conditioning: the length its own predictor plans
        row, planned = _planned(model, job, space.device)
        result = model.generate(job.latents.to(space.device), row, token_durations=planned, steps=steps,
                                guidance=guidance, method=method, seed=job.seed, on_frames=on_frames)
        return rearrange(result.out[:, result.prompt_frames:], "1 t d -> 1 d t"), result.stopped
    if job.seconds is not None:
        limit = max(1, round(job.seconds * rate))
    else:
        limit = round(AR_LENGTH_FACTOR * _ratio_frames(job, rate) + AR_EXTRA_SECONDS * rate)
    ids = model.front_end().encode([job.prompt_text.strip() + " " + job.text.strip()]).to(space.device)
    if not bool((ids >= 0).any()):
        raise ConfigError("the text has no unit this model knows")
    shortest = round(max(AR_MIN_SECONDS * rate, AR_MIN_FRACTION * _ratio_frames(job, rate)))
    result = model.generate(job.latents.to(space.device), ids, max_frames=limit,
                            min_frames=min(limit, shortest), steps=steps, guidance=guidance,
                            method=method, seed=job.seed, on_frames=on_frames)
    generated = result.out[:, result.prompt_frames:]
    if generated.shape[1] == 0:
        raise ConfigError("nothing was generated")
    return rearrange(generated, "1 t d -> 1 d t"), result.stopped


def generate_batch(tts: LoadedTTS, jobs: list[Job], *, steps: int, guidance: float, sway: float,
                   method: str) -> list[torch.Tensor]:
    """Several chunks in one sampler run -> their audio ``[N_i]`` (:func:`generate_latents`, then decoded)."""
    return [tts.space.decode(latents)[0, 0].cpu()
            for latents in generate_latents(tts, jobs, steps=steps, guidance=guidance, sway=sway, method=method)]


def generate_latents(tts: LoadedTTS, jobs: list[Job], *, steps: int, guidance: float, sway: float,
                     method: str) -> list[torch.Tensor]:
    """Several chunks in one sampler run -> their generated latents ``[1, D, T_i]``. Prompts, texts and lengths may
    differ: each row is padded and masked, and draws its own noise from its own seed, so a row comes out as it
    would alone (up to float rounding). An autoregressive model runs the rows one after another."""
    space, model = tts.space, tts.model
    if isinstance(model, ARTTSModel):
        return [_generate_ar(tts, job, steps=steps, guidance=guidance, sway=sway, method=method)[0] for job in jobs]
    device = space.device
    lens = torch.tensor([job.latents.shape[1] for job in jobs], device=device)
    prompt = torch.zeros(len(jobs), int(lens.max()), jobs[0].latents.shape[-1], device=device)
    for i, job in enumerate(jobs):
        prompt[i, : job.latents.shape[1]] = job.latents[0].to(device)
    seeds = [job.seed for job in jobs]
    options = {"steps": steps, "guidance": guidance, "sway_coef": sway, "method": method,
               "seed": seeds if len(jobs) > 1 else seeds[0]}
    if model.duration is not None:  # durations conditioning: the model's own per-token durations
        ids, positions = [], []
        room = model.config.max_frames * model.config.frame_split
        for job in jobs:
            row, planned = _planned(model, job, device)
            if int(planned.sum()) > room - job.latents.shape[1] * model.config.frame_split:
                raise ConfigError(f"the text needs {int(planned.sum()) / model.config.position_rate:.1f} s, more than "
                                  f"the model's window leaves after the prompt; give a shorter text or prompt")
            ids.append(row[0])
            positions.append(planned[0])
        result = model.generate(prompt, _pad_rows(ids, -1), None, lens=lens, token_durations=_pad_rows(positions, 0),
                                **options)
        empty = "nothing to generate: the text was given no time"
    else:
        ids = model.front_end().encode([job.prompt_text.strip() + " " + job.text.strip() for job in jobs]).to(device)
        totals = []
        for job in jobs:
            frames, seconds = job.latents.shape[1], job.seconds
            if seconds is None and tts.duration is not None:
                seconds = tts.duration.target_seconds(job.prompt_text, frames / model.config.frame_rate, job.text,
                                                      job.speed)
            if seconds is not None:
                total = frames + round(seconds * model.config.frame_rate)
            else:
                total = frames + _ratio_frames(job, model.config.frame_rate)
            totals.append(min(total, model.config.max_frames))
        result = model.generate(prompt, ids, torch.tensor(totals, device=device), lens=lens, **options)
        empty = "nothing to generate: the duration does not exceed the prompt"
    out = []
    for i in range(len(jobs)):
        generated = rearrange(result.out[i:i + 1, int(lens[i]):int(result.durations[i])], "1 t d -> 1 d t")
        if generated.shape[-1] == 0:
            raise ConfigError(empty)
        out.append(generated)
    return out


def read_tts_list(path: str | os.PathLike) -> list[dict[str, str]]:
    """A batch list: JSONL or TSV (with a header) of ``prompt``, ``prompt_text``, ``text``, ``output``; paths
    relative to the list's folder. One-line errors name the file and line."""
    path = Path(path)
    rows = read_rows(path, paths=("prompt", "output"))
    for number, row in enumerate(rows, start=1):
        missing = [k for k in LIST_FIELDS if not str(row.get(k) or "").strip()]
        if missing:
            raise DataError(f"{path}: row {number} lacks {', '.join(missing)} (each row needs {', '.join(LIST_FIELDS)})")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def synthesize_list(tts: LoadedTTS, listing: str | os.PathLike, *, seed: int | None = None, progress: bool = True,
                    batch: int = 1, steps: int = 32, guidance: float = 3.0, sway: float = -1.0, speed: float = 1.0,
                    seconds: float | None = None, method: str = "euler") -> list[Path]:
    """Every row of a batch list (:func:`read_tts_list`), with a progress bar; row ``i`` uses
    ``chunk_seed(seed, i)``. With ``batch`` > 1, rows of one chunk are sorted by length and generated ``batch``
    at a time (each row as it would come out alone: :func:`generate_batch`); longer texts run on their own.
    Returns the files written, in the list's order."""
    from tqdm import tqdm

    _check_options(steps, guidance, sway, speed, seconds)
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    rows = read_tts_list(listing)
    sampling = {"steps": steps, "guidance": guidance, "sway": sway, "method": method}
    written: dict[int, Path] = {}
    bar = tqdm(total=len(rows), desc="tts", unit="utt", disable=not progress or len(rows) < 2)
    singles: list[tuple[int, Job]] = []
    for index, row in enumerate(rows):
        row_seed = None if seed is None else chunk_seed(seed, index)
        jobs = plan(tts, row["text"], row["prompt"], row["prompt_text"], speed=speed, seed=row_seed, seconds=seconds)
        if batch > 1 and len(jobs) == 1:
            singles.append((index, jobs[0]))
            continue
        pieces = [generate_batch(tts, [job], **sampling)[0] for job in jobs]
        audio = crossfade_concat(pieces, round(CROSSFADE_SECONDS * tts.space.output_rate))
        written[index] = tts.space.save(audio, rows[index]["output"])
        bar.update(1)
    singles.sort(key=lambda item: item[1].latents.shape[1] + len(item[1].text.encode("utf-8")))
    for start in range(0, len(singles), batch):
        group = singles[start:start + batch]
        for (index, _), audio in zip(group, generate_batch(tts, [job for _, job in group], **sampling)):
            written[index] = tts.space.save(audio, rows[index]["output"])
            bar.update(1)
    bar.close()
    return [written[i] for i in range(len(rows))]


def synthesize_to_file(tts: LoadedTTS, out: str | os.PathLike, *, stream: float | None = None,
                       **options: Any) -> tuple[Path | str, Spoken]:
    """:func:`speak` into ``out`` (``.wav``/``.flac`` at the space's output rate; ``"-"``: raw 16-bit PCM on
    stdout), written as the audio comes (:class:`~semlat.audio.io.AudioStreamWriter`: a temporary file renamed
    when complete). Returns the path and what was measured."""
    writer = AudioStreamWriter(out, tts.space.output_rate)
    try:
        report = speak(tts, writer.write, stream=stream, **options)
    except BaseException as err:
        writer.abort(err)
    # (the metadata holds what the audio is, not timings, so that one seed gives one file byte for byte)
    return writer.close(json.dumps({"semlat_tts": {"stopped": report.stopped}})), report
