"""How semlat writes a figure, everywhere (reports, the CLI, the app): one function per kind, with its unit.

* fractions as percent: ``percent(0.1175) -> "11.8 %"`` and ``percent(11.75) -> "1175.0 %"`` (an error rate
  above 1 is a rate above 100 %, never "11.75");
* plain numbers with fixed decimals: ``number(0.6904) -> "0.690"``;
* decibels: ``decibels(-25.04) -> "-25.0 dB"``;
* a figure with its 95 % interval: ``with_interval(0.428, (0.395, 0.462), percent) -> "42.8 % [39.5, 46.2]"``
  (the interval in the figure's unit, without repeating it);
* :func:`figure`: by a metric's unit name (``fraction``, ``dB``, ``cosine``, ``MOS``, ``MOS-LQO`` or none).

A missing or non-finite value is written ``missing`` ("–" unless the caller's report uses another mark).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

MISSING = "–"


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def percent(value: float | None, digits: int = 1, missing: str = MISSING) -> str:
    """A fraction as percent: ``0.1175 -> "11.8 %"``."""
    return missing if _absent(value) else f"{100 * value:.{digits}f} %"


def number(value: float | None, digits: int = 3, missing: str = MISSING) -> str:
    """A number with ``digits`` decimals."""
    return missing if _absent(value) else f"{value:.{digits}f}"


def decibels(value: float | None, digits: int = 1, missing: str = MISSING) -> str:
    """A level or ratio in dB: ``-25.04 -> "-25.0 dB"``."""
    return missing if _absent(value) else f"{value:.{digits}f} dB"


def with_interval(value: float | None, interval: Sequence[float | None] | None,
                  fmt: Callable[..., str] = number, missing: str = MISSING, **options: Any) -> str:
    """``fmt(value) [low, high]``, the interval in the same unit without repeating it; the figure alone when the
    interval is missing."""
    if _absent(value):
        return missing
    shown = fmt(value, missing=missing, **options)
    if not interval or len(interval) != 2 or any(_absent(v) for v in interval):
        return shown
    unit = {percent: " %", decibels: " dB"}.get(fmt, "")
    low, high = (fmt(v, missing=missing, **options).removesuffix(unit) for v in interval)
    return f"{shown} [{low}, {high}]"


def percent_interval(value: float | None, interval: Sequence[float | None] | None, missing: str = MISSING) -> str:
    """A fraction and its interval in percent: ``42.8 % [39.5, 46.2]`` (the reports' accuracies and error rates)."""
    return with_interval(value, interval, percent, missing=missing)


#: a metric's unit name -> how its figures are written
BY_UNIT: dict[str, Callable[..., str]] = {
    "fraction": percent,
    "dB": lambda v, missing=MISSING: decibels(v, 2, missing),
    "cosine": lambda v, missing=MISSING: number(v, 3, missing),
    "MOS": lambda v, missing=MISSING: number(v, 2, missing),
    "MOS-LQO": lambda v, missing=MISSING: number(v, 2, missing),
    "": lambda v, missing=MISSING: number(v, 4, missing),
}


def figure(value: Any, unit: str = "", missing: str = MISSING) -> Any:
    """``value`` written as a figure of ``unit`` (:data:`BY_UNIT`); anything that is not a number (a transcript, a
    reason) is returned as it is."""
    if value is None:
        return missing
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return BY_UNIT.get(unit, BY_UNIT[""])(float(value), missing=missing)
