"""The iSTFT head of Vocos-style decoders: frames ``[B, T, C]`` -> log-magnitude and phase -> audio.

``ISTFTHead``: ``Linear(C -> n_fft + 2)``; the first ``n_fft/2 + 1`` outputs are the log-magnitude
(``exp``, clipped above at 100), the rest the phase (unconstrained reals, ``mag·cos p + i·mag·sin p``);
then the inverse STFT (periodic Hann window) with the reference's two paddings:

- ``center`` (Vocos' released mel model): ``torch.istft(center=True)``; ``T`` frames give ``(T - 1) · hop``
  samples, or ``length`` when given (the samples past ``(T - 1) · hop`` still have window coverage).
- ``same`` (Vocos' EnCodec variant): frames overlap-added into ``(T - 1) · hop + n_fft`` samples, ``(n_fft -
  hop) / 2`` cut from each end, divided by the equally trimmed squared-window envelope: ``T · hop`` samples.

The imaginary parts of the DC and Nyquist bins are ignored in both (a real inverse FFT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from semlat.nn.linear import Linear

PADDINGS = ("center", "same")
MAX_MAGNITUDE = 1e2


def spectral_istft(log_magnitude: Tensor, phase: Tensor, n_fft: int, hop: int, window: Tensor,
                   padding: str = "center", length: int | None = None) -> Tensor:
    """``log_magnitude, phase [B, n_fft/2 + 1, T]`` -> audio ``[B, N]`` (float32; see the module docstring)."""
    magnitude = torch.exp(log_magnitude.float()).clip(max=MAX_MAGNITUDE)
    spec = torch.polar(magnitude, phase.float())
    if padding == "center":
        return torch.istft(spec, n_fft, hop, n_fft, window=window, center=True, length=length)
    if padding != "same":
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[None, :, None]     # [B, n_fft, T]
    count = spec.shape[-1]
    total = (count - 1) * hop + n_fft
    audio = F.fold(frames, (1, total), (1, n_fft), stride=(1, hop))[:, 0, 0]   # overlap-add: [B, total]
    envelope = F.fold(window.square()[None, :, None].expand(1, n_fft, count), (1, total), (1, n_fft),
                      stride=(1, hop))[0, 0, 0]
    pad = (n_fft - hop) // 2
    audio, envelope = audio[:, pad:total - pad], envelope[pad:total - pad]
    if bool((envelope <= 1e-11).any()):
        raise ValueError("iSTFT window envelope is zero somewhere: hop too large for the window")
    audio = audio / envelope
    return audio if length is None else audio[:, :length]


class ISTFTHead(nn.Module):
    """``x [B, T, dim]`` -> audio ``[B, N]``; see the module docstring (``out`` is Vocos' ``head.out``)."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "center"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.n_fft, self.hop_length, self.padding = n_fft, hop_length, padding
        self.out = Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def spectrum(self, x: Tensor) -> Tensor:
        """The linear layer's output, channel-major: ``[B, n_fft + 2, T]`` (log-magnitude rows, then phase)."""
        return rearrange(self.out(x), "b t f -> b f t")

    def forward(self, x: Tensor, length: int | None = None) -> Tensor:
        log_magnitude, phase = self.spectrum(x).chunk(2, dim=1)
        return spectral_istft(log_magnitude, phase, self.n_fft, self.hop_length, self.window, self.padding, length)
