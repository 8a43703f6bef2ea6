"""Waiting, the same on a real chip and on the emulator.

``ChipClock.wait(s)`` advances a virtual chip clock by ``s`` at once, and on a real-time chip
waits ``s`` of wall time — so a procedure that waits a day runs unchanged on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pcm_hil.targets.protocol import Timed


class ChipClock:
    """The chip's clock as procedures see it: ``now()`` and ``wait(seconds)``."""

    def __init__(self, chip: Timed, sleep: Callable[[float], None] = time.sleep) -> None:
        self.chip = chip
        self.virtual = chip.clock_mode().upper().startswith("VIRT")
        # a replayed session (resource replay:…) answers the clock from its recording: the
        # polls a wait made are answered at once, so sleeping would only slow the replay
        replaying = getattr(getattr(chip, "transport", None), "replaying", False)
        self._sleep = (lambda _seconds: None) if replaying is True else sleep

    def now(self) -> float:
        """Seconds on the chip's clock."""
        return self.chip.time()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the chip's clock."""
        if seconds <= 0:
            return
        if self.virtual:
            self.chip.advance(seconds)
            return
        deadline = self.chip.time() + seconds
        while (remaining := deadline - self.chip.time()) > 0:
            self._sleep(min(remaining, 1.0))

    def wait_until(self, t_s: float) -> None:
        """Wait until the chip's clock reads ``t_s``."""
        self.wait(t_s - self.now())
