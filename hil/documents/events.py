"""What procedures emit as they run: a stream of events, each carrying one typed document,
and who listens.

A procedure emits its start document, one step document per batch of measurements (with
progress ``done``/``total``) and its end document (completed, cancelled or failed). Progress
bars, the dashboard and the run store are listeners with one signature: ``listener(event)``.
A procedure neither knows nor cares who listens. A listener that raises KeyboardInterrupt
cancels the procedure exactly as Ctrl-C does. The run store gives the same ``Event`` back,
with its sequence number in the run (``seq``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pcm_hil.documents.base import Document, DocumentKind, End, Start, Status, UnknownDocument


@dataclass(frozen=True)
class Event:
    """One document of a running (or recorded) procedure, with the procedure's progress
    (``done`` of ``total`` steps) and the wall time it was emitted, s since the epoch."""

    document: Document | UnknownDocument
    done: int
    total: int
    wall_time_s: float = field(default_factory=time.time)
    seq: int | None = None
    """Its place in the run, counted from 0 (recorded events only)."""

    @property
    def kind(self) -> DocumentKind:
        return self.document.kind

    @property
    def procedure(self) -> str:
        return self.document.procedure


Listener = Callable[[Event], None]


class Emitter:
    """Hands a procedure's documents to its listeners, in order, with its progress."""

    def __init__(self, listeners: Iterable[Listener] = (), total: int = 0) -> None:
        self.listeners = tuple(listeners)
        self.total = total
        self.done = 0

    def emit(self, document: Document) -> None:
        event = Event(document, self.done, self.total)
        for listener in self.listeners:
            listener(event)

    def step(self, document: Document, advance: int = 1) -> None:
        """Record one batch of measurements and advance progress by ``advance``."""
        self.done = min(self.done + advance, self.total) if self.total else self.done + advance
        self.emit(document)

    def end(self, document: End) -> None:
        """The last event. A second Ctrl-C while it is handed out is ignored."""
        try:
            self.emit(document)
        except KeyboardInterrupt:
            pass


@dataclass
class Run:
    """How a procedure's body ended: ``completed`` or ``cancelled``."""

    status: Status = "completed"


@contextmanager
def cancellable(emitter: Emitter, start: Start | None, end: type[End]) -> Iterator[Run]:
    """Emit ``start`` (``None``: there is no listener to build it for), run the body; Ctrl-C ends the body with status ``cancelled`` (what was
    measured so far stays with the caller); any other error emits ``end`` as ``failed``, with
    the error, and propagates. The caller emits ``end`` with its summary afterwards."""
    if start is not None:
        emitter.emit(start)
    run = Run()
    try:
        yield run
    except KeyboardInterrupt:
        run.status = "cancelled"
    except Exception as error:
        emitter.end(end(status="failed", error=f"{type(error).__name__}: {error}"))
        raise


def summary_values(document: Any) -> dict[str, Any]:
    """A document's values without those that are None (what a summary shows)."""
    return {k: v for k, v in document.values().items() if v is not None}
