"""What procedures emit as they run: a stream of events, and who listens.

A procedure emits ``start`` (its parameters), one ``step`` per batch of measurements (with
progress ``done``/``total``), and ``end`` (completed, cancelled or failed). Progress bars, the
dashboard and the run store are listeners with one signature: ``listener(event)``. A
procedure neither knows nor cares who listens. A listener that raises KeyboardInterrupt
cancels the procedure exactly as Ctrl-C does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["start", "step", "end"]
Status = Literal["completed", "cancelled", "failed"]


@dataclass(frozen=True)
class Event:
    """One record of a running procedure. ``data`` holds scalars and numpy arrays."""

    kind: EventKind
    procedure: str
    done: int
    total: int
    data: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class Emitter:
    """Hands a procedure's events to its listeners, in order."""

    def __init__(self, procedure: str, listeners: Iterable[Listener] = (), total: int = 0) -> None:
        self.procedure = procedure
        self.listeners = tuple(listeners)
        self.total = total
        self.done = 0

    def _emit(self, kind: EventKind, data: dict[str, Any]) -> None:
        event = Event(kind, self.procedure, self.done, self.total, data)
        for listener in self.listeners:
            listener(event)

    def start(self, **parameters: Any) -> None:
        self._emit("start", parameters)

    def step(self, advance: int = 1, **measurements: Any) -> None:
        """Record one batch of measurements and advance progress by ``advance``."""
        self.done = min(self.done + advance, self.total) if self.total else self.done + advance
        self._emit("step", measurements)

    def end(self, status: Status, **summary: Any) -> None:
        """The last event. A second Ctrl-C while it is handed out is ignored."""
        try:
            self._emit("end", {"status": status, **summary})
        except KeyboardInterrupt:
            pass


@dataclass
class Run:
    """How a procedure's body ended: ``completed`` or ``cancelled``."""

    status: Status = "completed"


@contextmanager
def cancellable(emitter: Emitter, **parameters: Any) -> Iterator[Run]:
    """Emit ``start``, run the body; Ctrl-C ends the body with status ``cancelled`` (what was
    measured so far stays with the caller); any other error emits ``end`` as ``failed`` and
    propagates. The caller emits ``end`` with its summary afterwards."""
    emitter.start(**parameters)
    run = Run()
    try:
        yield run
    except KeyboardInterrupt:
        run.status = "cancelled"
    except Exception as error:
        emitter.end("failed", error=f"{type(error).__name__}: {error}")
        raise
