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

**Conditioning** (``conditioning``): ``f5`` (default; imports and ``tts/paper``) is F5-TTS's implicit alignment
above. ``durations`` gives the backbone frame-aligned text instead (:mod:`.aligned`): the text is the bounded
token sequence ``[" ", tokens..., " "]`` and each token is repeated over its positions, taken in training from
forced alignments and at generation from the model's own duration predictor (``duration.*``, a
:class:`~semlat.generation.duration.DurationPredictor` trained in the same steps on log token seconds), whose
seconds follow the prompt's pace. The prompt's frames carry no text (``-1``), in training every frame outside
the infilled span.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.generation.aligned import expand
from semlat.generation.dit import DiT, DiTConfig
from semlat.generation.flow import FlowConfig, Sampled, infilling_loss, sample
from semlat.generation.latent_text import CONDITIONINGS, LatentTextModel
from semlat.generation.unett import UNetT, UNetTConfig
from semlat.text.frontend import UNITS

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
    conditioning: str = "f5"
    duration: dict[str, Any] = field(default_factory=dict)  # DurationPredictor sizes ("durations" conditioning)
    duration_weight: float = 1.0

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
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"{where}: conditioning must be one of {', '.join(CONDITIONINGS)}, "
                              f"got {self.conditioning!r}")

    @property
    def position_rate(self) -> float:
        """Backbone positions a second (latent frames a second times ``frame_split``)."""
        return self.frame_rate * self.frame_split


class _InDtype(nn.Module):
    """A backbone whose weights are stored in another dtype (bf16): its inputs are cast to that dtype and its
    velocity back to float32, so that the sampler integrates in float32."""

    def __init__(self, backbone: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.backbone, self.dtype = backbone, dtype

    def forward(self, x: Tensor, cond: Tensor, text: Tensor, time: Tensor, **options: Any) -> Tensor:
        return self.backbone(x.to(self.dtype), cond.to(self.dtype), text, time, **options).float()


class TTSModel(FromConfig, LatentTextModel):
    """See the module docstring."""

    def __init__(self, config: TTSConfig):
        super().__init__()
        config.validate()
        self.config = config
        model_cls, arch_cls = BACKBONES[config.backbone]
        arch = from_dict(arch_cls, {**config.arch, "mel_dim": config.latent_dim // config.frame_split,
                                    "text_num_embeds": len(config.vocab)}, "tts config 'arch'")
        self.transformer = model_cls(arch)
        self.init_stats(config.latent_dim)
        self.init_duration()

    config_class = TTSConfig
    config_where = "tts config"

    def split(self, latents: Tensor) -> Tensor:
        """``[B, T, D]`` -> the backbone's ``[B, T k, D / k]`` (module docstring)."""
        return rearrange(latents, "b t (k d) -> b (t k) d", k=self.config.frame_split)

    def merge(self, sequence: Tensor) -> Tensor:
        """The backbone's ``[B, N, D / k]`` -> ``[B, ceil(N / k), D]`` (zero-padded to whole frames)."""
        k = self.config.frame_split
        sequence = nn.functional.pad(sequence, (0, 0, 0, -sequence.shape[1] % k))
        return rearrange(sequence, "b (t k) d -> b t (k d)", k=k)

    def forward(self, latents: Tensor, text: Tensor, lens: Tensor, draws: dict[str, Any] | None = None,
                token_durations: Tensor | None = None) -> tuple[Tensor, dict[str, Any]]:
        """The infilling objective on normalised ``latents [B, T, D]`` with ``text [B, Nt]`` ids: ``(loss,
        details)`` (the forward pass, so that training runs it through DDP). ``draws["x0"]``, when given, is
        noise of the latents' shape. With ``durations`` conditioning, ``text`` is the bounded token sequence and
        ``token_durations [B, Nt]`` its positions; the loss adds the duration predictor's (``duration_weight``
        times the mean squared error of log seconds), and the details hold both parts."""
        k = self.config.frame_split
        if draws is not None and "x0" in draws:
            draws = {**draws, "x0": self.split(draws["x0"])}
        sequence = self.split(latents)
        if self.duration is None:
            return infilling_loss(self.transformer, sequence, text, lens * k, draws=draws, flow=self.config.flow)
        if token_durations is None:
            raise ConfigError("a TTS model with durations conditioning trains on per-token durations")
        frames = expand(text, token_durations, length=sequence.shape[1])
        loss, details = infilling_loss(self.transformer, sequence, frames, lens * k, draws=draws,
                                       flow=self.config.flow, aligned_text=True)
        duration_loss = self.duration_loss(text, token_durations)
        details.update(flow_loss=loss.detach(), duration_loss=duration_loss.detach())
        return loss + self.config.duration_weight * duration_loss, details

    loss = forward

    @torch.no_grad()
    def generate(self, prompt: Tensor, text: Tensor, durations: Tensor | None, lens: Tensor | None = None,
                 token_durations: Tensor | None = None, **sampling: Any) -> Sampled:
        """Continue raw ``prompt [B, Tp, D]`` latents to ``durations [B]`` frames; ``sampling`` are
        :func:`~semlat.generation.flow.sample`'s options (steps, guidance, sway_coef, method, seed, y0).
        Returns the de-normalised result ``[B, T, D]`` (prompt frames included) and durations in latent
        frames (with ``frame_split`` > 1, a trajectory given by ``keep_trajectory`` stays in the backbone's
        split layout). With ``durations`` conditioning, ``text`` is the bounded sequence of the text to speak
        (not the prompt's), ``token_durations [B, Nt]`` its positions (:meth:`plan_durations`), and the total
        (``durations``, which may be None) is the prompt plus their sum. A backbone stored in bf16
        (:meth:`half_backbone`) runs in bf16 and the sampler in float32."""
        k = self.config.frame_split
        if lens is None:
            lens = torch.full((prompt.shape[0],), prompt.shape[1], dtype=torch.long, device=prompt.device)
        if self.duration is not None:
            if token_durations is None:
                raise ConfigError("a TTS model with durations conditioning generates from per-token durations")
            offset = lens * k
            total = offset + token_durations.sum(-1)
            text = expand(text, token_durations, offset=offset)
            durations = torch.div(total + k - 1, k, rounding_mode="floor")
        backbone = self.transformer
        dtype = next(backbone.parameters()).dtype
        if dtype != torch.float32:
            backbone = _InDtype(backbone, dtype)
        result = sample(backbone, self.split(self.normalize(prompt)), text, durations * k, lens * k, **sampling)
        result.out = self.denormalize(self.merge(result.out))
        result.durations = torch.div(result.durations + k - 1, k, rounding_mode="floor")
        return result

    def half_backbone(self, dtype: torch.dtype = torch.bfloat16) -> TTSModel:
        """Store the backbone's weights in ``dtype`` (inference: on CPUs with AVX-512 BF16 / AMX, bf16 products
        run about twice as fast as float32); statistics and the duration predictor stay float32."""
        self.transformer.to(dtype)
        return self

    def info(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
