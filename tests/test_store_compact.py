"""The compact run store (version 3): arrays kept under a codec (bits, zlib, raw) that gives
back exactly what was stored; a run killed mid-way keeps every completed step, decodable and
loadable; a store of the previous version (2) is migrated in place, its old documents read
back as the current ones."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pcm_hil.data import load_run, run_tables
from pcm_hil.documents.base import Step
from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import (
    TOLERANCE_FLOOR_US,
    TOLERANCE_REL,
    device_tolerance,
    program_and_verify,
)
from pcm_hil.records.arrays import CODECS, PAYS, decode, encode
from pcm_hil.records.schema import EVENTS_COLUMNS, STORE_VERSION
from pcm_hil.records.store import RunStore, StoreError
from pcm_hil.records.values import split_values
from pcm_hil.targets.clock import ChipClock


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    """No run labels from the user's config or environment, here or in a child process."""
    monkeypatch.setenv("PCM_HIL_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("PCM_HIL_META", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


# --- codecs -------------------------------------------------------------------------------------

DTYPES = [
    "?", "i1", "u1", "<i2", "<i4", "<i8", "<u4", "<u8", ">i4",
    "<f2", "<f4", "<f8", ">f8",
]  # fmt: skip

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        np.dtype(dtype),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=37),
        elements=(
            hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True)
            if np.dtype(dtype).kind == "f"
            else None
        ),
    )
)


def _round_trip(array: np.ndarray) -> tuple[str, np.ndarray]:
    codec, blob = encode(array)
    return codec, decode(codec, blob, array.dtype.str, list(array.shape))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(arrays)
@example(np.zeros(0, dtype=bool))
@example(np.zeros((3, 0), dtype=np.float32))
@example(np.array(True))
@example(np.array(7, dtype=np.int64))
@example(np.array(np.nan, dtype=np.float32))
@example(np.full(257, np.nan, dtype=np.float32))
@example(np.arange(13, dtype=np.int32)[::2])  # not contiguous
@example(np.asfortranarray(np.arange(35, dtype=np.float64).reshape(5, 7)))
def test_every_array_comes_back_exactly(array):
    codec, back = _round_trip(array)
    assert back.dtype == array.dtype and back.shape == array.shape
    # bit for bit: NaN payloads, −0.0, byte order
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    np.testing.assert_array_equal(back, array)
    _assert_codec_fits(array, codec, encode(array)[1])


def _assert_codec_fits(array: np.ndarray, codec: str, blob: bytes) -> None:
    """A mask is packed to bits; anything else is kept raw, as its bytes, or compressed to
    at most ``PAYS`` of them."""
    assert codec in CODECS
    if array.dtype == bool:
        assert codec.startswith("bits") and len(blob) <= array.size / 8 + 64
    elif codec == "raw":
        assert blob == np.ascontiguousarray(array).tobytes()
    else:
        assert not codec.startswith("bits") and len(blob) <= PAYS * array.nbytes


@dataclass(frozen=True)
class Holder(Step, name="codec-test.holder"):
    """A document holding one array of any dtype and shape."""

    data: np.ndarray


@pytest.fixture(scope="module")
def codec_store(tmp_path_factory):
    with RunStore(tmp_path_factory.mktemp("codecs") / "runs.sqlite") as store:
        yield store, store.start_run("codec-test")


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(arrays.filter(lambda a: a.ndim > 0))  # 0-d: test_a_0d_array_keeps_its_shape_in_the_store
@example(np.zeros((0, 4), dtype=np.int16))
@example(np.zeros(0, dtype=bool))
def test_every_array_comes_back_exactly_through_the_store(codec_store, array):
    store, run_id = codec_store
    seq = store.add_event(run_id, Event(Holder(data=array), 1, 1))
    (event,) = store.events(run_id, after=seq - 1)
    back = event.document.data
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array).tobytes()
    (codec,) = store.db.execute(
        "SELECT codec FROM arrays WHERE run_id = ? AND seq = ?", (run_id, seq)
    ).fetchone()
    assert codec == encode(array)[0]


