"""A training-free vocoder: log-mel -> linear magnitude (non-negative least squares) -> Griffin-Lim.

It inverts the BigVGAN-style mel of a :class:`~semlat.audio.spectral.MelConfig` (``center=False``
with ``(n_fft - hop) / 2`` reflect padding, natural-log magnitude mel) well enough to hear what a mel
autoencoder reconstructs when no trained neural vocoder is at hand (the demo, tests). It is a
stand-in: speech comes out intelligible but phasey; use BigVGAN-v2 for real work.

Steps for a log-mel ``[B, M, T]``:

1. ``exp`` gives the linear mel; the magnitude spectrum ``S [B, F, T]`` minimising
   ``||fb S - mel||`` with ``S >= 0`` is approximated by ``pinv(fb) mel`` (clamped) refined with
   multiplicative (Lee–Seung) updates;
2. fast Griffin-Lim (momentum 0.99, fixed zero-phase start, so decoding is deterministic) recovers
   a phase; the inverse STFT (``center=True``) is delayed by ``hop / 2`` samples so frame ``t`` sits
   where the mel's frame ``t`` was taken (centred at ``t * hop + hop / 2``). Output: ``[B, 1, T * hop]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semlat.audio.filterbanks import mel_filterbank
from semlat.audio.spectral import MelConfig, MelSpectrogram, mel_preset
from semlat.config import FromConfig, from_dict
from semlat.errors import ConfigError
from semlat.latent_space import OneRateSpace, check_decode_options


@dataclass
class GriffinLimConfig:
    """``mel``: the mel to invert (a :class:`MelConfig` as a dict; default BigVGAN-v2 22 kHz / 80).
    ``iterations``: Griffin-Lim iterations; ``nnls_iterations``: magnitude refinement steps."""

    mel: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(mel_preset("bigvgan_22k_80")))
    iterations: int = 32
    momentum: float = 0.99
    nnls_iterations: int = 20

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GriffinLimConfig:
        return from_dict(cls, data, "griffin_lim config")


class GriffinLimVocoder(FromConfig, OneRateSpace, nn.Module):
    """Log-mel ``[B, M, T]`` -> waveform ``[B, 1, T * hop]``; also a LatentSpace whose latent is the mel."""

    def __init__(self, config: GriffinLimConfig | None = None):
        super().__init__()
        self.config = config or GriffinLimConfig()
        mel = MelConfig(**self.config.mel)
        if mel.log != "ln" or mel.power != 1.0:
            raise ConfigError("griffin_lim inverts natural-log magnitude mels (log 'ln', power 1)")
        self.mel_config = mel
        self.mel = MelSpectrogram(mel)
        fb = mel_filterbank(mel.sample_rate, mel.n_fft, mel.n_mels, mel.f_min, mel.f_max, mel.mel_scale, mel.norm,
                            mel.filterbank)
        self.register_buffer("filterbank", fb, persistent=False)
        self.register_buffer("pinv", torch.linalg.pinv(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(mel.win_length or mel.n_fft), persistent=False)
        self.sample_rate = mel.sample_rate
        self.latent_dim = mel.n_mels
        self.frame_rate = mel.sample_rate / mel.hop_length

    config_class = GriffinLimConfig

    def encode(self, audio: Tensor) -> Tensor:
        """``[B, 1, N]`` -> log-mel ``[B, M, N / hop]`` (N is right-padded to a multiple of hop)."""
        hop = self.mel_config.hop_length
        audio = F.pad(audio, (0, -audio.shape[-1] % hop))
        return self.mel(audio[:, 0])

    def magnitude(self, log_mel: Tensor) -> Tensor:
        """Log-mel ``[B, M, T]`` -> non-negative linear magnitude ``[B, n_fft/2+1, T]``."""
        mel = torch.exp(log_mel.float())
        spec = (self.pinv @ mel).clamp(min=1e-6)
        fb = self.filterbank
        numerator = fb.T @ mel
        for _ in range(self.config.nnls_iterations):
            spec = spec * numerator / (fb.T @ (fb @ spec) + 1e-10)
        return spec

    def decode(self, log_mel: Tensor, **options: Any) -> Tensor:
        """Log-mel ``[B, M, T]`` -> ``[B, 1, T * hop]`` (deterministic: zero initial phase)."""
        check_decode_options(options, where="Griffin-Lim")
        c = self.mel_config
        spec = self.magnitude(log_mel)
        frames = spec.shape[-1]
        length = frames * c.hop_length
        stft = {"n_fft": c.n_fft, "hop_length": c.hop_length, "win_length": c.win_length or c.n_fft,
                "window": self.window, "center": True}
        angles = torch.ones_like(spec, dtype=torch.complex64)
        previous = torch.zeros_like(angles)
        factor = self.config.momentum / (1 + self.config.momentum)
        for _ in range(self.config.iterations):
            audio = torch.istft(spec * angles, length=length, **stft)
            rebuilt = torch.stft(audio, return_complex=True, **stft)[..., :frames]
            angles = rebuilt - factor * previous
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        audio = torch.istft(spec * angles, length=length, **stft)
        shift = c.hop_length // 2
        audio = F.pad(audio, (shift, 0))[:, :length]
        return audio[:, None, :]

    def forward(self, log_mel: Tensor) -> Tensor:
        return self.decode(log_mel)
