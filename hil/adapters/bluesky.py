"""A recorded run as bluesky's documents (the ``event-model`` package, the ``bluesky`` extra):
``pcm-hil runs export ID --format bluesky``, or ``run_documents(ID)`` in Python, for a lab that
stores its measurements in tiled or databroker.

The mapping:

- one **start** document for the run: its uid derived from the store's path, the run's id and
  start time (the same run always exports to the same uid); ``plan_name`` the procedure,
  ``scan_id`` the run's id, and its resource, the chip's identity and configuration, the
  software version, parameters, seed, metadata, note and tags;
- one **descriptor** per kind of pcm-hil document in the run (``program.iteration``,
  ``drift.read``, ``infer.accuracy``, …: the stream's name), its data keys the document's
  fields — arrays with their numpy dtype and ``None`` (variable) lengths, numbers, strings,
  booleans; a mapping or a list of mappings travels as JSON text (``dtype`` string);
- one **event** per pcm-hil document, in the order recorded, timed when it was emitted;
- one **stop** document: ``success`` for a completed run, ``abort`` for a cancelled one,
  ``fail`` (with the error as its reason) for a failed one; none for a run still running.

Every uid comes from the store's resolved path, the run and the document's place in it: the
same run exports to the same documents every time (re-ingesting it duplicates nothing).

Arrays travel inline, as lists: a million-device read is a list of a million numbers. The
documents are validated with event-model's own schema validators as they are made.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pcm_hil.records.store import RunStore

STOP_STATUS: dict[str, Literal["success", "abort", "fail"]] = {
    "completed": "success",
    "cancelled": "abort",
}


def run_documents(
    run_id: int, store: RunStore | str | os.PathLike[str] | None = None
) -> list[tuple[str, Mapping[str, Any]]]:
    """The run as bluesky documents, ``(name, document)`` in order: start, descriptors and
    events as the run's documents come, stop."""
    return list(iter_documents(run_id, store))


def iter_documents(
    run_id: int, store: RunStore | str | os.PathLike[str] | None = None
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``run_documents``, one at a time (a long run is never all in memory as documents)."""
    import event_model

    opened = store if isinstance(store, RunStore) else RunStore(store, readonly=True)
    try:
        info = opened.run(run_id)
        # every uid from the store's resolved path, the run and the document's place in it:
        # exporting the same run again gives the same documents
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"pcm-hil:{Path(opened.path).resolve()}")
        run_key = f"{info.id}:{info.started_at!r}"

        def uid(part: str) -> str:
            return str(uuid.uuid5(namespace, f"{run_key}:{part}"))

        run = event_model.compose_run(
            uid=uid("start"), time=info.started_at, metadata=_start_metadata(info)
        )
        yield "start", run.start_doc
        streams: dict[str, Any] = {}
        last = info.started_at
        for seq, event in enumerate(opened.events(run_id)):
            document = event.document
            values = {k: _value(v) for k, v in document.values().items()}
            stream = streams.get(document.name)
            if stream is None:
                stream = streams[document.name] = run.compose_descriptor(
                    name=document.name,
                    data_keys=_data_keys(document),
                    uid=uid(f"descriptor:{document.name}"),
                    time=event.wall_time_s,
                )
                yield "descriptor", stream.descriptor_doc
            yield (
                "event",
                stream.compose_event(
                    data=values,
                    timestamps=dict.fromkeys(values, event.wall_time_s),
                    uid=uid(f"event:{seq}"),
                    time=event.wall_time_s,
                ),
            )
            last = event.wall_time_s
        if info.status == "running":  # not ended yet: no stop document (a run in progress)
            return
        yield (
            "stop",
            run.compose_stop(
                exit_status=STOP_STATUS.get(info.status, "fail"),
                reason=info.error or ("" if info.status in STOP_STATUS else info.status),
                uid=uid("stop"),
                time=info.ended_at if info.ended_at is not None else last,
            ),
        )
    finally:
        if not isinstance(store, RunStore):
            opened.close()


def export_bluesky(
    run_id: int,
    path: str | os.PathLike[str] | None = None,
    store: RunStore | str | os.PathLike[str] | None = None,
) -> Path:
    """Write the run's documents to ``path`` (default ``run-ID.bluesky.jsonl``) as JSON
    lines, ``[name, document]`` each — what bluesky's serializers read and write."""
    target = Path(path if path is not None else f"run-{run_id}.bluesky.jsonl").absolute()
    with target.open("w", encoding="utf-8") as out:
        for name, document in iter_documents(run_id, store):
            out.write(json.dumps([name, document], allow_nan=False, separators=(",", ":")))
            out.write("\n")
    return target


def _start_metadata(info) -> dict[str, Any]:
    found = {
        "plan_name": info.procedure,
        "scan_id": info.id,
        "pcm_hil_run": info.id,
        "resource": info.resource,
        "identity": info.identity,
        "chip": info.chip,
        "protocol_version": info.protocol_version,
        "software_version": info.software_version,
        "parameters": info.parameters,
        "seed": info.seed,
        "host": info.host,
        "meta": info.meta,
        "note": info.note,
        "tags": list(info.tags),
    }
    return json.loads(json.dumps(_json(found), allow_nan=False))


def _data_keys(document: Any) -> dict[str, dict[str, Any]]:
    """The data keys of a document's stream: each field's type from the document class's
    annotations (``float | None`` is a number even when this document holds None), from the
    value for a document of a class this pcm-hil does not know."""
    source = f"pcm-hil:{document.name}"
    try:
        hints = typing.get_type_hints(type(document)) if dataclasses.is_dataclass(document) else {}
    except Exception:  # an annotation that does not resolve here: judge by the values
        hints = {}
    keys = {}
    for name, value in document.values().items():
        kind = _kind_of(hints.get(name), value)
        key: dict[str, Any] = {"source": source, "dtype": kind, "shape": []}
        if isinstance(value, np.ndarray):
            key.update(dtype="array", dtype_numpy=value.dtype.str, shape=[None] * value.ndim)
        elif kind == "array":
            key["shape"] = [None]
        keys[name] = key
    return keys


def _kind_of(annotation: Any, value: Any) -> str:
    """event-model's dtype of a field: from its annotation when it names one plain type
    (None aside), else from its value."""
    if annotation is not None:
        base = annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            base = options[0] if len(options) == 1 else annotation
        base = typing.get_origin(base) or base
        for kind, accepted in _KINDS:
            if isinstance(base, type) and issubclass(base, accepted):
                return kind
    for kind, accepted in _KINDS:
        if isinstance(value, accepted):
            return kind
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
        return "array"
    return "string"


#: Python types → event-model's dtypes, in the order they are tried (bool before int).
_KINDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("array", np.ndarray),
    ("boolean", (bool, np.bool_)),
    ("integer", (int, np.integer)),
    ("number", (float, np.floating)),
    ("string", str),
)


def _value(value: Any) -> Any:
    """A document field as event data: arrays as lists, numbers as numbers (NaN as None),
    mappings and other structures as JSON text."""
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value):
        return _json(list(value))
    if isinstance(value, dict | list | tuple):
        return json.dumps(_json(value), allow_nan=False, sort_keys=True)
    return _json(value)


def _json(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
