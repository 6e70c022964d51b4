"""Reconstruction metrics, per item: multi-scale mel distance and SI-SDR.

Both take ``estimate`` and ``reference`` shaped ``[B, 1, N]`` (or ``[B, N]``) at the same rate and
return ``[B]``. The mel distance is Semantic-VAE's training loss (7 scales, log10 mel L1, summed)
evaluated per item: lower is better, 0 is identical. SI-SDR (dB, higher is better) comes from
torchmetrics with zero-mean signals.
"""

from __future__ import annotations

import torch

from semlat.losses.mel import MultiScaleMelLoss


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).float()


def _trim(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(estimate.shape[-1], reference.shape[-1])
    return _flat(estimate)[:, :n], _flat(reference)[:, :n]


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, ``[B]`` (lengths trimmed to the shorter)."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    est, ref = _trim(estimate, reference)
    return scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True)


def mel_distance(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Multi-scale log-mel L1 distance per item, ``[B]`` (Semantic-VAE's mel loss configuration)."""
    est, ref = _trim(estimate, reference)
    loss = MultiScaleMelLoss(sample_rate=sample_rate).to(est.device)
    return torch.stack([loss(e[None, None], r[None, None]) for e, r in zip(est, ref)])
