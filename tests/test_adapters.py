"""pcm-hil in a QCoDeS lab (the chip as an Instrument in a Station, a drift Measurement stored
in a QCoDeS database and read back) and in a bluesky one (every procedure's runs exported as
event-model documents, each validated by event-model's own schemas)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.demo import run_demo
from pcm_hil.documents.events import Emitter
from pcm_hil.documents.sweep import SweepPoint, SweepStart
from pcm_hil.drivers import PcmChip
from pcm_hil.records.session import record
from pcm_hil.records.store import Recorder, RunStore

qcodes = pytest.importorskip("qcodes", reason="the qcodes extra is not installed")
event_model = pytest.importorskip("event_model", reason="the bluesky extra is not installed")


@pytest.fixture
def qcodes_database(tmp_path):
    """A QCoDeS database in the test's folder; qcodes' settings and instruments restored."""
    from qcodes.dataset import initialise_or_create_database_at
    from qcodes.instrument import Instrument

    before = qcodes.config["core"]["db_location"]
    path = tmp_path / "experiments.db"
    initialise_or_create_database_at(str(path))
    try:
        yield path
    finally:
        Instrument.close_all()
        qcodes.config["core"]["db_location"] = before


def test_the_chip_in_a_station_and_a_drift_measurement_in_its_database(qcodes_database):
    from qcodes.dataset import load_by_id, load_or_create_experiment
    from qcodes.station import Station

    from pcm_hil.adapters.qcodes import PcmChipInstrument

    pcm = PcmChipInstrument("pcm", "emulator?profile=tiny&seed=3")
    station = Station(pcm)
    assert station.components["pcm"] is pcm
    assert pcm.get_idn() == {
        "vendor": "PCM-HIL",
        "model": "PCM-EMULATOR",
        "serial": "EMU-0001",
        "firmware": "0.1.0",
    }
    pcm.temperature(320.0)
    assert pcm.temperature() == 320.0
    with pytest.raises(ValueError):  # outside the chip's limits: refused by QCoDeS
        pcm.temperature(500.0)
    pcm.temperature(300.0)
    pcm.tile(1)
    assert pcm.conductance().shape == (16, 16)
    targets = np.linspace(2.0, 20.0, 32)
    programmed = pcm.program_and_verify(np.arange(32), targets, tile=1)
    assert programmed.converged.mean() > 0.9
    # what the measurement reads, kept as it is read
    seen: list[np.ndarray] = []
    read = pcm.chip.read

    def reading(tile, addresses):
        seen.append(read(tile, addresses).astype(np.float64))
        return seen[-1]

    pcm.chip.read = reading  # type: ignore[method-assign]
    experiment = load_or_create_experiment("retention", sample_name="tiny chip")
    times = [1.0, 10.0, 100.0, 1000.0, 10000.0]
    dataset = pcm.record_drift(times, experiment=experiment)
    # read back from the database, as a lab would
    loaded = load_by_id(dataset.run_id).get_parameter_data("pcm_programmed_conductance")
    table = loaded["pcm_programmed_conductance"]
    np.testing.assert_array_equal(table["pcm_programmed_conductance"], np.stack(seen))
    np.testing.assert_allclose(table["pcm_after_programming"][:, 0], times)
    np.testing.assert_array_equal(table["pcm_device"], np.tile(np.arange(32), (5, 1)))
    # the physics came through: the programmed devices drifted down over the decades
    means = table["pcm_programmed_conductance"].mean(axis=1)
    assert means[-1] < means[0] and np.all(np.diff(means[1:]) < 0)
    pcm.close()
    pcm.close()  # closing again, or by the station, is no error
    station.close_all_registered_instruments()


def every_procedures_run(store_path, capsys) -> dict[str, int]:
    """One run of each of pcm-hil's procedures in a store, small: their ids by procedure."""
    common = ["--runs", str(store_path), "--quiet", "--json"]
    tiny = ["--resource", "emulator?profile=tiny&seed=2"]
    commands = {
        "program": ["program", *tiny, "--levels", "4"],
        "drift": ["drift", *tiny, "--levels", "4", "--points", "5"],
        "programming-curve": ["characterize", "programming-curve", *tiny, "--devices", "128"],
        "accumulation": ["characterize", "accumulation", *tiny, "--devices", "128"],
        "read-noise": ["characterize", "read-noise", *tiny, "--devices", "128"],
        "infer": ["infer", "--chips", "1", "--times", "1", "100"],
        "train": ["train", "--resource", "emulator?profile=small&seed=2", "--epochs", "1"],
    }
    ids = {}
    for procedure, argv in commands.items():
        argv = [*argv, *common] + (["--hidden", "16"] if procedure == "train" else [])
        assert main(argv) == 0, procedure
        ids[procedure] = json.loads(capsys.readouterr().out)["run_id"]
    with RunStore(store_path) as store:
        with record("sweep", store=store) as run:  # a sweep's documents, without a cluster
            emitter = Emitter(run.listeners, total=2)
            emitter.emit(SweepStart(function="f:g", axes={"x": [1, 2]}, fixed={}, seed=0, points=2))
            point = SweepPoint(index=0, parameters={"x": 1}, result={"y": [0.5, float("nan")]})
            emitter.step(point)
        ids["sweep"] = run.id
        demo_id = store.start_run("demo")
        with PcmChip.open("emulator?profile=small") as chip:
            run_demo(
                chip,
                lambda i: PcmChip.open(f"emulator?seed={i}"),
                chips=1,
                drift_devices=128,
                listeners=[Recorder(store, demo_id, "demo")],
            )
        ids["demo"] = demo_id
    return ids


