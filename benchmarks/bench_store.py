"""The run store at scale: a program-and-verify of 1,048,576 devices (16 tiles of 256×256) to
16 levels on the in-process emulator, recorded — its bytes and its cost, side by side.

Prints, in one run:

- bytes stored now: the store file (+ its -wal, after ``PRAGMA wal_checkpoint(TRUNCATE)``)
  of the run recorded through ``pcm_hil.record`` into a fresh store (layout v3: an iteration
  keeps the devices it read, arrays under ``records.arrays`` codecs);
- bytes stored before: the same run in the layout of store version 2 (commit 1fe6005);
- bytes of a plain ``np.savez`` (uncompressed) of the same arrays;
- the procedure's time without listeners and with the recorder (fresh chip, same seed each;
  best of ``--repeat``, interleaved), the recorder's own time split into encoding arrays
  (``records.arrays.encode``) and the rest (JSON, SQLite), and the time building the
  iteration documents that only a listener asks for;
- the time to load the run into xarray (``pcm_hil.load_run`` of the main table, and
  ``run_tables`` with ``program.verify``);
- where the bytes go: the arrays table by codec and by array name.

How "before" is reproduced: the events recorded now are read back from the store and
written, in order, into a second, fresh SQLite file with the tables of store version 2
(``runs``, ``events``, ``arrays`` without a codec column: copied from 1fe6005's
``records/store.py``), ``user_version`` 2, WAL and ``synchronous=NORMAL``, one ``BEGIN
IMMEDIATE`` transaction per event with the same seq query and inserts as its ``add_event``:
scalars as JSON, every array as its raw bytes (``ndarray.tobytes()``). Each
``program.iteration`` (version 2: the devices read) is written as the version 1 document that
1fe6005's ``program_and_verify`` emitted: ``conductance_uS`` every device's latest read
(float32, NaN before its first; folded with ``ProgramTrace``, which is what 1fe6005 took
from ``Devices.last_read``) and ``finished`` (bool, a byte per device). ``program.start`` and
``program.end`` (its per-device arrays were already there in 1fe6005) are written with the
same values, raw. The run's record is copied (the v2 columns).

The npz holds the per-device results (tile, address, target_uS, final_uS, converged,
is_stuck, iterations, in the documents' dtypes) and the read-backs taken: per iteration the
devices read and their float32 reads. The devices read are written both as int32 indices and
as a bool mask; the smaller file is the baseline.

    python benchmarks/bench_store.py [--tiles 16] [--seed 1] [--repeat 3] [--json]

Targets: now ≤ 1.5× the npz; recording ≤ 1.10× the procedure's time without it; load_run of
the main table ≤ 2 s. Exit code 1 when one is not met.
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import pcm_hil
import pcm_hil.procedures.program as program_module
import pcm_hil.records.store as store_module
from pcm_hil.data.load import load_run, run_tables
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.records.store import RunStore
from pcm_hil.records.values import split_values

ROWS = COLUMNS = 256
LEVELS = 16

#: Targets (the brief's): at most this multiple of the npz, of the time without recording,
#: and this many seconds to load the main table.
NPZ_RATIO_MAX = 1.5
OVERHEAD_MAX = 1.10
LOAD_S_MAX = 2.0

#: The tables of store version 2, as 1fe6005's ``records/store.py`` made them.
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    procedure TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    error TEXT,
    resource TEXT,
    identity TEXT,
    chip TEXT,
    protocol_version TEXT,
    software_version TEXT,
    parameters TEXT,
    seed INTEGER,
    host TEXT,
    pid INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    procedure TEXT NOT NULL,
    document TEXT NOT NULL,
    version INTEGER NOT NULL,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    wall_time_s REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    dtype TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq, name)
);
"""
RUN_COLUMNS_V2 = (
    "id, procedure, started_at, ended_at, status, error, resource, identity, chip,"
    " protocol_version, software_version, parameters, seed, host, pid"
)


# --- the runs ----------------------------------------------------------------------------------


