"""Budget-aware decay helpers shared by the trainer's schedules and the small built-in training loops."""

from __future__ import annotations

import math


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
