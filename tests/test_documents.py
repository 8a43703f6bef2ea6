"""Typed run documents: every procedure's documents go into the run store and come back as
the same classes with the same values; a document of another version or an unknown class is
kept as it was written; a store written by pcm-hil 0.1 is migrated in place; a newer store
is refused with a clear message."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields

import numpy as np
import pytest

from pcm_hil.documents.base import (
    Document,
    End,
    Start,
    Step,
    UnknownDocument,
    document_types,
)
from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.records.resume import unfinished_from_run
from pcm_hil.records.store import STORE_VERSION, Recorder, RunStore
from pcm_hil.targets.clock import ChipClock


def record(store: RunStore, procedure: str, body) -> tuple[int, list]:
    """Run ``body(listeners)`` recorded in ``store``; (run id, the events as emitted)."""
    run = store.start_run(procedure)
    emitted: list = []
    body([Recorder(store, run, procedure), emitted.append])
    return run, emitted


def assert_same(document, other) -> None:
    assert type(document) is type(other)
    for f in fields(document):
        a, b = getattr(document, f.name), getattr(other, f.name)
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and a.dtype == b.dtype, f.name
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:  # as stored: JSON, where a non-finite number is null
            assert json.dumps(_finite(a), sort_keys=True) == json.dumps(
                _finite(b), sort_keys=True
            ), f.name


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


def test_every_procedures_documents_come_back_as_written(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store, PcmChip.open("emulator?profile=tiny") as chip:
        addresses = np.arange(32)
        targets = np.linspace(2.0, 20.0, 32)
        runs = [
            record(
                store,
                "drift",
                lambda ls: measure_drift(
                    chip, ChipClock(chip), 0, addresses, targets, log_times(1, 1e4, 4), listeners=ls
                ),
            ),
            record(
                store,
                "programming-curve",
                lambda ls: programming_curve(chip, 1, addresses, [250, 400], listeners=ls),
            ),
            record(
                store,
                "accumulation",
                lambda ls: accumulation_curve(chip, 1, addresses, 3, listeners=ls),
            ),
            record(
                store,
                "read-noise",
                lambda ls: read_noise(chip, 1, addresses, reads=3, listeners=ls),
            ),
        ]
        seen = set()
        for run, emitted in runs:
            stored = list(store.events(run))
            assert [e.seq for e in stored] == list(range(len(emitted)))
            for got, want in zip(stored, emitted, strict=True):
                assert_same(got.document, want.document)
                assert (got.done, got.total, got.wall_time_s) == (
                    want.done,
                    want.total,
                    want.wall_time_s,
                )
                seen.add(got.document.name)
            assert store.run(run).status == "completed"
    # the drift run holds its programming's documents too; every kind of step came back
    assert {
        "program.start",
        "program.iteration",
        "program.end",
        "drift.start",
        "drift.read",
        "drift.end",
        "programming-curve.point",
        "accumulation.point",
        "read-noise.read",
    } <= seen


def test_every_registered_document_is_typed_and_named_after_its_procedure():
    types = {n: c for n, c in document_types().items() if c.__module__.startswith("pcm_hil.")}
    assert len(types) >= 24
    for name, cls in types.items():
        assert issubclass(cls, (Start, Step, End)) and cls.name == name
        assert name.startswith(cls.procedure + "."), name
        assert cls.kind in ("start", "step", "end") and cls.version >= 1


@dataclass(frozen=True)
class LabSweepPoint(Step, name="lab-sweep.point"):
    """A lab's own procedure's document, declared in the lab's code."""

    bias_V: float
    currents_uA: np.ndarray


def test_a_labs_own_documents_are_stored_and_other_versions_are_kept_as_written(tmp_path):
    from pcm_hil.documents.events import Event

    with RunStore(tmp_path / "runs.sqlite") as store:
        run = store.start_run("lab-sweep")
        point = LabSweepPoint(bias_V=0.2, currents_uA=np.arange(4, dtype=np.float32))
        store.add_event(run, Event(point, 1, 2))
        (back,) = store.events(run)
        assert_same(back.document, point)
        # the same name written by another version of the class: kept, not misread
        store.db.execute("UPDATE events SET version = 7 WHERE run_id = ?", (run,))
        (other,) = store.events(run)
        assert isinstance(other.document, UnknownDocument)
        assert (other.document.name, other.document.version) == ("lab-sweep.point", 7)
        np.testing.assert_array_equal(other.document.values()["currents_uA"], point.currents_uA)
    with pytest.raises(TypeError, match="taken"):

        @dataclass(frozen=True)
        class Clash(Step, name="program.iteration"):
            pass


