"""The chip's clock: virtual (moves only when told) or real time (wall clock).

Programming times and drift are counted on it. A virtual year costs no wall time.
"""

from __future__ import annotations

import time


class VirtualClock:
    """Time in seconds that moves only by ``advance``."""

    mode = "VIRTual"

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += float(seconds)


class RealTimeClock:
    """Seconds of wall time since the clock was made (monotonic)."""

    mode = "REAL"

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._origin

    def advance(self, seconds: float) -> None:
        raise NotImplementedError("a real-time clock cannot be advanced")
