"""Drawing the dashboard live: ``LiveDashboard``, a procedure listener that draws frames
with ``rich.live.Live``, throttled to ``refresh_hz`` and to a share ``max_overhead`` of the
procedure's time, plus a frame after each procedure's end and the last one at close — and,
while no event arrives (software work, a wait), frames from a timer, so the phase line's
elapsed time and spinner keep moving."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.segment import Segment

from pcm_hil.documents.events import Event
from pcm_hil.records.store import RunInfo
from pcm_hil.ui.dashboard.layout import render
from pcm_hil.ui.dashboard.state import DashboardState


class _Frozen:
    """A frame already rendered to lines: ``Live`` may draw it again (it does when stopped)
    without laying the dashboard out again."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        new_line = Segment.line()
        for k, line in enumerate(self.lines):
            yield from line
            if k < len(self.lines) - 1:
                yield new_line


class LiveDashboard:
    """A listener that shows the dashboard live on ``console`` (default: stderr).

    Each event updates the state (microseconds). A frame is drawn at the first event; then
    at most ``refresh_hz`` times a second, and only while the time spent drawing stays within
    ``max_overhead`` of the time since the first event — so however slow the terminal, the
    dashboard takes at most that share of a procedure's time (bar the first and last frame).
    After a procedure's end the next event draws a frame whatever the throttle says, and
    ``close()`` draws the last one (call it: the CLI does, in ``finally``). The frame fills
    the terminal less one line; ``screen=True`` uses the alternate screen instead and prints
    the last frame on the normal screen at close. On a console that is not a terminal (a
    file, a pipe) only the last frame is drawn, at close. ``clock`` tells the time for the
    throttle and the drawing time (seconds, monotonic); ``wall_clock`` the time a frame is
    drawn at (seconds since the epoch, as events' ``wall_time_s``).

    While no event arrives a timer draws frames too (``tick``, on the same throttle — and,
    once no event has come for ``idle_s``, at least one frame each ``idle_s`` whatever the
    overhead budget says: nothing measures then), so the phase line's elapsed time and
    spinner move and the dashboard never looks hung during software work. ``timer``: a thread ticking every 1/``refresh_hz`` s (at most 4 a second)
    from the first frame to ``close``; by default only with the real clock — a caller with
    its own clock calls ``tick()`` when it moves it. Events and ticks take turns (a lock), so
    a frame never sees the state half updated."""

    def __init__(
        self,
        console: Console | None = None,
        refresh_hz: float = 4.0,
        *,
        state: DashboardState | None = None,
        screen: bool = False,
        max_overhead: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        timer: bool | None = None,
        idle_s: float = 1.0,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.state = state or DashboardState()
        self.interval = 1.0 / refresh_hz if refresh_hz > 0 else 0.0
        self.max_overhead = max_overhead
        self.screen = screen
        self.clock = clock
        self.wall_clock = wall_clock
        self.timer = clock is time.monotonic if timer is None else timer
        self.idle_s = idle_s
        self._last_event = -math.inf
        self.frames = 0
        self.draw_seconds = 0.0
        self._live: Live | None = None
        self._first: float | None = None
        self._last = -math.inf
        self._last_took = 0.0
        self._ended = False
        self._drawn_version = -1
        self._closed = False
        self._lock = threading.RLock()  # events, ticks and close take turns
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None  # why drawing stopped, if it did

    def set_run(
        self, info: RunInfo | None, resource: str | None = None, identity: dict | None = None
    ) -> None:
        self.state.set_run(info, resource, identity)

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        with self._lock:
            try:
                self.state.update(event)
                if not self.console.is_terminal:
                    return  # a file or a pipe: only the last frame is drawn, at close
                now = self._last_event = self.clock()
                if self._first is None:
                    self._first = now
                    self.refresh()
                elif self._ended or self._due(now):
                    self.refresh()
                self._ended = event.kind == "end"
            except Exception as error:  # a display bug must never stop a measurement
                self._fail(error)

    def tick(self) -> None:
        """Draw a frame if one is due (the throttle of events), or if no event came for
        ``idle_s`` and no frame either: the time goes on, and the phase line shows it.
        Nothing before the first frame."""
        with self._lock:
            if self._closed or self.error is not None or self._first is None:
                return
            try:
                now = self.clock()
                idle = min(now - self._last_event, now - self._last) >= self.idle_s
                if idle or self._due(now):
                    self.refresh()
            except Exception as error:  # a display bug must never stop a measurement
                self._fail(error)

    def _tick_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.tick()

    def _fail(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            except Exception:
                pass

    def _due(self, now: float) -> bool:
        if now - self._last < self.interval:
            return False
        if self.max_overhead <= 0 or self._first is None:  # no budget, or nothing drawn yet
            return True
        return self.draw_seconds + self._last_took <= self.max_overhead * (now - self._first)

    def _frame(self) -> _Frozen:
        width, height = self.console.size
        if not self.screen and self.console.is_terminal:
            height -= 1  # the cursor's line: a frame never scrolls the terminal
        width, height = max(width, 1), max(height, 1)
        options = self.console.options.update_dimensions(width, height)
        screen = render(self.state, width, height, now=self.wall_clock())
        return _Frozen(self.console.render_lines(screen, options))

    def refresh(self) -> None:
        """Draw a frame now (on a terminal; elsewhere the last frame is drawn at close)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        if self._closed or self.error is not None or not self.console.is_terminal:
            return
        started = self.clock()
        if self._first is None:
            self._first = started
        frame = self._frame()
        if self._live is None:
            terminal = self.console.is_terminal
            self._live = Live(
                frame,
                console=self.console,
                auto_refresh=False,
                transient=False,
                screen=self.screen,
                redirect_stdout=terminal and _isatty(sys.stdout),
                redirect_stderr=terminal and _isatty(sys.stderr),
            )
            self._live.start(refresh=True)
            if self.timer and self._ticker is None:
                seconds = max(self.interval, 0.25)
                self._ticker = threading.Thread(
                    target=self._tick_every, args=(seconds,), name="dashboard-timer", daemon=True
                )
                self._ticker.start()
        else:
            self._live.update(frame, refresh=True)
        self._drawn_version = self.state.version
        self._last = self.clock()
        self._last_took = self._last - started
        self.frames += 1
        self.draw_seconds += self._last_took

    def close(self) -> None:
        """Stop the timer, draw the last frame (if anything changed since the one shown) and
        leave it."""
        self._stop.set()
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=5)
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        live, self._live = self._live, None
        started = self.clock()
        try:
            if self.error is not None:
                self.console.print(f"dashboard stopped drawing: {self.error}", style="dim")
            elif live is None:  # not a terminal, or nothing drawn yet
                if self.state.version:
                    self.console.print(self._frame())
                    self.frames += 1
            else:
                if self.state.version != self._drawn_version:
                    live.update(self._frame(), refresh=False)
                    self.frames += 1
                live.stop()  # draws the frame once more, as the last
                if self.screen:
                    self.console.print(self._frame())
        finally:
            if live is not None:
                live.stop()  # idempotent: a no-op once stopped
        self.draw_seconds += self.clock() - started

    def __enter__(self) -> LiveDashboard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False
