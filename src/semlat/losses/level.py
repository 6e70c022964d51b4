"""Frame-level loudness loss: the L1 distance between two signals' short-time levels.

For frames of ``frame`` samples every ``hop`` (no padding)::

    level(x)_f = log10(clamp(mean_{n in f} x[n]^2, floor)) / 2          (log10 of the frame's RMS)
    L          = mean_{b, f} |level(estimate)_{b,f} - level(reference)_{b,f}|

One unit is 20 dB. A log-mel L1 averages over bands, and where most of a frame's bands sit at its clamp floor
(a steady tone) a level error moves it less: a 1 kHz tone at 24 kHz rendered 20 dB low raises each of
:class:`~semlat.losses.mel.MultiScaleMelLoss`'s scales by 0.54 on average, this term by 1.0 (white noise: 1.0
both; ``tests/test_semantic_vocoder_gan.py``). ``floor`` (``1e-8``, -80 dBFS) keeps silent frames from
dominating.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FrameLevelLoss(nn.Module):
    """``(estimate [B, 1, N], reference [B, 1, N]) -> scalar`` mean |log10 frame RMS| difference."""

    def __init__(self, frame: int = 1024, hop: int = 256, floor: float = 1e-8):
        super().__init__()
        if frame < 1 or hop < 1 or floor <= 0:
            raise ValueError("frame and hop must be >= 1 and floor > 0")
        self.frame, self.hop, self.floor = frame, hop, floor

    def levels(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N] -> [B, 1, F]`` log10 frame RMS (one frame if ``N < frame``)."""
        frame = min(self.frame, audio.shape[-1])
        power = F.avg_pool1d(audio.float() ** 2, frame, self.hop)
        return 0.5 * torch.log10(power.clamp_min(self.floor))

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (self.levels(estimate) - self.levels(reference)).abs().mean()
