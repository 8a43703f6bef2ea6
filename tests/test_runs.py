"""The run store: nothing completed is lost when a run is killed or its chip goes away;
listing, showing and exporting runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.drivers import ChipDisconnectedError, PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock


def wait_for(condition, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_run_keeps_every_completed_step(tmp_path):
    """A drift measurement on a real-time chip, killed with SIGKILL while it waits between
    reads: the store stays readable and holds every step before the kill, arrays intact."""
    store_path = tmp_path / "runs.sqlite"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pcm_hil.cli",
            "drift",
            "--quiet",
            "--runs",
            str(store_path),
            "--resource",
            "emulator?profile=small&real_time=1",
            "--devices",
            "256",
            "--levels",
            "4",
            "--start",
            "0.05",
            "--end",
            "30",
            "--points",
            "60",
            "--reads-per-point",
            "1",
            "--settle",  # programming on a real-time clock: no 20 s waits per iteration
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def drift_steps() -> int:
            if not store_path.exists():
                return 0
            with RunStore(store_path) as store:
                latest = store.latest()
                return (
                    0
                    if latest is None
                    else sum(
                        1
                        for e in store.events(latest.id)
                        if e.procedure == "drift" and e.kind == "step"
                    )
                )

        wait_for(lambda: drift_steps() >= 8, what="eight drift reads")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    with RunStore(store_path) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        run = store.latest()
        assert run.procedure == "drift" and run.status == "killed"
        events = list(store.events(run.id))
        assert [e.seq for e in events] == list(range(len(events)))  # nothing missing in between
        steps = [e for e in events if e.procedure == "drift" and e.kind == "step"]
        assert len(steps) >= 8
        times = [e.document.t_s for e in steps]
        assert times == sorted(times)
        for step in steps:
            assert step.document.conductance_uS.shape == (256,)
            assert np.all(np.isfinite(step.document.conductance_uS))
        programming = [e for e in events if e.procedure == "program"]
        assert programming[0].kind == "start" and programming[-1].kind == "end"


def test_dropped_connection_marks_the_run_failed_and_keeps_the_data(tmp_path):
    server = TcpServer(WireInterface(make_chip("small", 3))).start()
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.start_run("drift", resource=server.resource)
    recorder = Recorder(store, run_id, "drift")

    def pull_the_cable(event):
        if event.procedure == "drift" and event.kind == "step" and event.done == 5:
            server.stop()

    chip = PcmChip.open(server.resource, timeout_s=2)
    try:
        with pytest.raises(ChipDisconnectedError):
            measure_drift(
                chip,
                ChipClock(chip),
                0,
                np.arange(512),
                np.repeat([5.0, 15.0], 256),
                log_times(1, 1e6, 20),
                listeners=[recorder, pull_the_cable],
            )
    finally:
        chip.close()
        server.stop()
    info = store.run(run_id)
    assert info.status == "failed"
    assert "ChipDisconnectedError" in info.error
    steps = [e for e in store.events(run_id) if e.procedure == "drift" and e.kind == "step"]
    assert len(steps) == 5 and all(s.document.conductance_uS.shape == (512,) for s in steps)
    store.close()


def test_cli_records_lists_shows_and_exports(tmp_path, capsys):
    runs = str(tmp_path / "runs.sqlite")
    assert (
        main(
            [
                "program",
                "--resource",
                "emulator?profile=small",
                "--devices",
                "256",
                "--levels",
                "4",
                "--json",
                "--runs",
                runs,
            ]
        )
        == 0
    )
    program = json.loads(capsys.readouterr().out)
    assert main(["runs", "list", "--json", "--runs", runs]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert listed[0]["id"] == program["run_id"] and listed[0]["status"] == "completed"
    assert (
        listed[0]["identity"]["model"] == "PCM-EMULATOR" and listed[0]["protocol_version"] == "1.1"
    )
    assert listed[0]["parameters"]["levels"] == 4
    # runs show: the record and the summary the command printed
    assert main(["runs", "show", str(program["run_id"]), "--json", "--runs", runs]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["summary"] == {k: v for k, v in program.items() if k not in ("resource", "run_id")}
    assert main(["runs", "show", str(program["run_id"]), "--runs", runs]) == 0
    printed = capsys.readouterr().out
    assert "Run 1: program" in printed and "Program-and-verify" in printed
    # runs show --events: the raw stream
    assert main(["runs", "show", str(program["run_id"]), "--events", "--json", "--runs", runs]) == 0
    shown = json.loads(capsys.readouterr().out)
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") >= 3
    names = [e["document"] for e in shown["events"]]
    assert names[0] == "program.start" and names[-1] == "program.end"
    assert set(names[1:-1]) == {"program.iteration"}
    assert shown["run"]["chip"]["rows"] == 64 and shown["run"]["chip"]["g_max_uS"] == 25.0
    assert shown["events"][-1]["data"]["converged_fraction"] == pytest.approx(
        program["converged_fraction"]
    )
    for fmt, name in (("netcdf", "run.nc"), ("csv", "run-csv"), ("parquet", "run-pq")):
        out = tmp_path / name
        command = ["runs", "export", str(program["run_id"]), "--format", fmt, "--output", str(out)]
        assert main([*command, "--runs", runs]) == 0
        assert capsys.readouterr().out.strip() == str(out)
    import pandas as pd
    import xarray as xr

    with xr.open_dataset(tmp_path / "run.nc") as ds:
        assert ds.sizes["device"] == 256 and ds.attrs["run_id"] == program["run_id"]
        assert float(ds.converged.mean()) == pytest.approx(program["converged_fraction"])
    table = pd.read_csv(tmp_path / "run-csv" / "program.csv")
    assert len(table) == 256 and {"tile", "address", "final_uS", "converged"} <= set(table)
    assert len(pd.read_parquet(tmp_path / "run-pq" / "program.parquet")) == 256
    capsys.readouterr()
    assert main(["runs", "show", "999", "--runs", runs]) == 1
    assert "no run 999" in capsys.readouterr().err