def resource(tiles: int, seed: int) -> str:
    return f"emulator?tiles={tiles}&rows={ROWS}&columns={COLUMNS}&seed={seed}"


def plan(chip):
    """Every device of the chip, tile by tile; device i of a tile to level i % 16."""
    config = chip.config
    n = config.devices_per_tile
    targets = level_targets(LEVELS, config.g_max_uS)[np.arange(n) % LEVELS]
    return (
        np.repeat(np.arange(config.tiles), n),
        np.tile(np.arange(n), config.tiles),
        np.tile(targets, config.tiles),
    )


class Stopwatch:
    """Seconds added up by the calls it wraps."""

    def __init__(self) -> None:
        self.s = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.s += time.perf_counter() - started

        return timed


@contextmanager
def patched(module, name: str, watch: Stopwatch):
    """``module.name`` timed by ``watch`` while the block runs."""
    original = getattr(module, name)
    setattr(module, name, watch.wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def procedure(res: str, store_path: Path | None) -> dict:
    """One program-and-verify on a fresh chip: without listeners, or recorded into a fresh
    store at ``store_path`` through ``pcm_hil.record``. Only the procedure's call is timed."""
    gc.collect()
    with PcmChip.open(res) as chip:
        tile_of, addresses, targets = plan(chip)
        if store_path is None:
            started = time.perf_counter()
            result = program_and_verify(chip, tile_of, addresses, targets)
            return {"wall_s": time.perf_counter() - started, "result": result}
        listener, encoding, documents = Stopwatch(), Stopwatch(), Stopwatch()
        with (
            pcm_hil.record("bench-store", chip=chip, store=store_path) as run,
            patched(store_module, "encode", encoding),
            patched(program_module, "_iteration_document", documents),
        ):
            recorder = listener.wrap(run.recorder)
            started = time.perf_counter()
            result = program_and_verify(chip, tile_of, addresses, targets, listeners=[recorder])
            wall = time.perf_counter() - started
            run.summary = {k: v for k, v in result.summary().items() if k != "levels"}
        return {
            "wall_s": wall,
            "result": result,
            "run_id": run.id,
            "recorder_s": listener.s,
            "encode_s": encoding.s,
            "documents_s": documents.s,
        }


# --- bytes -----------------------------------------------------------------------------------


def stored_bytes(path: Path) -> int:
    """The store file and its -wal after a truncating checkpoint (read while still open)."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    finally:
        db.close()


def write_before(source: Path, run_id: int, target: Path) -> float:
    """The run of ``source`` written into ``target`` in store version 2's layout (the module
    says how); the seconds the writing took."""
    with RunStore(source, readonly=True) as store:
        info = store.run(run_id)
        events = list(store.events(run_id))
        record = store.db.execute(
            f"SELECT {RUN_COLUMNS_V2} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.executescript(SCHEMA_V2 + "PRAGMA user_version = 2;")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"INSERT INTO runs ({RUN_COLUMNS_V2}) VALUES ({', '.join('?' * 15)})", record)
        start = events[0].document
        trace = ProgramTrace(int(start.devices)) if isinstance(start, ProgramStart) else None
        started = time.perf_counter()
        for event in events:
            document = event.document
            name, version, values = document.name, document.version, document.values()
            if isinstance(document, ProgramIteration) and trace is not None:
                trace.add(document)  # 1fe6005: every device's latest read, every iteration
                values = {k: v for k, v in values.items() if k not in ("read", "conductance_uS")}
                values = {
                    **values,
                    "conductance_uS": trace.conductance_uS.copy(),
                    "finished": trace.finished.copy(),
                }
                version = 1
            add_event_v2(db, info.id, event, name, version, values)
        return time.perf_counter() - started
    finally:
        db.close()


def add_event_v2(db, run_id: int, event, name: str, version: int, values: dict) -> None:
    """1fe6005's ``RunStore.add_event``: one transaction, arrays raw."""
    scalars, arrays = split_values(values)
    with db:
        db.execute("BEGIN IMMEDIATE")
        seq = db.execute(
            "SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                seq,
                event.kind,
                event.procedure,
                name,
                version,
                event.done,
                event.total,
                event.wall_time_s,
                json.dumps(scalars),
            ),
        )
        for array_name, array in arrays.items():
            db.execute(
                "INSERT INTO arrays VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    array_name,
                    array.dtype.str,
                    json.dumps(array.shape),
                    array.tobytes(),
                ),
            )


