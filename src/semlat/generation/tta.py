"""Text-to-audio by flow matching in any latent space (SemanticVocoder's second stage, on semlat's pieces).

A :class:`TTAModel` is the backbone (``backbone.*``: :class:`~semlat.generation.udit.UDiT`), the trainable
projection of the frozen caption encoder's states to the context width (``text_proj``; the reference's
``content_encoder.text_encoder.proj``) and the per-channel statistics of the latents it was trained on
(``latent_mean``/``latent_std``). The caption encoder (``config.text_encoder``) and the latent space
(``config.space``) are other folders, loaded by :mod:`semlat.generation.audio_generation`; relative paths are
relative to the model folder.

**Path** (semlat's convention, as the TTS's): ``x_t = (1 - t) x0 + t x1``, ``x0 ~ N(0, I)``, velocity ``x1 - x0``
on normalised channel-major latents ``[B, C, T]``. The backbone runs in the release's convention
(:meth:`TTAModel.velocity`: timestep ``1000 (1 - t)``, output ``x0 - x1``).

**Training** (:meth:`TTAModel.loss`): ``t = sigmoid(N(mean, std))`` (logit-normal), the caption's context
replaced by zeros with probability ``caption_drop`` per item, mean squared error of the velocity over each
item's valid frames.

**Sampling** (:meth:`TTAModel.generate`, with :mod:`semlat.sampling`): Euler over ``t_k = k / N`` bent by sway
sampling (``s = -1``), and classifier-free guidance ``v = u + w (c - u)`` (``w = 3.5``) where the unconditional
context is all zeros **after** the projection with the same mask, as the reference.

**Options for wide latents** (``flow.*``; the defaults are the release's): high-dimensional latents such as a
semantic encoder's 256-768 channels are what diffusion in representation-encoder latents (RAE, 2025; JiT, 2025)
found hard for a narrow network, and these are the two remedies they name besides width:

* ``prediction: data``: the backbone's output is read as the clean latents ``x̂1`` (not ``x0 - x1``); the
  velocity is ``(x̂1 - x_t) / max(1 - t, t_floor)`` and the loss stays the velocity's MSE (JiT's x-prediction
  with a v-loss). Clean latents lie near a low-dimensional set that a network narrower than the latent can
  still produce; noise-like velocities of the full width it cannot.
* ``shift`` (``α``): times moved toward the noise end, ``σ' = α σ / (1 + (α - 1) σ)`` with ``σ = 1 - t``, for the
  training draws and the sampling grid alike (SD3's / RAE's shift; after sway). ``shift_base > 0`` sets
  ``α = sqrt(C · frames / shift_base)`` from the latent's size (``C`` channels, ``frames`` of the window; RAE's
  dimension-dependent shift with base 4096): more values per clip need more time at high noise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.generation.udit import UDiT, UDiTConfig
from semlat.nn.linear import Linear
from semlat.sampling import guide, sample, shift, time_grid


@dataclass
class TTAFlow:
    """The objective's settings (caption dropout, logit-normal times) and the sampler's defaults."""

    caption_drop: float = 0.1
    logit_mean: float = 0.0
    logit_std: float = 1.0
    steps: int = 32
    guidance: float = 3.5  # semlat.sampling's convention (the release's own)
    sway_coef: float = -1.0
    prediction: str = "velocity"  # or "data" (module docstring)
    t_floor: float = 0.05
    shift: float = 1.0
    shift_base: float = 0.0  # > 0: shift = sqrt(channels · window frames / shift_base)

    def validate(self, where: str = "tta flow") -> None:
        if not 0.0 <= self.caption_drop < 1.0:
            raise ConfigError(f"{where}.caption_drop must be in [0, 1), got {self.caption_drop}")
        if self.steps < 1 or self.logit_std <= 0:
            raise ConfigError(f"{where}.steps and logit_std must be positive")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"{where}.prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        if not 0.0 < self.t_floor < 1.0 or self.shift <= 0 or self.shift_base < 0:
            raise ConfigError(f"{where}: t_floor must be in (0, 1), shift positive and shift_base >= 0")


PREDICTIONS = ("velocity", "data")


@dataclass
class TTAConfig:
    """What a text-to-audio model folder's ``config`` holds."""

    backbone: UDiTConfig = field(default_factory=UDiTConfig)
    text_dim: int = 1024
    text_encoder: str = ""
    space: str = ""
    frame_rate: float = 25.0
    max_seconds: float = 10.0
    flow: TTAFlow = field(default_factory=TTAFlow)

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, UDiTConfig):
            self.backbone = from_dict(UDiTConfig, self.backbone, "tta config 'backbone'")
        if not isinstance(self.flow, TTAFlow):  # folders of semlat < 0.2 (flow.cfg): checkpoints.MIGRATIONS
            self.flow = from_dict(TTAFlow, self.flow, "tta config 'flow'")

    def validate(self, where: str = "tta config") -> None:
        self.flow.validate(f"{where}: flow")
        if self.max_seconds <= 0 or self.frame_rate <= 0:
            raise ConfigError(f"{where}: max_seconds and frame_rate must be positive")

    @property
    def max_frames(self) -> int:
        return int(round(self.max_seconds * self.frame_rate))

    @property
    def latent_dim(self) -> int:
        return self.backbone.in_chans

    @property
    def time_shift(self) -> float:
        """The shift ``α`` in use: ``flow.shift``, or from the latent's size when ``flow.shift_base > 0``."""
        if self.flow.shift_base > 0:
            return math.sqrt(self.latent_dim * self.max_frames / self.flow.shift_base)
        return self.flow.shift


