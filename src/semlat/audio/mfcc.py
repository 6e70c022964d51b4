"""MFCC + Δ + ΔΔ (Kaldi-like): the features HuBERT's first iteration clusters (``semlat teacher train``).

``MFCC(config)(audio [B, N]) -> [B, T, 3 * n_mfcc]`` at 100 Hz; see :class:`MFCCConfig` for the
exact conventions (uncentred 25 ms windows, HTK mel scale, orthonormal DCT-II, liftering, regression
deltas with replicated edges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from semlat.audio.spectral import MelConfig, MelSpectrogram


@dataclass(frozen=True)
class MFCCConfig:
    """MFCC + Δ + ΔΔ parameters (Kaldi-like; what HuBERT's iteration 1 clustered).

    Attributes:
        sample_rate: input rate (Hz).
        n_fft, hop_length: 25 ms periodic-Hann windows every 10 ms, *not* centred (frame ``k`` covers
            samples ``[k * hop, k * hop + n_fft)``), so ``T = (N - n_fft) // hop + 1`` frames at 100 Hz.
        n_mels, f_min, f_max: an HTK-scale triangular filterbank without area normalisation over
            ``f_min``-``f_max`` Hz (``None``: Nyquist), applied to the power spectrum (``|X|^2``).
        log_floor: the mel power is floored here before the natural log (audio in [-1, 1]; a floor of
            1e-5 is about 110 dB below a full-scale tone's band power).
        n_mfcc: cepstra kept from the orthonormal DCT-II of the log-mel (c0 included: it is the
            log-mel mean times ``sqrt(n_mels)``, a log-energy term).
        lifter: Kaldi/HTK sinusoidal cepstral liftering ``1 + L/2 sin(pi i / L)`` (0: none).
        delta_window: ``N`` of the regression deltas ``sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)``,
            edges replicated (HTK, Kaldi, ``torchaudio.functional.compute_deltas``).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float | None = None
    log_floor: float = 1e-5
    n_mfcc: int = 13
    lifter: int = 22
    delta_window: int = 2

    @property
    def dim(self) -> int:
        """Feature size: ``3 * n_mfcc``."""
        return 3 * self.n_mfcc

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def frames(self, num_samples: int) -> int:
        """MFCC frames of ``num_samples`` samples (0 when shorter than one window)."""
        return max(0, (num_samples - self.n_fft) // self.hop_length + 1)

    def mel_config(self) -> MelConfig:
        """The log-mel front-end as a semlat :class:`MelConfig`."""
        return MelConfig(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.n_fft, center=False, padding=0,
            pad_mode="constant", power=2.0, magnitude_eps=0.0, sample_rate=self.sample_rate,
            n_mels=self.n_mels, f_min=self.f_min, f_max=self.f_max, mel_scale="htk", norm=None,
            filterbank="torchaudio", log="ln", clamp_min=self.log_floor,
        )


def dct_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Orthonormal DCT-II as ``[n_out, n_in]`` (the first ``n_out`` rows of ``scipy.fft.dct(norm="ortho")``):
    ``D[k, m] = s_k cos(pi k (m + 1/2) / n_in)`` with ``s_0 = sqrt(1/n_in)``, ``s_k = sqrt(2/n_in)``."""
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    m = torch.arange(n_in, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * k * (m + 0.5) / n_in) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def lifter_weights(n_mfcc: int, lifter: int) -> torch.Tensor:
    """``[n_mfcc]`` cepstral lifter ``1 + L/2 sin(pi i / L)`` (all ones for ``L = 0``)."""
    if lifter <= 0:
        return torch.ones(n_mfcc)
    i = torch.arange(n_mfcc, dtype=torch.float64)
    return (1.0 + 0.5 * lifter * torch.sin(math.pi * i / lifter)).float()


def deltas(features: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas along time of ``[B, T, C]`` -> ``[B, T, C]``, edges replicated."""
    if window < 1:
        raise ValueError(f"delta window must be >= 1, got {window}")
    padded = F.pad(features.transpose(1, 2), (window, window), mode="replicate")  # [B, C, T + 2w]
    length = features.shape[1]
    out = torch.zeros_like(features.transpose(1, 2))
    for n in range(1, window + 1):
        out = out + n * (padded[..., window + n:window + n + length] - padded[..., window - n:window - n + length])
    denom = 2 * sum(n * n for n in range(1, window + 1))
    return (out / denom).transpose(1, 2)


class MFCC(nn.Module):
    """``audio [B, N]`` (or ``[N]``) at ``config.sample_rate`` -> ``[B, T, 3 * n_mfcc]`` MFCC + Δ + ΔΔ,
    ``T = config.frames(N)`` at 100 Hz (float32)."""

    def __init__(self, config: MFCCConfig | None = None):
        super().__init__()
        self.config = config or MFCCConfig()
        self.mel = MelSpectrogram(self.config.mel_config())
        dct = dct_matrix(self.config.n_mfcc, self.config.n_mels)
        dct = dct * lifter_weights(self.config.n_mfcc, self.config.lifter)[:, None]
        self.register_buffer("dct", dct, persistent=False)  # [n_mfcc, n_mels], liftered

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio[None]
        if audio.shape[-1] < self.config.n_fft:
            raise ValueError(f"audio of {audio.shape[-1]} samples is shorter than one MFCC window "
                             f"({self.config.n_fft})")
        log_mel = self.mel(audio.float())  # [B, n_mels, T]
        cepstra = torch.matmul(self.dct, log_mel).transpose(1, 2)  # [B, T, n_mfcc]
        d1 = deltas(cepstra, self.config.delta_window)
        d2 = deltas(d1, self.config.delta_window)
        return torch.cat([cepstra, d1, d2], dim=-1)


def mfcc(audio: torch.Tensor, config: MFCCConfig | None = None) -> torch.Tensor:
    """MFCC + Δ + ΔΔ of ``audio [B, N]`` at 16 kHz -> ``[B, T, 39]`` at 100 Hz (see :class:`MFCCConfig`)."""
    return MFCC(config).to(audio.device)(audio)
