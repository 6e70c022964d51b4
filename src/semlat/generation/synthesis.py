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
   (JSONL or TSV of prompt, prompt_text, text, output) runs row by row (:func:`synthesize_list`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from semlat.audio.io import load_audio
from semlat.checkpoints import load_model_of_type
from semlat.chunking import chunk_seed
from semlat.data.listing import read_rows
from semlat.errors import AudioError, ConfigError, DataError
from semlat.generation.duration import DurationPredictor
from semlat.generation.tts import TTSModel
from semlat.inference import LoadedSpace, load

MAX_PROMPT_SECONDS = 12.0
SILENT_RMS = 1e-4
CROSSFADE_SECONDS = 0.15
LIST_FIELDS = ("prompt", "prompt_text", "text", "output")
_SENTENCE = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")


@dataclass
class LoadedTTS:
    """A TTS model and the latent space it generates in."""

    model: TTSModel
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
    model, _, resolved = load_model_of_type(folder, TTSModel, "tts", "a TTS model", "train one with `semlat train tts/...`")
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


def synthesize(tts: LoadedTTS, text: str, prompt: str | os.PathLike, prompt_text: str, *, steps: int = 32,
               guidance: float = 3.0, sway: float = -1.0, speed: float = 1.0, seed: int | None = None,
               seconds: float | None = None, method: str = "euler") -> torch.Tensor:
    """Speech ``[N]`` at ``tts.space.output_rate`` that says ``text`` in the voice of ``prompt``.

    Long text is generated in chunks (F5-TTS's rule: at most ``bytes(prompt_text) / prompt seconds ·
    (22 - prompt seconds) · speed`` UTF-8 bytes each, cut at sentences), each with its own seed derived from
    ``seed``, joined with 0.15 s linear cross-fades. With ``seconds`` the text is one chunk of that length.
    ``steps`` flow steps, ``guidance`` in :mod:`semlat.sampling`'s convention (F5-TTS's ``cfg_strength`` 2 is 3)."""
    space = tts.space
    if not text or not text.strip():
        raise ConfigError("--text is empty")
    if not prompt_text or not prompt_text.strip():
        raise ConfigError("--prompt-text is empty (the transcript of the prompt audio)")
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
    audio, _ = load_audio(prompt, space.input_rate)
    audio = audio[:, : round(MAX_PROMPT_SECONDS * space.input_rate)]
    if float(audio.square().mean().sqrt()) < SILENT_RMS:
        raise AudioError(f"{prompt}: the prompt is silent")
    latents = rearrange(space.encode(audio[None]), "1 d t -> 1 t d")
    if latents.shape[1] >= tts.model.config.max_frames:
        raise AudioError(f"{prompt}: {latents.shape[1]} latent frames, longer than the model's window "
                         f"({tts.model.config.max_frames})")
    prompt_seconds = audio.shape[-1] / space.input_rate
    max_bytes = max(1, int(len(prompt_text.encode("utf-8")) / prompt_seconds * max(1.0, 22 - prompt_seconds) * speed))
    chunks = [text.strip()] if seconds is not None else split_text(text, max_bytes)
    pieces = []
    for index, chunk in enumerate(chunks):
        chunk_seed_value = None if seed is None else (seed if len(chunks) == 1 else chunk_seed(seed, index))
        pieces.append(_generate(tts, latents, prompt_text, chunk, steps=steps, guidance=guidance, sway=sway, speed=speed,
                                seed=chunk_seed_value, seconds=seconds, method=method))
    return crossfade_concat(pieces, round(CROSSFADE_SECONDS * space.output_rate))


def _generate(tts: LoadedTTS, latents: torch.Tensor, prompt_text: str, text: str, *, steps: int, guidance: float,
              sway: float, speed: float, seed: int | None, seconds: float | None, method: str) -> torch.Tensor:
    """One chunk: the prompt's latents ``[1, Tp, D]`` continued by ``text``, decoded -> ``[N]``."""
    space, model = tts.space, tts.model
    prompt_frames = latents.shape[1]
    if model.duration is not None:  # durations conditioning: the model's own per-token durations
        ids = model.bounded_ids([text.strip()]).to(space.device)
        positions = model.plan_durations(ids, model.bounded_ids([prompt_text.strip()]).to(space.device),
                                         prompt_frames / model.config.frame_rate, speed, seconds)
        room = model.config.max_frames * model.config.frame_split - prompt_frames * model.config.frame_split
        if int(positions.sum()) > room:
            raise ConfigError(f"the text needs {int(positions.sum()) / model.config.position_rate:.1f} s, more than "
                              f"the model's window leaves after the prompt; give a shorter text or prompt")
        result = model.generate(latents.to(space.device), ids, None, token_durations=positions, steps=steps, guidance=guidance,
                                sway_coef=sway, seed=seed, method=method)
        generated = rearrange(result.out[:, prompt_frames:int(result.durations[0])], "1 t d -> 1 d t")
        if generated.shape[-1] == 0:
            raise ConfigError("nothing to generate: the text was given no time")
        return space.decode(generated)[0, 0].cpu()
    ids = model.front_end().encode([prompt_text.strip() + " " + text.strip()]).to(space.device)
    if seconds is None and tts.duration is not None:
        seconds = tts.duration.target_seconds(prompt_text, prompt_frames / model.config.frame_rate, text, speed)
    if seconds is not None:
        total = prompt_frames + round(seconds * model.config.frame_rate)
    else:
        ratio = prompt_frames / max(1, len(prompt_text.encode("utf-8")))
        total = prompt_frames + int(ratio * len(text.encode("utf-8")) / speed)
    total = min(total, model.config.max_frames)
    result = model.generate(latents.to(space.device), ids, torch.tensor([total], device=space.device),
                            steps=steps, guidance=guidance, sway_coef=sway, seed=seed, method=method)
    generated = rearrange(result.out[:, prompt_frames:int(result.durations[0])], "1 t d -> 1 d t")
    if generated.shape[-1] == 0:
        raise ConfigError("nothing to generate: the duration does not exceed the prompt")
    return space.decode(generated)[0, 0].cpu()


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
                    **options: Any) -> list[Path]:
    """Every row of a batch list (:func:`read_tts_list`), with a progress bar; row ``i`` uses
    ``chunk_seed(seed, i)``. Returns the files written."""
    from tqdm import tqdm

    rows = read_tts_list(listing)
    written = []
    for index, row in enumerate(tqdm(rows, desc="tts", unit="utt", disable=not progress or len(rows) < 2)):
        row_seed = None if seed is None else chunk_seed(seed, index)
        written.append(synthesize_to_file(tts, row["output"], text=row["text"], prompt=row["prompt"],
                                          prompt_text=row["prompt_text"], seed=row_seed, **options))
    return written


def synthesize_to_file(tts: LoadedTTS, out: str | os.PathLike, **options: Any) -> Path:
    """:func:`synthesize` and write ``out`` (``.wav``/``.flac``) at the space's output rate."""
    return tts.space.save(synthesize(tts, **options), out)
