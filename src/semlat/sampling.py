"""One sampler for every flow-matching model in semlat (the TTS, text-to-audio, the flow vocoder).

Every model here follows the same path: ``x_t = (1 - t) x0 + t x1`` from noise (``t = 0``) to data (``t = 1``),
and its network gives the velocity ``dx/dt``. This module holds what all of them share, separate from their
backbones (stable-audio-tools' ``inference/sampling.py`` shape):

* :func:`time_grid`: the ``[steps + 1]`` times from 0 to 1. Schedules: ``uniform`` (``k / N``), ``sine``
  (``sin(π k / 2N)``: small steps near the data end; the flow vocoder's few-step decode) and ``epss`` (F5-TTS's
  empirically pruned grids for 5, 6, 7, 10, 12 and 16 steps, uniform otherwise); then optionally sway sampling
  (:func:`sway`, F5-TTS) and a time shift toward the noise end (:func:`shift`, SD3 / RAE).
* :func:`guide`: classifier-free guidance in **one convention**, ``v = u + w (c - u)``: ``w = 1`` is the
  conditional velocity alone, ``w = 0`` the unconditional one. Releases that write it otherwise map onto it
  where their scale enters semlat (F5-TTS's ``c + s (c - u)`` is ``w = s + 1``: :func:`from_f5_strength`).
* :func:`sample`: Euler or midpoint steps of ``velocity(x, t)`` over a grid. It keeps gradients when the
  caller does (a few-step GAN fine-tune trains through the unrolled steps); callers that only infer wrap
  it in ``torch.no_grad``.

Models adapt their own calling convention in the ``velocity`` closure they pass (how they batch the
conditional and unconditional rows, which time layout their network takes); the sampler only sees
``velocity(x [B, ...], t 0-d) -> [B, ...]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from semlat.errors import ConfigError

#: F5-TTS's empirically pruned step grids, in 32nds of the unit interval
EPSS_GRIDS = {
    5: (0, 2, 4, 8, 16, 32),
    6: (0, 2, 4, 6, 8, 16, 32),
    7: (0, 2, 4, 6, 8, 16, 24, 32),
    10: (0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32),
    12: (0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32),
}
SCHEDULES = ("uniform", "sine", "epss")
METHODS = ("euler", "midpoint")

Velocity = Callable[[Tensor, Tensor], Tensor]


def sway(t: Tensor, coef: float | None) -> Tensor:
    """Sway sampling (F5-TTS): ``t + coef · (cos(πt/2) - 1 + t)`` (``coef`` None or 0: unchanged)."""
    if not coef:
        return t
    return t + coef * (torch.cos(math.pi / 2 * t) - 1 + t)


def shift(t: Tensor, alpha: float) -> Tensor:
    """Times ``t`` (0 noise, 1 data) moved toward the noise end by ``alpha``: ``σ' = α σ / (1 + (α - 1) σ)``,
    ``σ = 1 - t`` (``alpha = 1``: unchanged; the ends stay fixed)."""
    if alpha == 1.0:
        return t
    sigma = 1.0 - t
    return 1.0 - alpha * sigma / (1.0 + (alpha - 1.0) * sigma)


def time_grid(steps: int, schedule: str = "uniform", *, sway_coef: float | None = None, shift_alpha: float = 1.0,
              device: Any = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[steps + 1]`` times from 0 (noise) to 1 (data): the ``schedule``'s grid, then sway, then shift (module
    docstring). Computed in ``dtype`` (the sine grid's sines in float64); F5-TTS builds its grid in the
    sampler's dtype, which is why this one does too."""
    if steps < 1:
        raise ConfigError(f"a flow sampler needs at least one step, got {steps}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "epss" and steps in EPSS_GRIDS:
        t = torch.tensor(EPSS_GRIDS[steps], device=device, dtype=dtype) / 32
    elif schedule == "sine":
        grid = torch.sin(math.pi / 2 * torch.linspace(0, 1, steps + 1, dtype=torch.float64))
        grid[-1] = 1.0
        t = grid.to(device=device, dtype=dtype)
    else:
        t = torch.linspace(0, 1, steps + 1, device=device, dtype=dtype)
    return shift(sway(t, sway_coef), shift_alpha)


def guide(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance, semlat's one convention: ``u + scale · (c - u)`` (``scale`` 1: ``c``). Evaluated
    as ``c + (scale - 1) · (c - u)``, F5-TTS's arithmetic, so an F5 strength ``s`` given as ``s + 1`` reproduces
    its samples bit for bit."""
    return conditional + (conditional - unconditional) * (scale - 1.0)


def from_f5_strength(strength: float) -> float:
    """F5-TTS's ``cfg_strength`` ``s`` (``c + s (c - u)``) as semlat's guidance scale: ``s + 1``."""
    return strength + 1.0


def to_f5_strength(scale: float) -> float:
    """semlat's guidance scale as F5-TTS's ``cfg_strength``: ``scale - 1``."""
    return scale - 1.0


def sample(velocity: Velocity, x: Tensor, times: Tensor, *, method: str = "euler",
           on_step: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``x`` (the noise, at ``times[0]``) over ``times [N + 1]``:
    Euler, or midpoint (two calls a step). ``on_step(k, x)`` sees the state after step ``k``. Returns the final
    state, shaped as ``x``."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    for k in range(len(times) - 1):
        t, dt = times[k], times[k + 1] - times[k]
        v = velocity(x, t)
        if method == "midpoint":
            v = velocity(x + dt / 2 * v, t + dt / 2)
        x = x + dt * v
        if on_step is not None:
            on_step(k, x)
    return x