@pytest.mark.parametrize(
    "array", [np.array(True), np.array(7, dtype=np.int64), np.array(np.nan, dtype=np.float32)]
)
def test_a_0d_array_keeps_its_shape_in_the_store(codec_store, array):
    store, run_id = codec_store
    seq = store.add_event(run_id, Event(Holder(data=array), 1, 1))
    (event,) = store.events(run_id, after=seq - 1)
    back = event.document.data
    assert back.shape == () and back.dtype == array.dtype
    assert back.tobytes() == array.tobytes()


def test_a_codec_is_chosen_where_it_pays():
    rng = np.random.default_rng(11)
    cases = {
        # programming times: a few values, each repeated per pulse command
        "repeated": np.repeat(rng.random(8), 4096).astype(np.float64),
        "nan": np.full(10_000, np.nan, dtype=np.float32),  # a cut-off run's unread devices
        "addresses": np.arange(65_536, dtype=np.int32),
        "mask": rng.random(100_001) < 0.3,
        # bytes without any pattern: nothing to gain, kept as they are
        "random bits": rng.integers(0, 256, 40_000, dtype=np.uint8).view(np.float32),
        "short": np.full(3, 1.0, dtype=np.float32),
        "noise": (10 + rng.normal(0, 1, 100_000)).astype(np.float32),
    }
    encoded = {name: encode(array) for name, array in cases.items()}
    for name, array in cases.items():
        codec, blob = encoded[name]
        _assert_codec_fits(array, codec, blob)
        back = decode(codec, blob, array.dtype.str, list(array.shape))
        assert back.tobytes() == array.tobytes(), name
    for name in ("repeated", "nan", "addresses"):
        codec, blob = encoded[name]
        assert codec != "raw" and len(blob) < 0.05 * cases[name].nbytes, name
    assert encoded["mask"][0].startswith("bits")
    assert encoded["random bits"] == ("raw", cases["random bits"].tobytes())
    assert encoded["noise"][0] == "raw"  # conductance reads are noise: not worth compressing
    with pytest.raises(ValueError, match="unknown array codec 'lz4'"):
        decode("lz4", b"", "<f4", [0])


# --- a run killed mid-way -----------------------------------------------------------------------