def write_npz(source: Path, run_id: int, folder: Path) -> dict[str, int]:
    """The run's arrays as plain .npz files (np.savez, uncompressed): the devices read as
    int32 indices, and as a bool mask; bytes of each."""
    with RunStore(source, readonly=True) as store:
        events = list(store.events(run_id))
    start = next(e.document for e in events if isinstance(e.document, ProgramStart))
    end = next(e.document for e in events if isinstance(e.document, ProgramEnd))
    steps = [e.document for e in events if isinstance(e.document, ProgramIteration)]
    devices = {
        "tile": start.tile,
        "address": start.address,
        "target_uS": start.target_uS,
        "final_uS": end.final_uS,
        "converged": end.converged,
        "is_stuck": end.is_stuck,
        "iterations": end.iterations,
    }
    sizes = {}
    for form in ("indices", "mask"):
        arrays = dict(devices)
        for step in steps:
            read = np.asarray(step.is_read, dtype=bool)
            which = np.flatnonzero(read).astype(np.int32) if form == "indices" else read
            arrays[f"read_{step.iteration}"] = which
            arrays[f"conductance_uS_{step.iteration}"] = np.asarray(step.conductance_uS)
        path = folder / f"run-{form}.npz"
        np.savez(path, **arrays)
        sizes[form] = path.stat().st_size
    return sizes


def breakdown(path: Path, has_codec: bool) -> list[dict]:
    """The arrays table by array name: codec, arrays, bytes stored, bytes raw."""
    db = sqlite3.connect(path)
    try:
        codec = "codec" if has_codec else "'raw'"
        rows = db.execute(
            f"SELECT name, {codec}, dtype, shape, length(data) FROM arrays ORDER BY seq, name"
        ).fetchall()
        events_json = db.execute("SELECT sum(length(data)) FROM events").fetchone()[0]
    finally:
        db.close()
    found: dict[tuple[str, str], dict] = {}
    for name, used, dtype, shape, stored in rows:
        entry = found.setdefault(
            (name, used), {"name": name, "codec": used, "arrays": 0, "bytes": 0, "raw": 0}
        )
        entry["arrays"] += 1
        entry["bytes"] += stored
        entry["raw"] += int(np.prod(json.loads(shape), dtype=np.int64)) * np.dtype(dtype).itemsize
    table = sorted(found.values(), key=lambda e: -e["bytes"])
    table.append({"name": "(events JSON)", "codec": "", "arrays": 0, "bytes": events_json})
    return table


def by_codec(path: Path) -> list[tuple[str, int, int]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT codec, count(*), sum(length(data)) FROM arrays GROUP BY codec"
            " ORDER BY sum(length(data)) DESC"
        ).fetchall()
    finally:
        db.close()


# --- loading ---------------------------------------------------------------------------------


def best_time(function, repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - started)
    return best, value


