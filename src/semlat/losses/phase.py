"""Phase-aware reconstruction losses: APNet's anti-wrapped phase losses and a multi-resolution complex
STFT loss. Both compare the STFTs of the estimate and the reference, so they apply to any waveform
decoder; the mel loss alone ignores phase, which lets a decoder that predicts phase (an iSTFT decoder)
drift into noisy, unvoiced-sounding output.

For each window ``w`` (hop ``w / 4``, periodic Hann, centred, reflect-padded), with ``X = STFT(x)``,
``Y = STFT(y)``, ``phi = angle``, ``AW(d) = |d - 2 pi round(d / 2 pi)|`` (the anti-wrapping distance,
in ``[0, pi]``) and ``m`` a weight per bin::

    ip   = sum(m * AW(phi_X - phi_Y)) / sum(m)                      instantaneous phase
    gd   = sum(m * AW(D_f phi_X - D_f phi_Y)) / sum(m)              group delay (difference along frequency)
    iaf  = sum(m * AW(D_t phi_X - D_t phi_Y)) / sum(m)              instantaneous frequency (along time)
    PhaseLoss = sum_w (ip_weight * ip + gd + iaf)

``m = 1`` (APNet, unweighted) or, with ``magnitude_weighted``, ``m = |Y| / mean|Y|`` (the reference's
magnitude; for the derivatives the smaller of the two bins it compares), which ignores the random
phase of silent bins. The group delay and instantaneous frequency do not depend on the absolute phase
(a time shift moves them only a little), so they teach the harmonic structure that a latent at 40 Hz
can carry; the absolute phase (``ip``) it cannot, hence ``ip_weight``.

    ComplexSTFTLoss = sum_w mean|X - Y|  over real and imaginary parts, with X and Y compressed to
        |X|^c e^{i phi_X} (``compress`` c, 1: none)

Neither loss is normalised by the number of windows (like the multi-scale mel loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """``|x - 2 pi round(x / 2 pi)|``: the distance of an angle difference from 0, in ``[0, pi]``."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


class _STFTs(nn.Module):
    def __init__(self, windows: Sequence[int]):
        super().__init__()
        if not windows:
            raise ValueError("need at least one window length")
        for w in windows:
            if w < 4 or w % 4:
                raise ValueError(f"window lengths must be positive multiples of 4, got {w}")
        self.windows = tuple(int(w) for w in windows)
        for w in self.windows:
            self.register_buffer(f"hann{w}", torch.hann_window(w), persistent=False)

    def stft(self, audio: torch.Tensor, w: int) -> torch.Tensor:
        """``[B, 1, N] -> [B, w / 2 + 1, frames]`` complex (float32)."""
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, N], got {tuple(audio.shape)}")
        return torch.stft(audio[:, 0].float(), w, w // 4, w, window=getattr(self, f"hann{w}"), center=True,
                          pad_mode="reflect", return_complex=True)


class PhaseLoss(_STFTs):
    """``(estimate [B, 1, N], reference [B, 1, N]) -> scalar``: APNet's IP + GD + IAF losses (see module)."""

    def __init__(self, windows: Sequence[int] = (512, 256, 128), ip_weight: float = 1.0,
                 magnitude_weighted: bool = True, eps: float = 1e-5):
        super().__init__(windows)
        self.ip_weight = ip_weight
        self.magnitude_weighted = magnitude_weighted
        self.eps = eps

    def terms(self, estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"ip", "gd", "iaf"}``, each summed over the windows."""
        out = {"ip": estimate.new_zeros((), dtype=torch.float32), "gd": estimate.new_zeros((), dtype=torch.float32),
               "iaf": estimate.new_zeros((), dtype=torch.float32)}
        for w in self.windows:
            x, y = self.stft(estimate, w), self.stft(reference, w)
            # the angle of a (near-)zero bin has no gradient worth following: nudge it off zero
            px, py = torch.angle(x + self.eps), torch.angle(y)
            if self.magnitude_weighted:
                m = y.abs().detach()
                m = m / (m.mean(dim=(-2, -1), keepdim=True) + self.eps)
            else:
                m = torch.ones_like(py)

            def mean(d: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
                return (weight * anti_wrap(d)).sum() / (weight.sum() + self.eps)

            out["ip"] = out["ip"] + mean(px - py, m)
            out["gd"] = out["gd"] + mean(px.diff(dim=-2) - py.diff(dim=-2),
                                         torch.minimum(m[..., 1:, :], m[..., :-1, :]))
            out["iaf"] = out["iaf"] + mean(px.diff(dim=-1) - py.diff(dim=-1),
                                           torch.minimum(m[..., :, 1:], m[..., :, :-1]))
        return out

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        t = self.terms(estimate, reference)
        return self.ip_weight * t["ip"] + t["gd"] + t["iaf"]


class ComplexSTFTLoss(_STFTs):
    """``(estimate [B, 1, N], reference [B, 1, N]) -> scalar``: multi-resolution L1 between the
    (magnitude-compressed) complex spectra, summed over the windows (see module)."""

    def __init__(self, windows: Sequence[int] = (512, 256, 128), compress: float = 0.3, eps: float = 1e-7):
        super().__init__(windows)
        if not 0 < compress <= 1:
            raise ValueError(f"compress must be in (0, 1], got {compress}")
        self.compress = compress
        self.eps = eps

    def _compressed(self, spec: torch.Tensor) -> torch.Tensor:
        if self.compress == 1:
            return torch.view_as_real(spec)
        mag = spec.abs()
        scale = (mag + self.eps).pow(self.compress - 1)  # |X|^c / |X|, finite at 0
        return torch.view_as_real(spec) * scale[..., None]

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros((), dtype=torch.float32)
        for w in self.windows:
            x = self._compressed(self.stft(estimate, w))
            y = self._compressed(self.stft(reference, w))
            total = total + (x - y).abs().mean()
        return total