def _poll(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _drift_reads(path) -> int:
    """Drift reads recorded so far in the newest run, the store opened read-only."""
    if not path.exists():
        return 0
    try:
        with RunStore(path, readonly=True) as store:
            latest = store.latest()
            if latest is None:
                return 0
            (count,) = store.db.execute(
                "SELECT COUNT(*) FROM events WHERE run_id = ? AND document = 'drift.read'",
                (latest.id,),
            ).fetchone()
            return count
    except StoreError:  # caught while the writer makes the store
        return 0


def test_sigkill_keeps_every_completed_step_decodable_and_loadable(tmp_path):
    """A drift run on a real-time chip (its programming first), killed with SIGKILL while it
    waits between reads, as tests/test_runs.py does; here every array of it is checked to
    decode under its codec, its programming to fold, and the run to load as tables."""
    path = tmp_path / "runs.sqlite"
    argv = [
        sys.executable, "-m", "pcm_hil", "drift", "--quiet", "--runs", str(path),
        "--resource", "emulator?profile=small&seed=2&real_time=1", "--devices", "256",
        "--levels", "4", "--start", "0.05", "--end", "30", "--points", "60",
        "--reads-per-point", "1", "--settle", "0",  # a real-time clock: no 20 s waits
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _poll(lambda: _drift_reads(path) >= 8, 60, "eight drift reads")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL

    with RunStore(path, readonly=True) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        run = store.latest()
        assert run.status == "killed" and run.procedure == "drift"
        events = list(store.events(run.id))
        rows = store.db.execute(
            "SELECT a.seq, e.document, a.name, a.dtype, a.shape, a.codec, a.data"
            " FROM arrays a JOIN events e USING (run_id, seq) WHERE a.run_id = ?",
            (run.id,),
        ).fetchall()
        tables = run_tables(run.id, store=store)
    assert [e.seq for e in events] == list(range(len(events)))
    assert all(type(e.document).__name__ != "UnknownDocument" for e in events)

    # every stored array decodes to its dtype and shape, under the codec its kind calls for
    for _seq, document, name, dtype, shape, codec, blob in rows:
        array = decode(codec, blob, dtype, json.loads(shape))
        assert array.dtype == np.dtype(dtype) and list(array.shape) == json.loads(shape)
        _assert_codec_fits(array, codec, blob)
        if name in ("tile", "address"):  # integers with a pattern: compressed
            assert codec != "raw", (document, name)
        if name == "tile":  # one tile: next to nothing
            assert len(blob) < 0.2 * array.nbytes, (document, name)
    # and every array of every document is there, as stored
    for event in events:
        arrays_of = {k for k, v in event.document.values().items() if isinstance(v, np.ndarray)}
        assert {row[2] for row in rows if row[0] == event.seq} == arrays_of, event.seq

    # the programming: complete, its iterations fold into every device's outcome
    (start,) = [e.document for e in events if isinstance(e.document, ProgramStart)]
    iterations = [e.document for e in events if isinstance(e.document, ProgramIteration)]
    (end,) = [e.document for e in events if isinstance(e.document, ProgramEnd)]
    trace = ProgramTrace(start.devices)
    reads = np.zeros(start.devices, dtype=np.int32)
    for step in iterations:
        assert step.is_read.shape == (start.devices,)
        assert step.conductance_uS.shape == (int(step.is_read.sum()),)
        assert not (step.is_read & trace.finished).any()  # a finished device is not read again
        assert np.isfinite(step.conductance_uS).all()
        trace.add(step)
        reads += step.is_read
    assert trace.iteration == len(iterations) > 0
    np.testing.assert_array_equal(trace.finished, end.converged | end.is_stuck)
    np.testing.assert_array_equal(reads, end.iterations)
    # converged: the last verify read within the device's tolerance (the CLI's defaults;
    # --tolerance, the widest, in the start document)
    tolerance = device_tolerance(
        start.target_uS, start.tolerance_uS, TOLERANCE_REL, TOLERANCE_FLOOR_US
    )
    within = np.abs(trace.conductance_uS - start.target_uS) <= tolerance
    np.testing.assert_array_equal(within, end.converged)

    # the drift reads taken before the kill, all of them, in the tables
    (drift_start,) = [e.document for e in events if isinstance(e.document, DriftStart)]
    drift_reads = [e.document for e in events if isinstance(e.document, DriftRead)]
    assert not any(isinstance(e.document, DriftEnd) for e in events)
    assert len(drift_reads) >= 8
    assert list(tables) == ["drift", "program", "program.verify"]
    drift = tables["drift"]
    assert drift.attrs["status"] == "killed" and drift.sizes == {
        "time": len(drift_reads),
        "device": 256,
    }
    np.testing.assert_array_equal(
        drift.conductance_uS.values, np.stack([r.conductance_uS for r in drift_reads])
    )
    np.testing.assert_array_equal(drift.programmed_at_s.values, drift_start.programmed_at_s)
    assert drift.attrs["fitted"].startswith("here")  # no end: fitted from the stored reads
    assert tables["program.verify"].sizes["iteration"] == len(iterations)
    np.testing.assert_array_equal(tables["program"].iterations.values, end.iterations)
    np.testing.assert_array_equal(tables["program"].converged.values, end.converged)


# --- a store of the previous version ------------------------------------------------------------

#: The layout of version 2 (pcm-hil before the compact store): runs without metadata, note,
#: tags or summary; arrays without a codec, all raw.
V2_SCHEMA = f"""
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, procedure TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL, status TEXT NOT NULL, error TEXT, resource TEXT,
    identity TEXT, chip TEXT, protocol_version TEXT, software_version TEXT, parameters TEXT,
    seed INTEGER, host TEXT, pid INTEGER);
CREATE TABLE events {EVENTS_COLUMNS};
CREATE TABLE arrays (run_id INTEGER NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq, name));
PRAGMA user_version = 2;
"""


def _as_version_2(document, trace: ProgramTrace | None) -> tuple[int, dict]:
    """A document as pcm-hil wrote it into a version-2 store: a program iteration as version
    1 (every device's latest read, NaN before its first), a drift end as version 1 (the
    levels only); the others as they are."""
    values = document.values()
    if isinstance(document, ProgramIteration):
        assert trace is not None
        trace.add(document)
        return 1, {
            "iteration": document.iteration,
            "converged": document.converged,
            "stuck_devices": document.stuck_devices,
            "devices": document.devices,
            "conductance_uS": trace.conductance_uS.copy(),
            "finished": trace.finished.copy(),  # every device's, by the end of the iteration
        }
    if isinstance(document, DriftEnd):
        return 1, {"status": document.status, "error": document.error, "levels": document.levels}
    return document.version, values


def write_v2_store(path, runs: list[tuple[str, str, list]]) -> None:
    """A version-2 store of ``runs``: (procedure, status, events as emitted) each."""
    db = sqlite3.connect(path)
    db.executescript(V2_SCHEMA)
    chip = {"tiles": 2, "rows": 16, "columns": 16, "g_max_uS": 25.0}
    for run_id, (procedure, status, events) in enumerate(runs, start=1):
        db.execute(
            "INSERT INTO runs VALUES (?, ?, 1.0, NULL, ?, NULL, 'emulator?profile=tiny', ?, ?,"
            " '1.1', '0.1.0', '{}', 0, 'elsewhere', 1)",
            (
                run_id,
                procedure,
                status,
                json.dumps({"model": "PCM-EMULATOR", "serial": "EMU-0001"}),
                json.dumps(chip),
            ),
        )
        traces: dict[int, ProgramTrace] = {}
        for seq, event in enumerate(events):
            document = event.document
            if isinstance(document, ProgramStart):
                traces[0] = ProgramTrace(document.devices)
            version, values = _as_version_2(document, traces.get(0))
            scalars, blobs = split_values(values)
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, seq, document.kind, document.procedure, document.name, version,
                    event.done, event.total, event.wall_time_s, json.dumps(scalars),
                ),
            )  # fmt: skip
            for name, array in blobs.items():
                db.execute(
                    "INSERT INTO arrays VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        run_id, seq, name, array.dtype.str, json.dumps(array.shape),
                        array.tobytes(),
                    ),
                )  # fmt: skip
    db.commit()
    db.close()


