"""The run store: every procedure's run, recorded as it happens, in SQLite (WAL mode).

Each event a procedure emits is committed in its own transaction, so a run killed at any
moment (SIGKILL, a pulled cable, a power cut of the host process) keeps every event before the
kill, and the database stays readable — SQLite's write-ahead log is built for exactly that,
where an HDF5 file whose writer dies can be left corrupt. Another process (the dashboard) may
read a run while it is written.

Each event is stored as its typed document (``pcm_hil.documents``): the document's name and
schema version beside its fields (scalars as JSON, arrays as binary blobs), read back as the
same class. The store's own schema version is SQLite's ``user_version`` (``STORE_VERSION``); a
store written by an older pcm-hil is migrated in place when opened to record (``migrate``).

Where: ``$PCM_HIL_RUNS`` if set, else ``$XDG_DATA_HOME/pcm-hil/runs.sqlite`` (by default
``~/.local/share/pcm-hil/runs.sqlite``); every command takes ``--runs PATH``. Only the default
location's folder is made when missing: a store named elsewhere in a folder that does not exist
is refused (a mistyped path would otherwise scatter stores about).

Opened ``readonly=True`` (``runs``, ``dashboard``, the ``--resume`` readers) a store is only
read: no journal mode set, no table made, no migration, no file or folder created (SQLite's
-wal and -shm files exist while it reads, and are gone when it closes unless a writer keeps
them) — a store that does not exist yet reads as one without runs. Every failure to open, read
or write a store is a ``StoreError``: one line naming the file and what is wrong, the file
left as it was.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pcm_hil.documents.base import Document, UnknownDocument, document_type
from pcm_hil.documents.events import Event
from pcm_hil.protocols.chip import ChipInfo
from pcm_hil.records.arrays import decode, encode
from pcm_hil.records.schema import EVENTS_COLUMNS, SCHEMA, STORE_VERSION
from pcm_hil.records.store_file import (
    StoreError,
    UnknownRunError,
    check_file,
    guarded,
    store_error,
)
from pcm_hil.records.values import jsonable, meta_matches, split_values

__all__ = [
    "EVENTS_COLUMNS",
    "STORE_VERSION",
    "Recorder",
    "RunInfo",
    "RunStore",
    "StoreError",
    "UnknownRunError",
    "default_path",
]

log = logging.getLogger(__name__)


def default_path() -> Path:
    """``$PCM_HIL_RUNS``, else ``$XDG_DATA_HOME/pcm-hil/runs.sqlite``."""
    if os.environ.get("PCM_HIL_RUNS"):
        return Path(os.environ["PCM_HIL_RUNS"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pcm-hil" / "runs.sqlite"


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("pcm-hil")
    except Exception:  # not installed as a distribution
        return "unknown"


@dataclass
class RunInfo:
    """A run's record: what, when, on what, and how it ended."""

    id: int
    procedure: str
    started_at: float
    ended_at: float | None
    status: str
    error: str | None
    resource: str | None
    identity: dict | None
    chip: dict | None
    """What the chip reported of itself (``ChipInfo`` without the identity)."""
    protocol_version: str | None
    software_version: str | None
    parameters: dict
    seed: int | None
    host: str | None
    pid: int | None
    meta: dict = field(default_factory=dict)
    """The experiment's metadata (sample, wafer, die, operator, …): names to values."""
    note: str | None = None
    tags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


#: Pages of write-ahead log (4 KiB each) after which a commit checkpoints it into the store.
WAL_CHECKPOINT_PAGES = 16384

#: The columns of a run's record, in the order ``RunInfo`` takes them.
_RUN_COLUMNS = ", ".join(f.name for f in fields(RunInfo))


