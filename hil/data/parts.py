"""A recorded run cut into its parts — each procedure it ran, from its start document to its
end — and the run's record turned into dataset attributes.

A drift run holds two parts (its programming, then the drift measurement), a demo several;
a part is named after its procedure, a second one of the same procedure ``program-2`` and so
on, in the order they started.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from pcm_hil.documents.base import Document, UnknownDocument
from pcm_hil.documents.events import Event
from pcm_hil.records.values import as_text


@dataclass
class Part:
    """One procedure of a run: its name in the run, its start, steps (in order) and end (None
    when it was cut off)."""

    name: str
    procedure: str
    start: Document | UnknownDocument | None
    steps: list[Document | UnknownDocument] = field(default_factory=list)
    end: Document | UnknownDocument | None = None
    wall_times_s: list[float] = field(default_factory=list)
    """Wall time of each step, s since the epoch."""


def split_parts(events: list[Event]) -> list[Part]:
    """The run's parts in the order they started. A step or end goes to the newest part of
    its procedure; one without a start before it opens a part of its own."""
    parts: list[Part] = []
    open_parts: dict[str, Part] = {}
    counts: dict[str, int] = {}

    def begin(procedure: str, start) -> Part:
        counts[procedure] = counts.get(procedure, 0) + 1
        name = procedure if counts[procedure] == 1 else f"{procedure}-{counts[procedure]}"
        part = Part(name, procedure, start)
        parts.append(part)
        open_parts[procedure] = part
        return part

    for event in events:
        document, procedure = event.document, event.procedure
        if event.kind == "start":
            begin(procedure, document)
            continue
        part = open_parts.get(procedure)
        if part is None or part.end is not None:
            part = begin(procedure, None)
        if event.kind == "end":
            part.end = document
        else:
            part.steps.append(document)
            part.wall_times_s.append(event.wall_time_s)
    return parts


def run_attributes(info, procedure: str | None = None) -> dict[str, Any]:
    """The run's record as attributes a NetCDF file can hold (text and numbers only): what,
    when, on what chip, with what metadata."""
    attrs: dict[str, Any] = {
        "run_id": info.id,
        "run_procedure": info.procedure,
        "status": info.status,
        "started_at": _iso(info.started_at),
        "ended_at": _iso(info.ended_at),
        "resource": info.resource,
        "seed": info.seed,
        "software_version": info.software_version,
        "protocol_version": info.protocol_version,
        "host": info.host,
        "note": info.note,
        "tags": ",".join(info.tags) if info.tags else None,
        "error": info.error,
        "parameters": json.dumps(info.parameters, sort_keys=True) if info.parameters else None,
    }
    if procedure is not None:
        attrs["procedure"] = procedure
    for key, value in (info.identity or {}).items():
        attrs[f"chip_{key}"] = value
    for key in ("tiles", "rows", "columns", "g_max_uS"):
        if info.chip and info.chip.get(key) is not None:
            attrs[f"chip_{key}"] = info.chip[key]
    for key, value in (info.meta or {}).items():
        plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        attrs[f"meta_{key}"] = value if plain else as_text(value)  # NetCDF has no booleans
    return {k: v for k, v in attrs.items() if v is not None}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")
