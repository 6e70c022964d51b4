"""SemanticVocoder as a latent space: a frozen Dasheng encoder's 25 Hz frames, vocoded by flow matching.

``encode(audio [B, 1, N] at 16 kHz) -> [B, D, N // 640]``: :class:`~semlat.semantic.dasheng.Dasheng`'s frames
of the channel mean, transposed (no projection). The reference's wrapper takes 24 kHz audio and resamples it
with torchaudio's default sinc kernel; semlat reads audio at 16 kHz directly (files are resampled once, by
soxr), and :func:`~semlat.audio.processing.sinc_resample` reproduces the reference's kernel where parity
matters (the tests measure how far soxr is from it). ``decode(latents, steps=..., seed=...) -> [B, 1, F · 960]`` at 24 kHz:
:meth:`~semlat.vocoders.flow_vocoder.FlowVocoder.generate` (Euler, clamped, peak-limited). The decoder
samples, so ``seed`` fixes its noise (the chunk loop derives one per chunk) and ``steps`` trades speed for
quality (``config.steps`` by default: 8 on the sine grid, chosen from the steps-vs-quality table in the README;
``steps=200, schedule="uniform"`` is the reference's decode).

The model folder holds both (keys ``encoder.*`` and ``generator.*``); ``semlat import semantic-vocoder``
makes one from the released generator and an imported Dasheng.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.latent_space import check_decode_options
from semlat.semantic.dasheng import SAMPLE_RATE as DASHENG_RATE
from semlat.semantic.dasheng import Dasheng, DashengConfig
from semlat.vocoders.flow_vocoder import SCHEDULES, FlowVocoder, FlowVocoderConfig

DECODE_OPTIONS = ("steps", "seed", "schedule")


@dataclass
class SemanticVocoderConfig:
    """The encoder's and the generator's configs and the decoder's default steps and time schedule."""

    encoder: DashengConfig = field(default_factory=DashengConfig)
    generator: FlowVocoderConfig = field(default_factory=FlowVocoderConfig)
    steps: int = 8  # with the sine grid: level with 32 uniform steps on the demo's vocoder (README)
    schedule: str = "sine"

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, DashengConfig):
            self.encoder = from_dict(DashengConfig, self.encoder, "semantic vocoder config 'encoder'")
        if not isinstance(self.generator, FlowVocoderConfig):
            self.generator = from_dict(FlowVocoderConfig, self.generator, "semantic vocoder config 'generator'")

    def validate(self, where: str = "semantic vocoder config") -> None:
        if self.encoder.embed_dim != self.generator.latent_dim:
            raise ConfigError(f"{where}: the encoder gives {self.encoder.embed_dim}-d frames but the generator "
                              f"reads {self.generator.latent_dim}")
        if self.steps < 1:
            raise ConfigError(f"{where}: steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{where}: schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


class SemanticVocoder(FromConfig, nn.Module):
    """See the module docstring."""

    def __init__(self, config: SemanticVocoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Dasheng(config.encoder)
        self.generator = FlowVocoder(config.generator)
        self.input_rate = DASHENG_RATE
        self.output_rate = config.generator.sampling_rate
        self.latent_dim = config.encoder.embed_dim
        self.frame_rate = config.generator.frame_rate

    config_class = SemanticVocoderConfig
    config_where = "semantic vocoder config"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    @torch.no_grad()
    def encode(self, audio: Tensor) -> Tensor:
        """``audio [B, C, N]`` at 16 kHz -> latents ``[B, D, T]`` (25 Hz)."""
        return rearrange(self.encoder(audio.mean(dim=1)), "b t d -> b d t")

    @torch.no_grad()
    def decode(self, latents: Tensor, **options: Any) -> Tensor:
        """Latents ``[B, D, F]`` -> audio ``[B, 1, F · hop]``; options ``steps``, ``seed`` and ``schedule``."""
        check_decode_options(options, DECODE_OPTIONS, "a SemanticVocoder")
        if latents.dim() != 3 or latents.shape[1] != self.latent_dim:
            raise ConfigError(f"this SemanticVocoder decodes [B, {self.latent_dim}, T] latents, got "
                              f"{list(latents.shape)}")
        audio = self.generator.generate(latents, steps=int(options.get("steps") or self.config.steps),
                                        seed=options.get("seed"),
                                        schedule=options.get("schedule") or self.config.schedule)
        return rearrange(audio, "b t -> b 1 t")