# --- the report ------------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many, each")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    res = resource(args.tiles, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        folder = Path(tmp)
        plain, recorded = [], []
        for k in range(args.repeat):  # interleaved: a drift in the machine's speed hits both
            plain.append(procedure(res, None))
            recorded.append(procedure(res, folder / f"runs-{k}.sqlite"))
        same = all(
            np.array_equal(getattr(p["result"], name), getattr(r["result"], name))
            for p in plain
            for r in recorded
            for name in ("final_uS", "converged", "iterations")
        )
        fastest = min(recorded, key=lambda r: r["wall_s"])
        store_path = folder / f"runs-{recorded.index(fastest)}.sqlite"
        run_id = fastest["run_id"]
        now_bytes = stored_bytes(store_path)
        before_path = folder / "runs-v2.sqlite"
        before_write_s = write_before(store_path, run_id, before_path)
        before_bytes = stored_bytes(before_path)
        npz = write_npz(store_path, run_id, folder)
        npz_form = min(npz, key=lambda form: npz[form])
        npz_bytes = npz[npz_form]
        arrays_now = breakdown(store_path, has_codec=True)
        arrays_before = {e["name"]: e["bytes"] for e in breakdown(before_path, has_codec=False)}
        codecs = by_codec(store_path)
        load_run(run_id, store=store_path)  # imports and first-touch costs, not timed
        load_s, main_table = best_time(lambda: load_run(run_id, store=store_path), args.repeat)
        tables_s, tables = best_time(lambda: run_tables(run_id, store=store_path), args.repeat)
        verify = tables["program.verify"]  # type: ignore[index]
    plain_s = min(p["wall_s"] for p in plain)
    recorded_s = fastest["wall_s"]
    summary = fastest["result"].summary()
    report = {
        "devices": summary["devices"],
        "resource": res,
        "repeat": args.repeat,
        "iterations": int(verify.sizes["iteration"]),
        "converged_fraction": summary["converged_fraction"],
        "identical_results": same,
        "bytes": {
            "now": now_bytes,
            "before": before_bytes,
            "npz": npz_bytes,
            "npz_form": npz_form,
            "npz_by_form": npz,
            "before_over_now": before_bytes / now_bytes,
            "now_over_npz": now_bytes / npz_bytes,
        },
        "time_s": {
            "without_recording": plain_s,
            "with_recording": recorded_s,
            "overhead_ratio": recorded_s / plain_s,
            "all_without": [p["wall_s"] for p in plain],
            "all_with": [r["wall_s"] for r in recorded],
            "recorder": fastest["recorder_s"],
            "encode": fastest["encode_s"],
            "iteration_documents": fastest["documents_s"],
            "before_layout_write": before_write_s,
            "load_run": load_s,
            "run_tables": tables_s,
        },
        "main_table_sizes": dict(main_table.sizes),  # type: ignore[attr-defined]
        "verify_table_sizes": dict(verify.sizes),
        "arrays_by_codec": [{"codec": c, "arrays": n, "bytes": b} for c, n, b in codecs],
        "arrays_by_name": arrays_now,
        "arrays_before_by_name": arrays_before,
    }
    targets = {
        f"now / npz ≤ {NPZ_RATIO_MAX}": report["bytes"]["now_over_npz"] <= NPZ_RATIO_MAX,
        f"recording overhead ≤ {OVERHEAD_MAX:.2f}×": report["time_s"]["overhead_ratio"]
        <= OVERHEAD_MAX,
        f"load_run (main table) ≤ {LOAD_S_MAX:g} s": load_s <= LOAD_S_MAX,
    }
    report["targets"] = targets
    report["total_s"] = time.perf_counter() - began
    if args.json:
        print(json.dumps(report))
        return 0 if all(targets.values()) else 1
    print_report(report, targets)
    return 0 if all(targets.values()) else 1


