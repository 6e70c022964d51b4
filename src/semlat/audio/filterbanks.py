"""Mel scales and triangular mel filterbanks.

Two numeric conventions exist in the wild and checkpoints were trained against each:

- ``"librosa"``: frequencies and mel points in float64, cast to float32 at the end
  (``librosa.filters.mel``; used by BigVGAN, HiFi-GAN, DAC/Semantic-VAE, DC-Speech-VAE).
- ``"torchaudio"``: the same formulas evaluated in float32 with the FFT-bin grid
  ``linspace(0, sample_rate // 2, n_freqs)`` (``torchaudio.functional.melscale_fbanks``; used by
  Vocos, F5-TTS and Dasheng).

They differ by up to ~1e-5 per filter weight; pick the one the model was trained with.
"""

from __future__ import annotations

import math

import torch

_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(freq: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Frequency in Hz to mel. ``scale``: "htk" (2595 log10(1 + f/700)) or "slaney" (linear below 1 kHz, log above)."""
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    if scale == "slaney":
        linear = freq / _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_MEL + torch.log(freq.clamp(min=_SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOG_STEP
        return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log, linear)
    raise ValueError(f"mel scale must be 'slaney' or 'htk', got {scale!r}")


def mel_to_hz(mel: torch.Tensor, scale: str = "slaney") -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        linear = _SLANEY_F_SP * mel
        log = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_MIN_LOG_MEL))
        return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log, linear)
    raise ValueError(f"mel scale must be 'slaney' or 'htk', got {scale!r}")


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
    convention: str = "librosa",
) -> torch.Tensor:
    """Triangular mel filters as a float32 tensor ``[n_mels, n_fft // 2 + 1]``.

    Args:
        f_max: upper edge in Hz; ``None`` means ``sample_rate / 2``.
        scale: "slaney" or "htk" mel scale.
        norm: "slaney" scales each filter to unit area (``2 / bandwidth``); ``None`` keeps peak 1.
        convention: "librosa" (float64 grid) or "torchaudio" (float32 grid), see the module doc.
    """
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    n_freqs = n_fft // 2 + 1
    if convention == "librosa":
        dtype, top = torch.float64, sample_rate / 2
    elif convention == "torchaudio":
        dtype, top = torch.float32, float(sample_rate // 2)
    else:
        raise ValueError(f"convention must be 'librosa' or 'torchaudio', got {convention!r}")
    fft_freqs = torch.linspace(0.0, top, n_freqs, dtype=dtype)
    edges = hz_to_mel(torch.tensor([float(f_min), f_max], dtype=torch.float64), scale)
    mel_points = torch.linspace(float(edges[0]), float(edges[1]), n_mels + 2, dtype=dtype)
    hz_points = mel_to_hz(mel_points, scale)
    widths = hz_points[1:] - hz_points[:-1]
    ramps = hz_points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        weights = weights * (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.to(torch.float32)


def linear_filterbank(sample_rate: int, n_fft: int, n_filters: int, f_min: float = 0.0,
                      f_max: float | None = None) -> torch.Tensor:
    """Triangular filters equally spaced in Hz (torchaudio's ``linear_fbanks``, float32 grid), peak 1,
    as ``[n_filters, n_fft // 2 + 1]``."""
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    fft_freqs = torch.linspace(0.0, float(sample_rate // 2), n_fft // 2 + 1)
    points = torch.linspace(float(f_min), f_max, n_filters + 2)
    widths = points[1:] - points[:-1]
    ramps = points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)