class RunStore:
    """A run store file. Safe to open from several processes at once.

    ``readonly``: only read it (see the module); a store that needs migrating is refused
    then, as migrating writes. Raises ``StoreError`` for whatever keeps it from being opened.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        try:
            exists = check_file(self.path, readonly, default_path())
            self.db = self._open_readonly(exists) if readonly else self._open_writable(exists)
        except (sqlite3.Error, OSError) as error:
            raise store_error(self.path, error) from error

    def _open_writable(self, exists: bool) -> sqlite3.Connection:
        folder = self.path.parent
        if exists and not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: the run store is read-only (permission denied)")
        if not os.access(folder, os.W_OK):  # for the store itself, or its write-ahead log
            raise StoreError(
                f"{self.path}: cannot write in its folder {folder} (permission denied)"
            )
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            version = self._version()
            self._check_tables(version)  # before anything is written into it
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # every commit survives a killed process
            # a 1M-device iteration is ~4 MB: checkpoint every 64 MB of log (16384 pages), not
            # at every commit; the last connection to close folds it in (crash safety is the
            # log's, unchanged)
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            if version != STORE_VERSION:
                self._upgrade()
        except BaseException:
            self.db.close()  # SQLite removes the side files it made
            raise
        return self.db

    def _open_readonly(self, exists: bool) -> sqlite3.Connection:
        """A connection that only reads: through the write-ahead log when one is there (a
        writer has the store open); else opened for writing but refusing every write, so
        that SQLite removes the side files it makes while reading when it closes; else, when
        the store cannot be written at all, as an immutable file. A store that does not exist
        or holds nothing yet reads as an empty one, in memory."""
        if not exists or self.path.stat().st_size == 0:
            return _empty_store()
        uri = self.path.absolute().as_uri()
        if Path(f"{self.path}-wal").exists():
            uri += "?mode=ro"
        elif os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
            uri += "?mode=rw"
        else:
            uri += "?mode=ro&immutable=1"
        self.db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
        try:
            version = self._version()
            if version == 2 and self._check_tables(version):
                # version 3 only added columns: read a version-2 store as it is, through
                # views (in memory, the file untouched) giving them their defaults
                self.db.execute(
                    "CREATE TEMP VIEW runs AS SELECT *, NULL AS meta, NULL AS note, NULL AS tags,"
                    " NULL AS summary FROM main.runs"
                )
                self.db.execute(
                    "CREATE TEMP VIEW arrays AS SELECT *, 'raw' AS codec FROM main.arrays"
                )
                version = STORE_VERSION
            self.db.execute("PRAGMA query_only = 1")
            if not self._check_tables(version):
                self.db.close()
                return _empty_store()
            if version != STORE_VERSION:
                raise StoreError(
                    f"{self.path}: a run store of an older pcm-hil (version {max(version, 1)})"
                    " to be migrated, and this command only reads; the next run recorded into"
                    " it migrates it in place (a copy kept beside it)"
                )
        except BaseException:
            self.db.close()
            raise
        return self.db

    def _check_tables(self, version: int) -> bool:
        """Whether the store holds any tables; refuses an SQLite file of something else."""
        tables = {
            row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if version == 0 and tables and "events" not in tables:
            raise StoreError(
                f"{self.path}: not a pcm-hil run store (an SQLite file of other tables)"
            )
        return bool(tables)

    def _version(self) -> int:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > STORE_VERSION:
            raise StoreError(
                f"{self.path} is a run store of version {version}; this pcm-hil reads up to "
                f"{STORE_VERSION}: update pcm-hil"
            )
        return version

    def _upgrade(self) -> None:
        """Create the schema, or migrate an older one, in one transaction under the write
        lock: a second process opening the store meanwhile waits and then finds it done; a
        crash leaves the store as it was. An older store is first copied beside itself."""
        if _has_table(self.db, "events"):
            backup = self.path.with_name(f"{self.path.name}.v{self._version()}.bak")
            if not backup.exists():
                copy = sqlite3.connect(backup)
                try:
                    self.db.backup(copy)
                except BaseException:
                    backup.unlink(missing_ok=True)  # no half copy left to pass for the store
                    raise
                finally:
                    copy.close()
                log.warning("migrating run store %s; a copy of it is in %s", self.path, backup)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            version = self._version()  # again, under the lock
            if version == STORE_VERSION:
                return
            if _has_table(self.db, "events"):
                from pcm_hil.records.migrate import migrate

                self._refuse_while_recorded(version)
                migrate(self.db, version)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {STORE_VERSION}")

    def _refuse_while_recorded(self, version: int) -> None:
        """An older pcm-hil recording into the store would lose every event after the
        migration (its inserts no longer fit the tables): refuse to migrate while a run of
        this machine is being recorded by a live process (StoreError)."""
        host = socket.gethostname()
        for run_id, pid in self.db.execute(
            "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", (host,)
        ):
            if pid and pid != os.getpid() and _alive(pid):
                raise StoreError(
                    f"{self.path}: run {run_id} is being recorded into this store (pid {pid}) "
                    f"by a pcm-hil of store version {max(version, 1)}; this pcm-hil migrates "
                    "the store once that run has ended"
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------------------

    @guarded
    def start_run(
        self,
        procedure: str,
        *,
        resource: str | None = None,
        identity: dict | None = None,
        protocol_version: str | None = None,
        parameters: dict | None = None,
        seed: int | None = None,
        meta: dict[str, Any] | None = None,
        note: str | None = None,
        tags: list[str] | None = None,
    ) -> int:
        """A new run, running; its id. ``meta``: the experiment's metadata (JSON values),
        ``note`` a line or a paragraph, ``tags`` words to find it by."""
        cursor = self.db.execute(
            "INSERT INTO runs (procedure, started_at, status, resource, identity, protocol_version,"
            " software_version, parameters, seed, host, pid, meta, note, tags)"
            " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                procedure,
                time.time(),
                resource,
                json.dumps(identity) if identity else None,
                protocol_version,
                software_version(),
                json.dumps(jsonable(parameters or {})),
                seed,
                socket.gethostname(),
                os.getpid(),
                json.dumps(jsonable(meta)) if meta else None,
                note,
                json.dumps(sorted(set(tags))) if tags else None,
            ),
        )
        run_id = cursor.lastrowid
        if run_id is None:  # sqlite3 sets it after every INSERT into a rowid table
            raise RuntimeError("the run store did not number the new run")
        return run_id

    @guarded
    def add_event(self, run_id: int, event: Event) -> int:
        """Record one event — its document's name and version, its scalars as JSON, its
        arrays as blobs — in one transaction."""
        document = event.document
        scalars, arrays = split_values(document.values())
        with self.db:  # one transaction: all of the event or none of it
            self.db.execute("BEGIN IMMEDIATE")
            seq = self.db.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    document.kind,
                    document.procedure,
                    document.name,
                    document.version,
                    event.done,
                    event.total,
                    event.wall_time_s,
                    json.dumps(scalars),
                ),
            )
            for name, array in arrays.items():
                codec, blob = encode(array)
                self.db.execute(
                    "INSERT INTO arrays (run_id, seq, name, dtype, shape, data, codec)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, seq, name, array.dtype.str, json.dumps(array.shape), blob, codec),
                )
        return seq

    @guarded
    def describe_chip(self, run_id: int, info: ChipInfo) -> None:
        """Record what the chip a run talks to reported of itself: identity, protocol
        version, geometry and limits."""
        chip = {k: v for k, v in asdict(info).items() if k not in ("identity", "protocol_version")}
        self.db.execute(
            "UPDATE runs SET identity = ?, chip = ?, protocol_version = ? WHERE id = ?",
            (json.dumps(asdict(info.identity)), json.dumps(chip), info.protocol_version, run_id),
        )

    @guarded
    def set_summary(self, run_id: int, summary: dict[str, Any]) -> None:
        """Keep what the run's procedure printed as its result (``runs show`` prints it
        again)."""
        self.db.execute(
            "UPDATE runs SET summary = ? WHERE id = ?", (json.dumps(jsonable(summary)), run_id)
        )

    @guarded
    def summary(self, run_id: int) -> dict[str, Any] | None:
        """What the run's procedure printed as its result, if it was kept."""
        row = self.db.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(f"no run {run_id} in {self.path}")
        return json.loads(row[0]) if row[0] else None

    @guarded
    def annotate(
        self,
        run_id: int,
        *,
        meta: dict[str, Any] | None = None,
        note: str | None = None,
        add_tags: list[str] = (),  # type: ignore[assignment]
        remove_tags: list[str] = (),  # type: ignore[assignment]
    ) -> RunInfo:
        """Add to a run's metadata (a value of None removes its key), replace its note, add
        and remove tags — of any run, running or not; the run as it now is."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            info = self.run(run_id)
            merged = {**info.meta, **(meta or {})}
            merged = {k: v for k, v in merged.items() if v is not None}
            tags = (set(info.tags) | set(add_tags)) - set(remove_tags)
            self.db.execute(
                "UPDATE runs SET meta = ?, note = ?, tags = ? WHERE id = ?",
                (
                    json.dumps(jsonable(merged)) if merged else None,
                    info.note if note is None else (note or None),
                    json.dumps(sorted(tags)) if tags else None,
                    run_id,
                ),
            )
        return self.run(run_id)

    @guarded
    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ?",
            (status, error, time.time(), run_id),
        )

    # --- keeping the store small ---------------------------------------------------------------

    @guarded
    def delete_run(self, run_id: int) -> None:
        """Delete a run, its events and its arrays, in one transaction. A running run is
        refused (ValueError): its process is still writing it."""
        info = self.run(run_id)
        if info.status == "running":
            raise ValueError(f"run {run_id} is running (pid {info.pid}): it is not deleted")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for table, key in (("arrays", "run_id"), ("events", "run_id"), ("runs", "id")):
                self.db.execute(f"DELETE FROM {table} WHERE {key} = ?", (run_id,))

    def prune(self, older_than_s: float, now: float | None = None) -> list[int]:
        """Delete every run started more than ``older_than_s`` before ``now`` (s since the
        epoch; default: now) that is not running; the ids deleted, oldest first."""
        cutoff = (time.time() if now is None else now) - older_than_s
        old = [r for r in reversed(self.runs()) if r.started_at < cutoff and r.status != "running"]
        for run in old:
            self.delete_run(run.id)
        return [run.id for run in old]

    @guarded
    def vacuum(self) -> tuple[int, int]:
        """Give the space of deleted runs back to the file system: (bytes before, after)."""
        before = self._size()
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return before, self._size()

    def _size(self) -> int:
        """Bytes of the store file and its write-ahead log."""
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    # --- reading ----------------------------------------------------------------------------

    @guarded
    def runs(
        self,
        limit: int | None = None,
        *,
        meta: dict[str, str] | None = None,
        tags: list[str] = (),  # type: ignore[assignment]
        procedure: str | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first: at most ``limit`` of those whose metadata has every value of
        ``meta`` (as text or as numbers: ``{"die": "7"}`` finds ``die = 7``; an empty value
        finds runs without the key), that carry every tag of ``tags``, and of ``procedure``."""
        found = []
        for row in self.db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC"):
            info = self._info(row)
            if procedure is not None and info.procedure != procedure:
                continue
            if not all(meta_matches(info.meta.get(k), v) for k, v in (meta or {}).items()):
                continue
            if not set(tags) <= set(info.tags):
                continue
            found.append(info)
            if limit and len(found) >= limit:
                break
        return found

    @guarded
    def run(self, run_id: int) -> RunInfo:
        row = self.db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(f"no run {run_id} in {self.path}")
        return self._info(row)

    def latest(self) -> RunInfo | None:
        found = self.runs(limit=1)
        return found[0] if found else None

    def events(self, run_id: int, after: int = -1) -> Iterator[Event]:
        """The run's events with seq > ``after``, in order, each with its typed document
        (arrays included); an older version of a document is read as the current one where
        its values carry over (``Document.upgrade``), and a document of a class this pcm-hil
        does not know, of a newer version, or that does not carry over, comes back as an
        ``UnknownDocument`` holding its values."""
        try:
            yield from self._events(run_id, after)
        except (sqlite3.Error, OSError) as error:
            raise store_error(self.path, error) from error

    def _events(self, run_id: int, after: int) -> Iterator[Event]:
        rows = self.db.execute(
            "SELECT seq, kind, procedure, document, version, done, total, wall_time_s, data"
            " FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after),
        ).fetchall()
        for seq, kind, procedure, name, version, done, total, wall_time_s, data in rows:
            values = json.loads(data)
            for array_name, dtype, shape, blob, codec in self.db.execute(
                "SELECT name, dtype, shape, data, codec FROM arrays WHERE run_id = ? AND seq = ?",
                (run_id, seq),
            ):
                values[array_name] = decode(codec, blob, dtype, json.loads(shape))
            document = self._document(name, version, kind, procedure, values)
            yield Event(document, done, total, wall_time_s, seq)

    def _document(
        self, name: str, version: int, kind: str, procedure: str, values: dict[str, Any]
    ) -> Document | UnknownDocument:
        cls = document_type(name)  # looked up now: a class imported later counts
        if cls is not None and cls.version >= version:
            try:
                current = values if cls.version == version else cls.upgrade(version, values)
                if current is not None:
                    return cls.from_values(current)
            except (TypeError, ValueError):
                pass  # not what this class holds: keep it as it was written
        return UnknownDocument(name, version, kind, procedure, values)  # type: ignore[arg-type]

    def _info(self, row) -> RunInfo:
        values = dict(zip((f.name for f in fields(RunInfo)), row, strict=True))
        for name in ("identity", "chip", "parameters", "meta", "tags"):
            values[name] = json.loads(values[name]) if values[name] else None
        values["parameters"] = values["parameters"] or {}
        values["meta"] = values["meta"] or {}
        values["tags"] = values["tags"] or []
        if values["status"] == "running" and values["host"] == socket.gethostname():
            if values["pid"] and not _alive(values["pid"]):
                values["status"] = "killed"  # the process is gone without saying how it ended
        return RunInfo(**values)


class Recorder:
    """A listener that records a procedure's events into a run (``RunStore.start_run`` makes
    it). The run ends with the ``end`` event of its own ``procedure`` (None: of none — its
    owner ends it, as ``pcm_hil.record`` does), or with the first ``end`` of any procedure
    inside it that was cancelled or failed."""

    def __init__(self, store: RunStore, run_id: int, procedure: str | None) -> None:
        self.store = store
        self.run_id = run_id
        self.procedure = procedure

    def __call__(self, event: Event) -> None:
        self.store.add_event(self.run_id, event)
        if event.kind == "end":  # by kind: an end this process has no class for counts too
            values = event.document.values()
            status = values.get("status", "completed")
            if event.procedure == self.procedure or status != "completed":
                self.store.finish_run(self.run_id, status, values.get("error"))

    def fail(self, error: BaseException) -> None:
        """Mark the run failed (an error outside any procedure, e.g. while connecting)."""
        self.store.finish_run(self.run_id, "failed", f"{type(error).__name__}: {error}")


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _empty_store() -> sqlite3.Connection:
    """A store without runs, in memory: what a store not yet made reads as."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(f"{SCHEMA}PRAGMA user_version = {STORE_VERSION}; PRAGMA query_only = 1;")
    return db
