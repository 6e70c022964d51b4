"""Zero-shot TTS from a TTS model folder: prompt audio + prompt text + text -> speech (``semlat tts``).

1. The prompt is read at the latent space's input rate, cut to its first ``MAX_PROMPT_SECONDS`` (F5-TTS clips
   at ~12 s) and encoded: ``Tp`` latent frames.
2. The model's text is ``prompt_text + " " + text``.
3. Duration (F5-TTS's rule): ``Tp + Tp / bytes(prompt_text) · bytes(text) / speed`` frames (UTF-8 bytes), or
   ``seconds`` given explicitly; never fewer than the text's tokens + 1 (the sampler's floor, as F5's: the
   backbone aligns one token per frame, so a 5.4 Hz latent cannot speak faster than 5.4 tokens a second).
4. The flow sampler continues the prompt (``nfe`` steps, guidance ``cfg``, sway, ``seed``); the frames after
   the prompt are decoded by the latent space at its output rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from einops import rearrange

from semlat.audio.io import load_audio
from semlat.checkpoints import load_model_of_type
from semlat.errors import AudioError, ConfigError
from semlat.generation.tts import TTSModel
from semlat.inference import LoadedSpace, load

MAX_PROMPT_SECONDS = 12.0
SILENT_RMS = 1e-4


@dataclass
class LoadedTTS:
    """A TTS model and the latent space it generates in."""

    model: TTSModel
    space: LoadedSpace
    folder: Path

    @property
    def device(self) -> torch.device:
        return self.space.device


def load_tts(folder: str | os.PathLike, device: str | torch.device = "auto", space: str | None = None) -> LoadedTTS:
    """The TTS model at ``folder`` (a model folder or a training run) and its latent space (``space``
    overrides the path the model records). A space of other rates or size is a one-line ConfigError."""
    model, _, resolved = load_model_of_type(folder, "tts", "a TTS model", "train one with `semlat train tts/...`")
    path = Path(space or model.config.space)
    if not path.is_absolute():
        path = resolved / path
    if not str(model.config.space) and space is None:
        raise ConfigError(f"{resolved}: the model records no latent space; give one (--space)")
    loaded = load(path, device)
    if loaded.latent_dim != model.config.latent_dim or abs(loaded.frame_rate - model.config.frame_rate) > 1e-6:
        raise ConfigError(f"{path}: a latent space of {loaded.latent_dim} x {loaded.frame_rate:g} Hz, but the TTS "
                          f"model {resolved} was trained on {model.config.latent_dim} x {model.config.frame_rate:g} Hz")
    return LoadedTTS(model.to(loaded.device).eval(), loaded, resolved)


def synthesize(tts: LoadedTTS, text: str, prompt: str | os.PathLike, prompt_text: str, *, nfe: int = 32,
               cfg: float = 2.0, sway: float = -1.0, speed: float = 1.0, seed: int | None = None,
               seconds: float | None = None, method: str = "euler") -> torch.Tensor:
    """Speech ``[N]`` at ``tts.space.output_rate`` that says ``text`` in the voice of ``prompt``."""
    space, model = tts.space, tts.model
    if not text or not text.strip():
        raise ConfigError("--text is empty")
    if not prompt_text or not prompt_text.strip():
        raise ConfigError("--prompt-text is empty (the transcript of the prompt audio)")
    if speed <= 0:
        raise ConfigError(f"--speed must be positive, got {speed}")
    audio, _ = load_audio(prompt, space.input_rate)
    audio = audio[:, : round(MAX_PROMPT_SECONDS * space.input_rate)]
    if float(audio.square().mean().sqrt()) < SILENT_RMS:
        raise AudioError(f"{prompt}: the prompt is silent")
    latents = rearrange(space.encode(audio[None]), "1 d t -> 1 t d")
    prompt_frames = latents.shape[1]
    if prompt_frames >= model.config.max_frames:
        raise AudioError(f"{prompt}: {prompt_frames} latent frames, longer than the model's window "
                         f"({model.config.max_frames})")
    ids = model.front_end().encode([prompt_text.strip() + " " + text.strip()]).to(space.device)
    if seconds is not None:
        total = prompt_frames + round(seconds * model.config.frame_rate)
    else:
        ratio = prompt_frames / max(1, len(prompt_text.encode("utf-8")))
        total = prompt_frames + int(ratio * len(text.encode("utf-8")) / speed)
    total = min(total, model.config.max_frames)
    result = model.generate(latents.to(space.device), ids, torch.tensor([total], device=space.device),
                            steps=nfe, cfg=cfg, sway_coef=sway, seed=seed, method=method)
    generated = rearrange(result.out[:, prompt_frames:int(result.durations[0])], "1 t d -> 1 d t")
    if generated.shape[-1] == 0:
        raise ConfigError("nothing to generate: the duration does not exceed the prompt")
    return space.decode(generated)[0, 0].cpu()


def synthesize_to_file(tts: LoadedTTS, out: str | os.PathLike, **options: Any) -> Path:
    """:func:`synthesize` and write ``out`` (``.wav``/``.flac``) at the space's output rate."""
    return tts.space.save(synthesize(tts, **options), out)
