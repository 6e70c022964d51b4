"""Latent zero-shot TTS: an F5-TTS-style flow-matching backbone over any latent space.

A :class:`TTSModel` is the backbone (``transformer.*``: :class:`~semlat.generation.dit.DiT` or
:class:`~semlat.generation.unett.UNetT`), the text front-end's vocabulary and units, and the per-channel
statistics of the latents it was trained on (``latent_mean``/``latent_std``, buffers saved with the
weights: generation de-normalises without the store). It does not own a front-end: the latent space is
another model folder (``config.space``, a path; relative paths are relative to the TTS folder), loaded
with :func:`semlat.load`, whose rates and size must be the ones the model was trained on.

Shapes are time-major like F5's: latents ``[B, T, D]``. :meth:`TTSModel.loss` is the infilling objective
on normalised latents; :meth:`TTSModel.generate` continues raw prompt latents.

**Frame split** (``frame_split = k``, default 1): the backbone sees each latent frame as ``k`` consecutive
positions of ``D / k`` channels (``b t (k d) -> b (t k) d``, lossless). F5's backbone aligns text to frames by
padding the token sequence to the frame count and cutting what does not fit, so a latent slower than the
text (DC-VAE's 80 x 5.4 Hz against ~14 phoneme tokens a second) would lose most of its text; with ``k = 4``
the same latent is a 21.5 Hz sequence of 20 channels and keeps it all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.config import from_dict
from semlat.errors import ConfigError
from semlat.generation.dit import DiT, DiTConfig
from semlat.generation.flow import FlowConfig, Sampled, infilling_loss, sample
from semlat.generation.text import UNITS, TextFrontEnd, Vocab
from semlat.generation.unett import UNetT, UNetTConfig

BACKBONES = {"DiT": (DiT, DiTConfig), "UNetT": (UNetT, UNetTConfig)}


@dataclass
class TTSConfig:
    """What a TTS model folder's ``config`` holds."""

    backbone: str = "DiT"
    arch: dict[str, Any] = field(default_factory=dict)
    units: str = "chars"
    vocab: list[str] = field(default_factory=lambda: [" "])
    language: str = "en-us"
    space: str = ""
    latent_dim: int = 100
    frame_rate: float = 93.75
    max_frames: int = 4096
    flow: FlowConfig = field(default_factory=FlowConfig)
    frame_split: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.flow, FlowConfig):  # read back from config.json
            self.flow = from_dict(FlowConfig, self.flow, "tts config 'flow'")

    def validate(self, where: str = "tts config") -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"{where}: backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.units not in UNITS:
            raise ConfigError(f"{where}: units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if self.frame_split < 1 or self.latent_dim % self.frame_split:
            raise ConfigError(f"{where}: frame_split must divide the latent size {self.latent_dim}, "
                              f"got {self.frame_split}")


class TTSModel(nn.Module):
    """See the module docstring."""

    def __init__(self, config: TTSConfig):
        super().__init__()
        config.validate()
        self.config = config
        model_cls, arch_cls = BACKBONES[config.backbone]
        arch = from_dict(arch_cls, {**config.arch, "mel_dim": config.latent_dim // config.frame_split,
                                    "text_num_embeds": len(config.vocab)}, "tts config 'arch'")
        self.transformer = model_cls(arch)
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    @classmethod
    def from_config(cls, config: TTSConfig | dict[str, Any]) -> TTSModel:
        if not isinstance(config, TTSConfig):
            config = from_dict(TTSConfig, config, "tts config")
        return cls(config)

    def front_end(self) -> TextFrontEnd:
        return TextFrontEnd(Vocab(self.config.vocab), self.config.units, self.config.language)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-5))

    def normalize(self, latents: Tensor) -> Tensor:
        """Raw ``[B, T, D]`` -> zero mean, unit variance per channel (the training statistics)."""
        return (latents - self.latent_mean) / self.latent_std

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.latent_std + self.latent_mean

    def split(self, latents: Tensor) -> Tensor:
        """``[B, T, D]`` -> the backbone's ``[B, T k, D / k]`` (module docstring)."""
        return rearrange(latents, "b t (k d) -> b (t k) d", k=self.config.frame_split)

    def merge(self, sequence: Tensor) -> Tensor:
        """The backbone's ``[B, N, D / k]`` -> ``[B, ceil(N / k), D]`` (zero-padded to whole frames)."""
        k = self.config.frame_split
        sequence = nn.functional.pad(sequence, (0, 0, 0, -sequence.shape[1] % k))
        return rearrange(sequence, "b (t k) d -> b t (k d)", k=k)

    def forward(self, latents: Tensor, text: Tensor, lens: Tensor, draws: dict[str, Any] | None = None
                ) -> tuple[Tensor, dict[str, Any]]:
        """The infilling objective on normalised ``latents [B, T, D]`` with ``text [B, Nt]`` ids: ``(loss,
        details)`` (the forward pass, so that training runs it through DDP). ``draws["x0"]``, when given, is
        noise of the latents' shape."""
        k = self.config.frame_split
        if draws is not None and "x0" in draws:
            draws = {**draws, "x0": self.split(draws["x0"])}
        return infilling_loss(self.transformer, self.split(latents), text, lens * k, draws=draws,
                              flow=self.config.flow)

    loss = forward

    @torch.no_grad()
    def generate(self, prompt: Tensor, text: Tensor, durations: Tensor, lens: Tensor | None = None,
                 **sampling: Any) -> Sampled:
        """Continue raw ``prompt [B, Tp, D]`` latents to ``durations [B]`` frames; ``sampling`` are
        :func:`~semlat.generation.flow.sample`'s options (steps, cfg, sway_coef, method, seed, y0).
        Returns the de-normalised result ``[B, T, D]`` (prompt frames included) and durations in latent
        frames (with ``frame_split`` > 1, a trajectory given by ``keep_trajectory`` stays in the backbone's
        split layout)."""
        k = self.config.frame_split
        if lens is not None:
            lens = lens * k
        result = sample(self.transformer, self.split(self.normalize(prompt)), text, durations * k, lens, **sampling)
        result.out = self.denormalize(self.merge(result.out))
        result.durations = torch.div(result.durations + k - 1, k, rounding_mode="floor")
        return result

    def info(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
