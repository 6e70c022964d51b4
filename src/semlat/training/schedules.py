"""Learning-rate schedules as multipliers of the base rate (for ``torch.optim.lr_scheduler.LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable

from semlat.training.settings import OptimizerConfig


def lr_multiplier(config: OptimizerConfig, max_steps: int) -> Callable[[int], float]:
    """``step -> factor``: linear warm-up over ``warmup_steps``, then the configured decay.

    - constant: 1
    - exponential: ``gamma ** (step - warmup)`` (Semantic-VAE: 0.999996 per step)
    - cosine: from 1 down to ``min_lr_ratio`` at ``max_steps``
    """
    warmup = config.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = step - warmup
        if config.schedule == "exponential":
            return config.gamma**t
        if config.schedule == "cosine":
            span = max(1, max_steps - warmup)
            progress = min(1.0, t / span)
            return cosine_decay(1.0, config.min_lr_ratio, progress)
        return 1.0

    return factor


def budget_progress(step: int, elapsed_seconds: float, max_steps: int | None, max_minutes: float | None) -> float:
    """How far a run with a step and/or time budget has got: the larger of ``step / max_steps`` and
    ``elapsed / max_minutes`` (0 when there is no budget). May exceed 1."""
    progress = 0.0
    if max_steps:
        progress = max(progress, step / max_steps)
    if max_minutes:
        progress = max(progress, elapsed_seconds / (60 * max_minutes))
    return progress


def cosine_decay(lr: float, final_ratio: float, progress: float) -> float:
    """``lr`` decayed along a half cosine to ``final_ratio * lr`` at ``progress`` 1 (and after)."""
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