def test_every_procedures_runs_export_as_valid_bluesky_documents(tmp_path, capsys):
    from event_model import DocumentNames, schema_validators

    from pcm_hil.adapters.bluesky import run_documents

    store_path = tmp_path / "runs.sqlite"
    ids = every_procedures_run(store_path, capsys)
    seen_streams = set()
    for procedure, run_id in ids.items():
        output = tmp_path / f"{procedure}.jsonl"
        assert (
            main(
                [
                    "runs",
                    "export",
                    str(run_id),
                    "--format",
                    "bluesky",
                    "--output",
                    str(output),
                    "--runs",
                    str(store_path),
                ]
            )
            == 0
        )
        assert capsys.readouterr().out.strip() == str(output)
        lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
        assert lines[0][0] == "start" and lines[-1][0] == "stop", procedure
        for name, document in lines:
            schema_validators[DocumentNames[name]].validate(document)
        start, stop = lines[0][1], lines[-1][1]
        assert start["plan_name"] == procedure and start["scan_id"] == run_id
        assert stop["run_start"] == start["uid"] and stop["exit_status"] == "success"
        descriptors = {d["uid"]: d for n, d in lines if n == "descriptor"}
        events = [d for n, d in lines if n == "event"]
        assert all(e["descriptor"] in descriptors for e in events)
        seen_streams |= {d["name"] for d in descriptors.values()}
        with RunStore(store_path, readonly=True) as store:
            stored = list(store.events(run_id))
        assert len(events) == len(stored), procedure  # one event per pcm-hil document
        # values as stored: every array element, every number (NaN as null)
        for event, original in zip(events, stored, strict=True):
            for key, value in original.document.values().items():
                if isinstance(value, np.ndarray):
                    exported = np.array(event["data"][key], dtype=np.float64).reshape(value.shape)
                    np.testing.assert_array_equal(exported, value.astype(np.float64))
        # each value of the type its stream declares (a None where the document had none)
        python = {
            "number": (int, float),
            "integer": int,
            "boolean": bool,
            "string": str,
            "array": list,
        }
        for event in events:
            keys = descriptors[event["descriptor"]]["data_keys"]
            for key, value in event["data"].items():
                assert value is None or isinstance(value, python[keys[key]["dtype"]]), (key, value)
        # the same run exports the same documents again, uids and all, however the store's
        # path is written
        relative = os.path.relpath(store_path)
        assert run_documents(run_id, relative) == [tuple(line) for line in lines]
    for stream in ("program.start", "program.iteration", "program.end", "drift.read",
                   "infer.accuracy", "train.epoch", "demo.stage", "sweep.point",
                   "programming-curve.point", "accumulation.point", "read-noise.read"):  # fmt: skip
        assert stream in seen_streams, stream


def test_a_cancelled_and_a_failed_run_stop_as_abort_and_fail(tmp_path):
    from event_model import DocumentNames, schema_validators

    from pcm_hil.adapters.bluesky import run_documents

    with RunStore(tmp_path / "runs.sqlite") as store:
        cancelled = store.start_run("program")
        store.finish_run(cancelled, "cancelled")
        failed = store.start_run("drift")
        store.finish_run(failed, "failed", error="ChipTimeoutError: no reply")
        for run_id, status, reason in (
            (cancelled, "abort", ""),
            (failed, "fail", "ChipTimeoutError: no reply"),
        ):
            documents = run_documents(run_id, store)
            for name, document in documents:
                schema_validators[DocumentNames[name]].validate(document)
            assert documents[-1][1]["exit_status"] == status
            assert documents[-1][1]["reason"] == reason
