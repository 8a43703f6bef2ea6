"""Numbers and times as the panels print them: durations, times after programming,
numbers with a dash for missing ones, and sparklines."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

YEAR_S = 365 * 86400.0
SPARK = "▁▂▃▄▅▆▇█"


def duration(seconds: float | None) -> str:
    """Wall-clock durations: 4.2 s, 3:07, 1:02:03, 2d 03:04:05."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def span(seconds: float | None) -> str:
    """Times after programming: 1 s, 5 min, 3.2 h, 30 d, 1 y."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for unit, size in (("y", YEAR_S), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * 0.999:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def number(value: Any, spec: str = ".3f") -> str:
    """``value`` in ``spec``; – for None and non-finite numbers."""
    if value is None:
        return "–"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format(value, spec) if math.isfinite(value) else "–"


def sparkline(values: Iterable[float], width: int | None = None) -> str:
    """One character per value, ▁ (lowest) to █ (highest), blank where not finite; resampled
    to ``width`` characters if there are more values."""
    values = [float(v) for v in values]
    if width is not None and len(values) > width > 0:
        pick = np.linspace(0, len(values) - 1, width).round().astype(int)
        values = [values[i] for i in pick]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    spread = high - low
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif spread <= 1e-12:
            out.append(SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[min(int((v - low) / spread * len(SPARK)), len(SPARK) - 1)])
    return "".join(out)
