"""Migrating a run store written by an older pcm-hil, in place, so nothing recorded is lost.

Version 3 adds columns (``_to_v3``); before it, version 1 (pcm-hil 0.1, SQLite ``user_version`` 0) stored each event as a procedure name, a
kind and a dict of values, and named a few values differently. Version 2 stores each event's
typed document: its name and schema version beside its fields. The migration names every
version-1 event's document from its procedure and kind, renames the values that changed, and
keeps any event it cannot place as it was, under a document name no class has (it then
reads back as an ``UnknownDocument``). ``RunStore`` runs it in one transaction under the
write lock, after copying the old store beside itself: a failure leaves the store as it was.
"""

from __future__ import annotations

import json
import sqlite3

from pcm_hil.records.schema import EVENTS_COLUMNS

#: (procedure, kind) of version 1 -> the document name of version 2.
DOCUMENTS_V1 = {
    (procedure, kind): f"{procedure}.{name}"
    for procedure, step in (
        ("program", "iteration"),
        ("drift", "read"),
        ("programming-curve", "point"),
        ("accumulation", "point"),
        ("read-noise", "read"),
        ("infer", "accuracy"),
        ("train", "epoch"),
        ("demo", "stage"),
    )
    for kind, name in (("start", "start"), ("step", step), ("end", "end"))
}

#: Values renamed between version 1 and 2, per document name: old -> new.
RENAMED_V1 = {
    "program.iteration": {
        "read_uS": "conductance_uS",
        "done": "finished",
        "stuck": "stuck_devices",
    },
}


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a store of schema ``version`` up to the current one (see the module), inside the
    caller's transaction."""
    if version == 0:
        _from_v1(db)
    if version < 3:
        _to_v3(db)


def _to_v3(db: sqlite3.Connection) -> None:
    """Version 3: the runs' metadata, note, tags and printed summary; each array's codec
    (the arrays stored before it are raw)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for column in ("meta", "note", "tags", "summary"):
        if column not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
    if "codec" not in {row[1] for row in db.execute("PRAGMA table_info(arrays)")}:
        db.execute("ALTER TABLE arrays ADD COLUMN codec TEXT NOT NULL DEFAULT 'raw'")


def _from_v1(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "chip" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN chip TEXT")
    db.execute("ALTER TABLE events RENAME TO events_v1")
    db.execute(f"CREATE TABLE events {EVENTS_COLUMNS}")
    rows = db.execute(
        "SELECT run_id, seq, kind, procedure, done, total, wall_time, data FROM events_v1"
    ).fetchall()
    for run_id, seq, kind, procedure, done, total, wall_time, data in rows:
        name = DOCUMENTS_V1.get((procedure, kind))
        values = json.loads(data)
        version = 1
        if name is None:  # not a document of pcm-hil 0.1's procedures: keep it as it was
            name, version = f"{procedure}.{kind}", 0
        elif name == "infer.accuracy":
            accuracy = {
                key.removeprefix("accuracy_"): values.pop(key)
                for key in [k for k in values if k.startswith("accuracy_")]
            }
            values = {**values, "accuracy": accuracy, "chip": None}
        for old, new in RENAMED_V1.get(name, {}).items():
            if old in values:
                values[new] = values.pop(old)
            db.execute(
                "UPDATE arrays SET name = ? WHERE run_id = ? AND seq = ? AND name = ?",
                (new, run_id, seq, old),
            )
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                seq,
                kind,
                procedure,
                name,
                version,
                done,
                total,
                wall_time,
                json.dumps(values),
            ),
        )
    db.execute("DROP TABLE events_v1")
