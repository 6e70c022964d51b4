"""Learning-rate schedules as multipliers of the base rate (for ``torch.optim.lr_scheduler.LambdaLR``)."""

from __future__ import annotations

from collections.abc import Callable

from semlat.training.settings import OptimizerConfig
from semlat.utils.schedules import budget_progress, cosine_decay

__all__ = ["budget_progress", "cosine_decay", "lr_multiplier"]


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