def print_report(report: dict, targets: dict[str, bool]) -> None:
    console = Console()
    if not console.is_terminal:  # a file or a pipe: wide enough for the tables
        console = Console(width=max(console.width, 120))
    b, t = report["bytes"], report["time_s"]
    table = Table(
        title=f"Run store: program-and-verify of {report['devices']:,} devices to {LEVELS} "
        f"levels, {report['iterations']} iterations ({report['resource']})"
    )
    for column in ("", "bytes", "MB", "vs now", "note"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("now (store v3)", f"{b['now']:,}", mb(b["now"]), "1.00×", "file + -wal")
    table.add_row(
        "before (store v2, 1fe6005)",
        f"{b['before']:,}",
        mb(b["before"]),
        f"{b['before'] / b['now']:.2f}×",
        "full reads + finished every iteration, raw",
    )
    for form, size in b["npz_by_form"].items():
        table.add_row(
            f"npz, reads as {form}",
            f"{size:,}",
            mb(size),
            f"{size / b['now']:.2f}×",
            "baseline (the smaller)" if form == b["npz_form"] else "",
        )
    console.print(table)
    console.print(
        f"now / npz = {b['now_over_npz']:.3f} (target ≤ {NPZ_RATIO_MAX}); "
        f"before / now = {b['before_over_now']:.2f}"
    )

    times = Table(title=f"Time, s (best of {report['repeat']}; fresh chip, same seed each)")
    for column in ("", "s", "÷ no-listener s", "runs / note"):
        times.add_column(column, justify="right" if column else "left")
    times.add_row(
        "procedure, no listeners",
        f"{t['without_recording']:.3f}",
        "1.000",
        " ".join(f"{s:.3f}" for s in t["all_without"]),
    )
    times.add_row(
        "procedure, recorded",
        f"{t['with_recording']:.3f}",
        f"{t['overhead_ratio']:.3f}",
        " ".join(f"{s:.3f}" for s in t["all_with"]),
    )
    overhead = t["with_recording"] - t["without_recording"]
    times.add_row(
        "  overhead: recorded − not",
        f"{overhead:.3f}",
        f"{overhead / t['without_recording']:.3f}",
        "",
    )
    times.add_row(
        "    in the recorder (listener)",
        f"{t['recorder']:.3f}",
        f"{t['recorder'] / t['without_recording']:.3f}",
        "",
    )
    times.add_row(
        "      of which encoding arrays",
        f"{t['encode']:.3f}",
        f"{t['encode'] / t['without_recording']:.3f}",
        "",
    )
    times.add_row(
        "    building iteration documents",
        f"{t['iteration_documents']:.3f}",
        f"{t['iteration_documents'] / t['without_recording']:.3f}",
        "only built for a listener",
    )
    times.add_row("writing the before layout (replay)", f"{t['before_layout_write']:.3f}", "", "")
    times.add_row(
        "load_run (main table)",
        f"{t['load_run']:.3f}",
        "",
        " × ".join(f"{v:,}" for v in report["main_table_sizes"].values()),
    )
    times.add_row(
        "run_tables (incl. program.verify)",
        f"{t['run_tables']:.3f}",
        "",
        "verify " + " × ".join(f"{v:,}" for v in report["verify_table_sizes"].values()),
    )
    console.print(times)

    codecs = Table(title="Arrays table by codec (now)")
    for column in ("codec", "arrays", "bytes", "MB", "share"):
        codecs.add_column(column, justify="right" if column != "codec" else "left")
    total = sum(row["bytes"] for row in report["arrays_by_codec"])
    for row in report["arrays_by_codec"]:
        codecs.add_row(
            row["codec"],
            f"{row['arrays']}",
            f"{row['bytes']:,}",
            mb(row["bytes"]),
            f"{row['bytes'] / total:.1%}",
        )
    console.print(codecs)

    names = Table(title="Arrays table by array name: now vs before")
    for column in ("name", "codec", "arrays", "bytes now", "raw bytes", "now / raw", "bytes before"):  # fmt: skip
        names.add_column(column, justify="right" if column not in ("name", "codec") else "left")
    for row in report["arrays_by_name"]:
        raw = row.get("raw")
        names.add_row(
            row["name"],
            row["codec"],
            f"{row['arrays']}" if row["arrays"] else "",
            f"{row['bytes']:,}",
            f"{raw:,}" if raw else "",
            f"{row['bytes'] / raw:.3f}" if raw else "",
            f"{report['arrays_before_by_name'].get(row['name'], 0):,}",
        )
    console.print(names)
    console.print(
        f"converged {report['converged_fraction']:.2%}; identical results with and without "
        f"recording: {report['identical_results']}; benchmark took {report['total_s']:.0f} s"
    )
    for name, met in targets.items():
        console.print(f"{'PASS' if met else 'FAIL'}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())