def test_a_failed_procedure_ends_with_its_end_document(tmp_path):
    class Broken:
        config = PcmChip.open("emulator?profile=tiny").config

        def pulse(self, *args):
            raise RuntimeError("the probe card fell off")

        def time(self):  # a chip's clock (program-and-verify waits on it)
            return 0.0

        def clock_mode(self):
            return "VIRT"

        def advance(self, seconds):
            raise AssertionError("nothing to wait for: the first pulse fails")

    from pcm_hil.procedures.program import program_and_verify

    with RunStore(tmp_path / "runs.sqlite") as store:
        run, emitted = record(
            store, "program", lambda ls: _expect_error(program_and_verify, Broken(), ls)
        )
        assert isinstance(emitted[-1].document, ProgramEnd)
        assert emitted[-1].document.status == "failed"
        assert "the probe card fell off" in emitted[-1].document.error
        assert store.run(run).status == "failed" and "probe card" in store.run(run).error


def _expect_error(program, chip, listeners):
    with pytest.raises(RuntimeError):
        program(chip, 0, np.arange(4), np.full(4, 5.0), listeners=listeners)


# --- a store written by pcm-hil 0.1 -------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, procedure TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL, status TEXT NOT NULL, error TEXT, resource TEXT,
    identity TEXT, protocol_version TEXT, software_version TEXT, parameters TEXT, seed INTEGER,
    host TEXT, pid INTEGER);
CREATE TABLE events (run_id INTEGER NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL,
    kind TEXT NOT NULL, procedure TEXT NOT NULL, done INTEGER NOT NULL, total INTEGER NOT NULL,
    wall_time REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE arrays (run_id INTEGER NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, seq, name));
"""


def write_v1_store(path) -> None:
    """A store as pcm-hil 0.1 wrote it: a program-and-verify cut off after two iterations, an
    inference step, and an event of a procedure 0.1 did not have."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute(
        "INSERT INTO runs VALUES (1, 'program', 1.0, NULL, 'running', NULL, 'emulator', "
        "'{\"model\": \"PCM-EMULATOR\"}', '1.0', '0.1.0', '{}', 0, 'elsewhere', 1)"
    )
    start = {
        "strategy": "amplitude",
        "tolerance_uS": 0.5,
        "max_iterations": 30,
        "devices": 4,
        "tiles": [0],
    }
    start_arrays = {
        "tile": np.zeros(4, np.int32),
        "address": np.arange(4, dtype=np.int32),
        "target_uS": np.array([1, 2, 3, 4], np.float32),
    }
    steps = [
        {"iteration": 1, "converged": 1, "stuck": 0, "devices": 4},
        {"iteration": 2, "converged": 2, "stuck": 1, "devices": 4},
    ]
    step_arrays = [
        {"read_uS": np.array([1.1, 9, 9, 9], np.float32), "done": np.array([1, 0, 0, 0], bool)},
        {
            "read_uS": np.array([1.1, 2.2, 0.1, 9], np.float32),
            "done": np.array([1, 1, 1, 0], bool),
        },
    ]
    rows = [
        ("start", "program", 0, 30, start, start_arrays),
        ("step", "program", 1, 30, steps[0], step_arrays[0]),
        ("step", "program", 2, 30, steps[1], step_arrays[1]),
        (
            "step",
            "infer",
            1,
            6,
            {"t_s": 1.0, "weights": "plain", "accuracy_none": 0.9, "accuracy_gdc": 0.95},
            {},
        ),
        ("step", "oscilloscope", 1, 1, {"trace": 3}, {}),
    ]
    for seq, (kind, procedure, done, total, data, arrays) in enumerate(rows):
        db.execute(
            "INSERT INTO events VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
            (seq, kind, procedure, done, total, 100.0 + seq, json.dumps(data)),
        )
        for name, array in arrays.items():
            db.execute(
                "INSERT INTO arrays VALUES (1, ?, ?, ?, ?, ?)",
                (seq, name, array.dtype.str, json.dumps(array.shape), array.tobytes()),
            )
    db.commit()
    db.close()


