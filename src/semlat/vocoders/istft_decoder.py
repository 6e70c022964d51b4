"""A Vocos-style decoder: frames ``[B, D, T]`` -> ConvNeXt backbone -> STFT magnitude and phase -> iSTFT.

::

    latents [B, D, T] --ConvNeXt (frame rate)--> [B, C, T] --x upsample (ConvTranspose1d)--> [B, C, uT]
        --Linear--> log-magnitude, phase [B, F, uT] --istft(n_fft, hop / u)--> audio [B, 1, T * hop]

Everything runs at a frame rate, not the audio rate, so it trains an order of magnitude faster on a
CPU than BigVGAN's upsampling stack; it is the decoder of semlat's *tiny* waveform VAE (the paper
configuration keeps BigVGAN-v2). Output is clamped to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from semlat.errors import ConfigError
from semlat.nn.convnext import ConvNeXtBackbone
from semlat.nn.istft import spectral_istft
from semlat.nn.linear import Linear


@dataclass
class ISTFTDecoderConfig:
    """``hop_length``: audio samples per input frame; ``upsample``: extra frames per input frame before
    the iSTFT (its hop is ``hop_length / upsample``, its FFT ``n_fft_ratio`` times that hop)."""

    channels: int = 256
    hidden: int = 768
    layers: int = 6
    upsample: int = 4
    n_fft_ratio: int = 4

    def istft_hop(self, hop_length: int) -> int:
        if hop_length % self.upsample:
            raise ConfigError(f"istft decoder: hop {hop_length} is not a multiple of upsample {self.upsample}")
        return hop_length // self.upsample


class ISTFTDecoder(nn.Module):
    """``[B, D, T] -> [B, 1, T * hop_length]``."""

    def __init__(self, latent_dim: int, hop_length: int, config: ISTFTDecoderConfig):
        super().__init__()
        self.config = config
        self.hop = config.istft_hop(hop_length)
        self.n_fft = config.n_fft_ratio * self.hop
        self.backbone = ConvNeXtBackbone(latent_dim, config.channels, config.hidden, config.layers)
        u = config.upsample
        self.upsample = (nn.ConvTranspose1d(config.channels, config.channels, 2 * u, stride=u, padding=u // 2)
                         if u > 1 else nn.Identity())
        self.out = Linear(config.channels, self.n_fft + 2)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, latents: Tensor) -> Tensor:
        frames = latents.shape[-1] * self.config.upsample
        h = self.upsample(self.backbone(latents))[..., :frames]
        log_mag, phase = rearrange(self.out(rearrange(h, "b c t -> b t c")), "b t f -> b f t").chunk(2, dim=1)
        audio = spectral_istft(log_mag, phase, self.n_fft, self.hop, self.window, "center", length=frames * self.hop)
        return audio.clamp(-1, 1)[:, None, :]
