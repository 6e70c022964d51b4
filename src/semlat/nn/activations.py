"""Periodic Snake activations: DAC's :class:`Snake1d` and BigVGAN's :class:`Snake` / :class:`SnakeBeta`.

All three compute ``y = x + inv_mag * sin(freq * x)^2`` with per-channel ``freq`` and ``inv_mag``:

==============  ==================  ===========================  =========================================
class           parameters          freq                         inv_mag
==============  ==================  ===========================  =========================================
``Snake1d``     alpha ``[1,C,1]``   alpha                        ``1 / (alpha + 1e-9)``
``Snake``       alpha ``[C]``       alpha (``exp`` if log-scale) ``1 / (freq + 1e-9)``
``SnakeBeta``   alpha, beta ``[C]`` alpha (``exp`` if log-scale) ``1 / (beta + 1e-9)`` (``exp`` if log-scale)
==============  ==================  ===========================  =========================================

Each module exposes :meth:`coefficients` (``freq`` and ``inv_mag`` as ``[C]`` vectors) so fused
kernels (the anti-aliased activation) can apply the same function without the module call. In
inference (no autograd graph needed) :func:`snake` works in place on one temporary; with autograd it
uses out-of-place ops so gradients reach the input and the parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-9


def snake(x: Tensor, freq: Tensor, inv_mag: Tensor, *, inplace: bool = False) -> Tensor:
    """``x + inv_mag * sin(freq * x)^2``.

    Args:
        x: ``[B, C, T]`` (or any shape that ``freq``/``inv_mag`` broadcast against).
        freq, inv_mag: per-channel factors broadcastable to ``x`` (e.g. ``[C, 1]``).
        inplace: allow overwriting ``x`` (only honoured when no gradient is being recorded).
    Returns:
        a tensor shaped like ``x`` (``x`` itself when computed in place).
    """
    if torch.is_grad_enabled() and (x.requires_grad or freq.requires_grad or inv_mag.requires_grad):
        return x + inv_mag * torch.sin(freq * x).square()
    s = torch.mul(x, freq).sin_().square_()
    if inplace:
        return x.addcmul_(s, inv_mag)
    return s.mul_(inv_mag).add_(x)


class Snake1d(nn.Module):
    """DAC's Snake: linear-scale ``alpha`` of shape ``[1, C, 1]`` (initialised to ones).

    ``[B, C, T] -> [B, C, T]``: ``x + 1/(alpha + 1e-9) * sin(alpha * x)^2``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """``(freq, inv_mag)``, each ``[C]``."""
        alpha = self.alpha.reshape(-1)
        return alpha, (alpha + EPS).reciprocal()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        freq, inv_mag = self.coefficients()
        return snake(x, freq[:, None], inv_mag[:, None])


class Snake(nn.Module):
    """BigVGAN's Snake: one ``alpha`` ``[C]`` for frequency and magnitude (log-scale if ``logscale``).

    ``[B, C, T] -> [B, C, T]``: ``x + 1/(a + 1e-9) * sin(a * x)^2`` with ``a = exp(alpha)`` (log-scale)
    or ``a = alpha``. Log-scale parameters start at 0, linear ones at 1.
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """``(freq, inv_mag)``, each ``[C]``."""
        freq = self.alpha.exp() if self.logscale else self.alpha
        return freq, (freq + EPS).reciprocal()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        freq, inv_mag = self.coefficients()
        return snake(x, freq[:, None], inv_mag[:, None])


class SnakeBeta(nn.Module):
    """BigVGAN's SnakeBeta: ``alpha`` (frequency) and ``beta`` (magnitude), each ``[C]``.

    ``[B, C, T] -> [B, C, T]``: ``x + 1/(b + 1e-9) * sin(a * x)^2`` with ``a = exp(alpha)``,
    ``b = exp(beta)`` when ``logscale`` (parameters start at 0), else ``a = alpha``, ``b = beta``
    (start at 1). ``logscale`` is a constructor flag, not a state-dict entry.
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """``(freq, inv_mag)``, each ``[C]``."""
        if self.logscale:
            return self.alpha.exp(), (self.beta.exp() + EPS).reciprocal()
        return self.alpha, (self.beta + EPS).reciprocal()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T] -> [B, C, T]``."""
        freq, inv_mag = self.coefficients()
        return snake(x, freq[:, None], inv_mag[:, None])


def make_snake(kind: str, channels: int, logscale: bool = True) -> Snake | SnakeBeta:
    """BigVGAN's activation by config name: ``"snake"`` or ``"snakebeta"``."""
    if kind == "snake":
        return Snake(channels, logscale)
    if kind == "snakebeta":
        return SnakeBeta(channels, logscale)
    raise ValueError(f"unknown activation {kind!r} (expected 'snake' or 'snakebeta')")
