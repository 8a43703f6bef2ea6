"""The phase line: what the run is doing right now and for how long, with a spinner, so the
dashboard never looks hung while no document arrives — a procedure between steps (mapping
weights, waiting for a drift read's time) or a procedure between the procedures it runs
(training in software, say).

``Phase`` is kept by ``DashboardState`` (``advance`` at each event: no array work);
``phase_text`` words it at a frame's wall time, so the elapsed time and the spinner move with
every frame the live loop's timer draws even when no event arrives."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pcm_hil.ui.dashboard.format import duration

#: The spinner's frames, one each quarter of a second of the phase.
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_HZ = 4.0


class _Progress(Protocol):
    name: str
    status: str
    done: int
    total: int
    started: float
    last: float


@dataclass(frozen=True)
class Phase:
    """The running ``procedure`` and since when (wall time) it has been at its current step;
    or, with ``after``, since a procedure it runs (``after``) ended ``after_status``."""

    procedure: str
    since: float
    after: str | None = None
    after_status: str | None = None


def advance(
    phase: Phase | None, kind: str, name: str, wall: float, status: str, running: list[str]
) -> Phase:
    """The phase after an event of ``kind`` from procedure ``name`` at ``wall``; ``status``
    the procedure's status after it, ``running`` the procedures still running, in order."""
    if kind == "start":
        return Phase(name, wall)
    if kind == "step":
        if phase is not None and phase.procedure == name and phase.after is not None:
            return phase  # the procedure's own step between the procedures it runs
        return Phase(name, wall)
    others = [p for p in running if p != name]
    if others:  # a procedure it was running in goes on
        return Phase(others[-1], wall, after=name, after_status=status)
    return Phase(name, wall)


def phase_text(
    phase: Phase | None,
    procedures: Iterable[_Progress],
    status: str,
    now: float,
) -> tuple[str, str, str]:
    """(mark, what, how long) at wall time ``now``: a spinner frame, what is under way and
    for how long while the run is running; else its end mark, status and duration, and
    the time of its last event."""
    shown = list(procedures)
    if not shown:
        return "…", "waiting for the first event", ""
    if status != "running" or phase is None:
        last = max(p.last for p in shown)
        took = last - min(p.started for p in shown)
        mark = {"completed": "✓", "failed": "✗", "killed": "✗", "cancelled": "■"}.get(status, "■")
        when = time.strftime("%H:%M:%S", time.localtime(last))
        return mark, f"{status} in {duration(took)}", f"last event {when}"
    elapsed = max(now - phase.since, 0.0)
    spinner = SPINNER[int(elapsed * SPINNER_HZ) % len(SPINNER)]
    if phase.after is not None:
        what = f"{phase.procedure} · working since {phase.after} {phase.after_status}"
        return spinner, what, duration(elapsed)
    progress = next((p for p in shown if p.name == phase.procedure), None)
    if progress is None or progress.status != "running":
        return spinner, f"{phase.procedure}", duration(elapsed)
    if progress.total and progress.done >= progress.total:
        what = f"{progress.name} · finishing"
    elif progress.total:
        what = f"{progress.name} · working on step {progress.done + 1}/{progress.total}"
    else:
        what = f"{progress.name} · working on step {progress.done + 1}"
    return spinner, what, duration(elapsed)