class TTAModel(FromConfig, nn.Module):
    """See the module docstring."""

    def __init__(self, config: TTAConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = UDiT(config.backbone)
        self.text_proj = Linear(config.text_dim, config.backbone.context_dim)
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    config_class = TTAConfig
    config_where = "tta config"

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-5))

    def normalize(self, latents: Tensor) -> Tensor:
        """Raw ``[B, C, T]`` -> zero mean, unit variance per channel (the training statistics)."""
        return (latents - self.latent_mean[:, None]) / self.latent_std[:, None]

    def denormalize(self, latents: Tensor) -> Tensor:
        return latents * self.latent_std[:, None] + self.latent_mean[:, None]

    def context(self, hidden: Tensor) -> Tensor:
        """The caption encoder's ``[B, L, text_dim]`` -> the backbone's context ``[B, L, context_dim]``."""
        return self.text_proj(hidden)

    def velocity(self, x: Tensor, t: Tensor, context: Tensor, text_mask: Tensor | None,
                 mask: Tensor | None = None) -> Tensor:
        """semlat's velocity ``x1 - x0`` at ``t [B]`` from the backbone (which takes ``1000 σ``, ``σ = 1 - t``,
        and predicts ``ε - z``; with ``prediction: data`` the clean latents, turned into a velocity)."""
        out = self.backbone(x, 1000.0 * (1.0 - t), context, text_mask, mask)
        if self.config.flow.prediction == "data":
            return (out - x) / (1.0 - t).clamp(min=self.config.flow.t_floor)[:, None, None]
        return -out

    def forward(self, latents: Tensor, lengths: Tensor, hidden: Tensor, text_mask: Tensor,
                draws: dict[str, Tensor] | None = None) -> Tensor:
        """The loss on normalised ``latents [B, C, T]`` (``lengths [B]`` valid frames) for captions encoded as
        ``hidden [B, L, text_dim]`` / ``text_mask [B, L]``. ``draws`` (``x0``, ``t``, ``drop``) fixes the
        randomness (drawn in that order otherwise)."""
        c = self.config.flow
        b = latents.shape[0]
        if draws is None:
            draws = {"x0": torch.randn_like(latents),
                     "t": shift(torch.sigmoid(torch.randn(b, device=latents.device) * c.logit_std
                                                    + c.logit_mean), self.config.time_shift),
                     "drop": torch.rand(b, device=latents.device) < c.caption_drop}
        x0, t, drop = draws["x0"], draws["t"], draws["drop"]
        context = self.context(hidden) * (~drop).to(hidden.dtype)[:, None, None]
        x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * latents
        valid = torch.arange(latents.shape[-1], device=latents.device)[None] < lengths[:, None]
        pred = self.velocity(x_t, t, context, text_mask, valid if bool((~valid).any()) else None)
        error = (pred.float() - (latents - x0).float()).square().mean(1)
        return error[valid].mean()

    loss = forward

    @torch.no_grad()
    def generate(self, hidden: Tensor, text_mask: Tensor, frames: int, *, steps: int | None = None,
                 guidance: float | None = None, sway_coef: float | None = None, seed: int | None = None,
                 noise: Tensor | None = None) -> Tensor:
        """Raw latents ``[B, C, frames]`` for encoded captions; ``noise [B, C, frames]`` or one generator
        seeded with ``seed`` for the batch (else the global one)."""
        c, flow = self.config, self.config.flow
        steps, guidance = steps or flow.steps, flow.guidance if guidance is None else guidance
        sway_coef = flow.sway_coef if sway_coef is None else sway_coef
        if frames < 1 or frames > c.max_frames:
            raise ConfigError(f"this model generates 1 to {c.max_frames} frames ({c.max_seconds:g} s), got {frames}")
        b = hidden.shape[0]
        if noise is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            noise = torch.randn(b, c.latent_dim, frames, generator=generator)
        x = noise.to(hidden.device, hidden.dtype)
        context = self.context(hidden)
        guided = guidance != 1.0  # w = 1 is the conditional velocity alone
        if guided:
            context = torch.cat([context, torch.zeros_like(context)])
            text_mask = torch.cat([text_mask, text_mask])

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            if not guided:
                return self.velocity(x, t.expand(b), context, text_mask)
            cond, uncond = self.velocity(torch.cat([x, x]), t.expand(2 * b), context, text_mask).chunk(2)
            return guide(cond, uncond, guidance)

        times = time_grid(steps, sway_coef=sway_coef, shift_alpha=c.time_shift, device=x.device)
        x = sample(velocity, x, times)
        return self.denormalize(x)

    def info(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