@pytest.fixture
def v2_store(tmp_path):
    """A version-2 store of a drift run (its programming, then its reads) and a program run
    cut off after three iterations; with what the procedures returned and emitted."""
    with PcmChip.open("emulator?profile=tiny&seed=6") as chip:
        drift_events: list = []
        targets = np.tile([4.0, 12.0, 20.0], 40)
        drift = measure_drift(
            chip,
            ChipClock(chip),
            0,
            np.arange(120),
            targets,
            log_times(1, 1e6, 8),
            listeners=[drift_events.append],
        )
        cut_events: list = []

        def cut(event):
            if isinstance(event.document, ProgramIteration) and event.document.iteration == 3:
                raise KeyboardInterrupt

        cut_off = program_and_verify(
            chip, 1, np.arange(96), np.tile([3.0, 9.0, 15.0, 21.0], 24),
            listeners=[cut_events.append, cut],
        )  # fmt: skip
    assert cut_off.status == "cancelled"
    kept = [e for e in cut_events if e.kind != "end"]  # the process died before its end
    path = tmp_path / "runs.sqlite"
    write_v2_store(path, [("drift", "completed", drift_events), ("program", "running", kept)])
    return path, drift, drift_events, cut_off, kept


def test_a_version_2_store_is_migrated_and_reads_back_as_the_current_documents(v2_store):
    path, drift, drift_events, _cut_off, _kept = v2_store
    before = path.read_bytes()
    with RunStore(path, readonly=True) as store:  # a reader reads it as it is, migrating nothing
        assert store.run(1).meta == {} and store.summary(1) is None
        assert len(list(store.events(1))) == len(drift_events)
        assert load_run(1, store=store).sizes["device"] == 120
    assert path.read_bytes() == before
    assert not path.with_name(path.name + ".v2.bak").exists()
    with RunStore(path) as store:  # opened to record: migrated in place
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION == 3
        codecs = {row[0] for row in store.db.execute("SELECT codec FROM arrays")}
        assert codecs == {"raw"}
        info = store.run(1)
        assert (info.meta, info.note, info.tags, info.identity["serial"]) == (
            {}, None, [], "EMU-0001",
        )  # fmt: skip
        assert store.summary(1) is None
        events = list(store.events(1))
    backup = path.with_name(path.name + ".v2.bak")
    with sqlite3.connect(backup) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 2
        assert old.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(drift_events) + len(
            v2_store[4]
        )
        assert "codec" not in {row[1] for row in old.execute("PRAGMA table_info(arrays)")}

    assert [e.document.name for e in events] == [e.document.name for e in drift_events]
    trace_v1, trace_v2 = ProgramTrace(120), ProgramTrace(120)
    latest = np.full(120, np.nan, dtype=np.float32)
    for got, emitted in zip(events, drift_events, strict=True):
        document = got.document
        assert type(document) is type(emitted.document)
        if isinstance(document, ProgramIteration):
            assert document.version == 2
            latest[emitted.document.is_read] = emitted.document.conductance_uS
            # version 1 held every device's latest read: read back as read where not NaN
            np.testing.assert_array_equal(document.is_read, ~np.isnan(latest))
            np.testing.assert_array_equal(document.conductance_uS, latest[~np.isnan(latest)])
            trace_v1.add(document)
            trace_v2.add(emitted.document)
            np.testing.assert_array_equal(trace_v1.conductance_uS, trace_v2.conductance_uS)
            np.testing.assert_array_equal(trace_v1.finished, trace_v2.finished)
        elif isinstance(document, DriftEnd):
            assert document.nu is None and document.levels == emitted.document.levels
    np.testing.assert_array_equal(trace_v1.finished_iteration, trace_v2.finished_iteration)

    # the tables: per-device programming from its end, the drift fitted from the stored reads
    ds = load_run(1, store=path)
    assert ds.attrs["fitted"].startswith("here")
    np.testing.assert_array_equal(ds.nu.values, drift.nu.astype(np.float32))
    np.testing.assert_array_equal(ds.good.values, drift.good)
    np.testing.assert_array_equal(ds.g_t0_uS.values, drift.g_t0_uS.astype(np.float32))
    program = load_run(1, "program", store=path)
    np.testing.assert_array_equal(program.converged.values, drift.programming.converged)
    np.testing.assert_array_equal(program.iterations.values, drift.programming.iterations)
    np.testing.assert_array_equal(program.final_uS.values, drift.programming.final_uS)

    # the migrated store records on, each array under its codec
    with RunStore(path) as store:
        run_id = store.start_run("codec-test")
        store.add_event(run_id, Event(Holder(data=np.ones(100, dtype=bool)), 1, 1))
        assert [e.document.data.sum() for e in store.events(run_id)] == [100]
        assert len(list(store.events(1))) == len(drift_events)


