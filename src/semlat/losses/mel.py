"""Multi-scale log-mel reconstruction loss (DAC / Semantic-VAE).

For each scale ``s`` with window ``w_s`` and ``m_s`` mel bands::

    mel_s(x) = melfb(sr, n_fft=w_s, n_mels=m_s, slaney) @ |STFT(x; w_s, hop=w_s/4, hann, center, reflect)|
    L_s      = log_weight * mean|log10(clamp(mel_s(x), eps)^pow) - log10(clamp(mel_s(y), eps)^pow)|
             + mag_weight * mean|mel_s(x) - mel_s(y)|
    L        = sum_s L_s          (summed, not averaged)

The defaults are Semantic-VAE's training configuration (16 kHz, seven scales from 32 to 2048).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from semlat.audio.spectral import MelConfig, MelSpectrogram

SEMANTIC_VAE_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
SEMANTIC_VAE_MELS = (5, 10, 20, 40, 80, 160, 320)


class MultiScaleMelLoss(nn.Module):
    """``(estimate [B, 1, N], reference [B, 1, N]) -> scalar`` summed multi-scale log-mel L1."""

    def __init__(
        self,
        sample_rate: int = 16000,
        window_lengths: Sequence[int] = SEMANTIC_VAE_WINDOWS,
        n_mels: Sequence[int] = SEMANTIC_VAE_MELS,
        f_min: float = 0.0,
        f_max: float | None = None,
        clamp_eps: float = 1e-5,
        pow: float = 1.0,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
    ):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError("window_lengths and n_mels must have the same length")
        self.clamp_eps, self.pow = clamp_eps, pow
        self.log_weight, self.mag_weight = log_weight, mag_weight
        self.mels = nn.ModuleList(
            MelSpectrogram(MelConfig(
                n_fft=w, hop_length=w // 4, center=True, pad_mode="reflect", power=1.0,
                sample_rate=sample_rate, n_mels=m, f_min=f_min, f_max=f_max, log=None,
            ))
            for w, m in zip(window_lengths, n_mels)
        )

    def per_scale(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The loss of every scale, ``[n_scales]``."""
        terms = []
        for mel in self.mels:
            mx, my = mel(estimate), mel(reference)
            term = mx.new_zeros(())
            if self.log_weight:
                lx = torch.log10(mx.clamp(min=self.clamp_eps).pow(self.pow))
                ly = torch.log10(my.clamp(min=self.clamp_eps).pow(self.pow))
                term = term + self.log_weight * (lx - ly).abs().mean()
            if self.mag_weight:
                term = term + self.mag_weight * (mx - my).abs().mean()
            terms.append(term)
        return torch.stack(terms)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.per_scale(estimate, reference).sum()