def test_a_store_of_pcm_hil_0_1_is_migrated_and_nothing_is_lost(tmp_path):
    path = tmp_path / "old.sqlite"
    write_v1_store(path)
    with RunStore(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
        events = list(store.events(1))
        assert [e.wall_time_s for e in events] == [100.0, 101.0, 102.0, 103.0, 104.0]
        start, _first, second, infer, other = (e.document for e in events)
        assert isinstance(start, ProgramStart) and start.strategy == "amplitude"
        np.testing.assert_array_equal(start.target_uS, [1, 2, 3, 4])
        assert isinstance(second, ProgramIteration) and second.stuck_devices == 1
        # version 1 held every device's latest read; read back as version 2, all were read
        np.testing.assert_array_equal(
            second.conductance_uS, np.array([1.1, 2.2, 0.1, 9], np.float32)
        )
        assert second.is_read.all() and second.version == 2
        np.testing.assert_array_equal(second.finished, [True, True, True, False])
        assert infer.accuracy == {"none": 0.9, "gdc": 0.95} and infer.chip is None
        assert isinstance(other, UnknownDocument) and other.values() == {"trace": 3}
        assert store.run(1).identity == {"model": "PCM-EMULATOR"} and store.run(1).chip is None
        # the migrated run resumes: only the device not finished is left
        _tiles, addresses, targets, finished = unfinished_from_run(store, 1)
        assert addresses.tolist() == [3] and targets.tolist() == [4.0] and finished == 3
    with RunStore(path) as again:  # opening it again migrates nothing twice
        assert len(list(again.events(1))) == 5


def test_a_store_of_a_newer_pcm_hil_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    RunStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {STORE_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="update pcm-hil"):
        RunStore(path)


def test_documents_name_one_thing_one_way():
    """The same quantity has one field name in every document that holds it."""
    names = {f.name for cls in document_types().values() for f in fields(cls)}
    assert "read_uS" not in names and "wall_time" not in names and "stuck" not in names
    assert {"conductance_uS", "stuck_devices", "target_uS"} <= names
    assert issubclass(DriftRead, Document) and issubclass(DriftStart, Document)


def test_two_processes_opening_an_old_store_at_once_both_get_it_migrated(tmp_path):
    """The migration runs under the write lock and checks the version again there: the
    second opener (the dashboard, say, while the first run after an upgrade starts) waits
    and finds the store migrated. The old store is copied beside itself first."""
    import threading

    path = tmp_path / "old.sqlite"
    write_v1_store(path)
    start, errors, counts = threading.Barrier(2), [], []

    def open_it():
        start.wait()
        try:
            with RunStore(path) as store:
                counts.append(len(list(store.events(1))))
        except Exception as error:  # recorded, asserted below
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and counts == [5, 5]
    backup = tmp_path / "old.sqlite.v0.bak"
    with sqlite3.connect(backup) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 0
        assert old.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 5


def test_a_document_class_declared_after_the_store_opened_reads_back(tmp_path):
    from pcm_hil.documents.events import Event

    with RunStore(tmp_path / "runs.sqlite") as store:
        run = store.start_run("late")

        @dataclass(frozen=True)
        class LatePoint(Step, name="late.point"):
            value: float

        store.add_event(run, Event(LatePoint(value=1.5), 1, 1))
        (back,) = store.events(run)
        assert type(back.document) is LatePoint and back.document.value == 1.5


def test_an_end_without_a_class_here_still_ends_the_run(tmp_path):
    from pcm_hil.documents.events import Event

    with RunStore(tmp_path / "runs.sqlite") as store:
        run = store.start_run("elsewhere")
        end = UnknownDocument("elsewhere.end", 1, "end", "elsewhere", {"status": "failed", "error": "x"})  # fmt: skip
        Recorder(store, run, "elsewhere")(Event(end, 1, 1))
        assert (store.run(run).status, store.run(run).error) == ("failed", "x")


def test_non_finite_numbers_are_stored_as_null_in_strict_json(tmp_path):
    from pcm_hil.documents.events import Event

    with RunStore(tmp_path / "runs.sqlite") as store:
        run = store.start_run("program")
        store.add_event(run, Event(ProgramEnd(error_std_uS=float("nan"), devices=3), 1, 1))
        (data,) = store.db.execute("SELECT data FROM events").fetchone()
        values = json.loads(data, parse_constant=lambda c: pytest.fail(f"{c} in the store"))
        assert values["error_std_uS"] is None and values["devices"] == 3
        (back,) = store.events(run)
        assert back.document.error_std_uS is None
