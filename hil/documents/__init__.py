"""Typed run documents: what every procedure emits (``base`` for the machinery, ``events``
for the stream and its listeners, one module per procedure family for its documents)."""

from pcm_hil.documents.base import Document, End, Start, Status, Step, UnknownDocument
from pcm_hil.documents.events import Emitter, Event, Listener, Run, cancellable

__all__ = [
    "Document",
    "Emitter",
    "End",
    "Event",
    "Listener",
    "Run",
    "Start",
    "Status",
    "Step",
    "UnknownDocument",
    "cancellable",
]