def test_a_migrated_runs_verify_reads_are_those_taken(v2_store):
    """Version 1 of an iteration held every device's latest read, so after migration a
    device finished early seems read again in every later iteration. Which devices an
    iteration read is known all the same — those not finished before it — and the tables say
    so: each device's verify reads are its iterations, in a run ended or cut off."""
    path, drift, _drift_events, cut_off, kept = v2_store
    RunStore(path).close()  # migrated
    verify = load_run(1, "program.verify", store=path)
    taken = (~np.isnan(verify.conductance_uS.values)).sum(axis=0)
    np.testing.assert_array_equal(taken, drift.programming.iterations)
    # the program run cut off after three iterations (no end): from its verify reads
    program = load_run(2, store=path)
    assert program.attrs["ended"].startswith("no")
    np.testing.assert_array_equal(program.converged.values, cut_off.converged)
    np.testing.assert_array_equal(program.stuck.values, cut_off.stuck)
    np.testing.assert_array_equal(program.iterations.values, cut_off.iterations)
    assert len([e for e in kept if e.kind == "step"]) == 3
    # each device's last verify read stands as its final read: the procedure's own for the
    # devices not converged (cut off before their final reads); the converged ones' final
    # reads, taken as they converged, are in the end document only, which was never written
    reads = load_run(2, "program.verify", store=path).conductance_uS.values
    last = reads[cut_off.iterations - 1, np.arange(cut_off.iterations.size)]
    np.testing.assert_array_equal(program.final_uS.values, last)
    open_ = ~cut_off.converged
    np.testing.assert_array_equal(program.final_uS.values[open_], cut_off.final_uS[open_])
