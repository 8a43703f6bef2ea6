"""The drift panel's shared axes, so that every level's sparkline reads the same way.

Across: one log-time axis laid out from the read schedule (``DriftStart.times_s``) before the
reads arrive — the same columns for every level, a read placed by log10 of its time since
programming; columns not read yet show ``PENDING``. Up: drift as the change of each level's
mean conductance relative to its first read, G/G₀ − 1 in %, on one scale shared by all levels,
rounded to ``SPARK``'s eight steps of a whole number of percent (2 % at the least). A level
that has not drifted draws a flat line, whatever its read noise: two reads ±0.5 % off stay
within half a step of each other; a level that drifts like another draws the same line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pcm_hil.ui.dashboard.format import SPARK

#: A column of the time axis no read has reached yet.
PENDING = "·"
#: The smallest step of the shared scale, %: changes under half of it draw flat (read noise
#: of ±0.5 % on the first read and on a later one: at most 1 % apart).
MIN_STEP_PCT = 2.0


@dataclass(frozen=True)
class TimeAxis:
    """``columns`` columns from ``first_s`` to ``last_s`` (log time); ``column`` of each read."""

    columns: int
    first_s: float
    last_s: float
    column: np.ndarray


def time_axis(schedule: np.ndarray | None, times: Sequence[float], width: int) -> TimeAxis:
    """Columns for the reads at ``times`` (s since programming) on a log-time axis from the
    first to the last time of ``schedule`` (and of the reads, should one fall outside it): one
    column per scheduled read when they fit in ``width``, else ``width`` columns."""
    read = np.asarray(times, dtype=np.float64).reshape(-1)
    planned = np.asarray(schedule if schedule is not None else [], dtype=np.float64).reshape(-1)
    known = np.concatenate([planned, read])
    known = known[np.isfinite(known) & (known > 0)]
    slots = max(np.unique(planned[np.isfinite(planned) & (planned > 0)]).size, read.size, 1)
    columns = max(min(width, slots), 1)
    if not known.size:
        return TimeAxis(columns, math.nan, math.nan, np.zeros(read.size, dtype=np.intp))
    first, last = float(known.min()), float(known.max())
    if last <= first or columns == 1:
        return TimeAxis(columns, first, last, np.zeros(read.size, dtype=np.intp))
    with np.errstate(invalid="ignore", divide="ignore"):
        where = (np.log10(read) - math.log10(first)) / (math.log10(last) - math.log10(first))
    where = np.where(np.isfinite(where), where, 0.0)
    column = np.clip(np.rint(where * (columns - 1)), 0, columns - 1).astype(np.intp)
    return TimeAxis(columns, first, last, column)


def relative_drift(means: np.ndarray) -> np.ndarray:
    """Reads × levels of mean conductance → change relative to each level's first finite,
    positive read, %: 100 (G/G₀ − 1); NaN where not known."""
    means = np.asarray(means, dtype=np.float64)
    usable = np.isfinite(means) & (means > 0)
    first = np.full(means.shape[1:], np.nan)
    for k in range(means.shape[0]):  # the first usable read of each level
        first = np.where(np.isnan(first) & usable[k], means[k], first)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(usable, 100.0 * (means / first - 1.0), np.nan)


def on_columns(values: np.ndarray, axis: TimeAxis) -> np.ndarray:
    """Reads × series → columns × series: the mean of the reads in each column; a column the
    reads have passed without one in it holds the column before it; NaN after the last read."""
    values = np.asarray(values, dtype=np.float64)
    series = values.shape[1] if values.ndim == 2 else 1
    values = values.reshape(-1, series)
    out = np.full((axis.columns, series), np.nan)
    if not values.shape[0]:
        return out
    finite = np.isfinite(values)
    total = np.zeros((axis.columns, series))
    count = np.zeros((axis.columns, series))
    np.add.at(total, axis.column, np.where(finite, values, 0.0))
    np.add.at(count, axis.column, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / count, np.nan)
    reached = int(axis.column.max())
    for c in range(1, reached + 1):  # hold the line across columns no read fell in
        out[c] = np.where(np.isnan(out[c]), out[c - 1], out[c])
    return out


@dataclass(frozen=True)
class Scale:
    """The shared vertical scale: ``SPARK[k]`` stands for (``bottom`` + k) × ``step_pct`` %."""

    step_pct: float
    bottom: int

    @property
    def top_pct(self) -> float:
        return (self.bottom + len(SPARK) - 1) * self.step_pct

    @property
    def bottom_pct(self) -> float:
        return self.bottom * self.step_pct

    def label(self) -> str:
        """The range the eight steps stand for: "0…−49%"."""
        return f"{_pct(self.top_pct)}…{_pct(self.bottom_pct)}%"

    def line(self, values: np.ndarray) -> str:
        """One character per column: its step, ``PENDING`` where not known."""
        out = []
        for v in np.asarray(values, dtype=np.float64).tolist():
            if not math.isfinite(v):
                out.append(PENDING)
                continue
            k = round(v / self.step_pct) - self.bottom
            out.append(SPARK[min(max(k, 0), len(SPARK) - 1)])
        return "".join(out)


def shared_scale(values: np.ndarray) -> Scale:
    """The scale for all of ``values`` (%): a whole number of percent a step, at least
    ``MIN_STEP_PCT``, the smallest that fits them and 0 in eight steps; 0 is a step of its
    own (no drift: the top step when the levels drift down, as PCM does)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    high = max(float(finite.max()), 0.0) if finite.size else 0.0
    low = min(float(finite.min()), 0.0) if finite.size else 0.0
    steps = len(SPARK) - 1
    step = max(MIN_STEP_PCT, math.floor((high - low) / (steps + 1)))
    while True:  # ends within a few steps: (high − low) / step ≤ steps − 1 always fits
        top = max(round(high / step), 0)
        if round(low / step) >= top - steps:
            return Scale(float(step), top - steps)
        step += 1


def _pct(value: float) -> str:
    if abs(value) < 1e-9:
        return "0"
    return f"{value:+g}".replace("-", "−")
