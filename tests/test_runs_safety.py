"""Recorded runs stay safe in a lab's hands: exports never write over a user's files, labels
of any TOML type export, a script's run ends when its block does, loaded arrays are the
user's to change, and a store is not migrated under an older pcm-hil still recording."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import pcm_hil
from pcm_hil.cli.main import main
from pcm_hil.records.store import RunStore, StoreError

PROGRAM = ["program", "--resource", "emulator?profile=tiny&seed=2", "--devices", "32", "--quiet"]


@pytest.fixture
def recorded(capsys) -> int:
    assert main(PROGRAM) == 0
    capsys.readouterr()
    with RunStore(readonly=True) as store:
        return store.latest().id


def test_an_export_never_writes_over_a_users_files(recorded, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("draft")
    results = tmp_path / "results"
    results.mkdir()
    (results / "other-run.csv").write_text("keep")
    for fmt, target, message in (
        ("netcdf", thesis, "is a folder"),
        ("csv", results, "holds other files (other-run.csv)"),
        ("parquet", thesis, "holds other files (chapter1.tex)"),
        ("csv", thesis / "chapter1.tex", "is a file"),
    ):
        command = ["runs", "export", str(recorded), "--format", fmt, "--output", str(target)]
        assert main(command) == 1
        assert message in capsys.readouterr().err
    assert (thesis / "chapter1.tex").read_text() == "draft"
    assert (results / "other-run.csv").read_text() == "keep"
    # an earlier export of its own is replaced; a file format replaces a file
    for fmt, target in (("csv", tmp_path / "out"), ("netcdf", tmp_path / "run.nc")):
        for _ in range(2):
            command = ["runs", "export", str(recorded), "--format", fmt, "--output", str(target)]
            assert main(command) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "metadata.json", "program.csv", "program.verify.csv",
    ]  # fmt: skip
    assert not list(tmp_path.glob(".*partial"))


def test_labels_of_any_toml_type_are_recorded_filtered_and_exported(tmp_path, capsys):
    config = tmp_path / "user-config" / "config.toml"
    config.parent.mkdir()
    config.write_text("[meta]\nannealed = true\nwafer_date = 2024-05-01\ntemp_C = 25.0\n")
    assert main(PROGRAM) == 0
    capsys.readouterr()
    with RunStore(readonly=True) as store:
        run = store.latest()
        assert run.meta == {"annealed": True, "wafer_date": "2024-05-01", "temp_C": 25.0}
        assert [r.id for r in store.runs(meta={"annealed": "true", "temp_C": "25"})] == [run.id]
        assert [r.id for r in store.runs(meta={"annealed": True})] == [run.id]
    assert main(["runs", "show", str(run.id)]) == 0
    assert "annealed=true" in capsys.readouterr().out  # shown as it is filtered
    path = tmp_path / "run.nc"
    assert main(["runs", "export", str(run.id), "--format", "netcdf", "--output", str(path)]) == 0
    with xr.open_dataset(path) as ds:
        assert ds.attrs["meta_annealed"] == "true" and ds.attrs["meta_temp_C"] == 25.0
    config.write_text("run = 5\n")
    assert main(PROGRAM) == 1
    err = capsys.readouterr().err
    assert "tables of key = value pairs" in err and err.count("\n") == 1


def test_a_scripts_run_ends_with_its_block_whatever_it_is_named(tmp_path, capsys):
    with pcm_hil.PcmChip.open("emulator?profile=tiny&seed=4") as chip:
        with pcm_hil.record("program", chip=chip) as run:
            for tile in (0, 1):
                pcm_hil.program_and_verify(
                    chip, tile, np.arange(16), np.full(16, 10.0), listeners=run.listeners
                )
                assert run.store.run(run.id).status == "running"  # a procedure's end is not its
            run.summary = {"mean_nu": 0.05, "note": "two tiles"}
    with RunStore(readonly=True) as store:
        assert store.run(run.id).status == "completed"
    # runs show prints a script's summary as its values, whatever the run is named
    assert main(["runs", "show", str(run.id)]) == 0
    out = capsys.readouterr().out
    assert "Summary" in out and "mean_nu" in out and "two tiles" in out
    with pytest.raises(SystemExit):
        with pcm_hil.record("script") as run:
            sys.exit(0)
    with RunStore(readonly=True) as store:
        assert store.run(run.id).status == "completed"


def test_loaded_arrays_are_the_users_to_change(recorded):
    ds = pcm_hil.load_run(recorded, "program")
    for name in ds.data_vars:
        assert ds[name].values.flags.writeable, name
    ds["final_uS"][ds.stuck] = np.nan  # as a lab does to drop stuck devices


def test_a_store_an_older_pcm_hil_records_into_is_not_migrated_under_it(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    db = sqlite3.connect(path)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        db.execute(
            "INSERT INTO runs (procedure, started_at, status, host, pid) VALUES "
            "('drift', 0, 'running', ?, ?)",
            (socket.gethostname(), writer.pid),
        )
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        with pytest.raises(StoreError, match=r"run 1 is being recorded .* once that run has ended"):
            RunStore(path)
        with RunStore(path, readonly=True) as store:  # reading it is fine meanwhile
            assert store.run(1).status == "running"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    with RunStore(path) as store:  # its writer gone: migrated
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == 3


def test_changing_a_store_that_is_not_there_is_refused(tmp_path, capsys):
    missing = tmp_path / "typo.sqlite"
    for command in (["runs", "tag", "1", "cal"], ["runs", "delete", "1"], ["runs", "vacuum"]):
        assert main([*command, "--runs", str(missing)]) == 1
        assert f"no run store at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_a_resumed_drift_table_holds_the_reads_of_the_run_it_resumed(tmp_path):
    from pcm_hil.records.resume import progress_from_run

    stop = {"reads": 0}

    def interrupt(event):
        if event.document.name == "drift.read":
            stop["reads"] += 1
            if stop["reads"] == 3:
                raise KeyboardInterrupt

    with pcm_hil.PcmChip.open("emulator?profile=tiny&seed=6") as chip:
        clock = pcm_hil.ChipClock(chip)
        times = pcm_hil.log_times(1.0, 1e6, 8)
        with pcm_hil.record("first", chip=chip) as first:
            pcm_hil.measure_drift(
                chip, clock, 0, np.arange(32), np.full(32, 12.0), times,
                listeners=[*first.listeners, interrupt],
            )  # fmt: skip
        with RunStore(readonly=True) as store:
            progress = progress_from_run(store, first.id)
        with pcm_hil.record("second", chip=chip) as second:
            result = pcm_hil.measure_drift(
                chip, clock, None, None, None, resume=progress, listeners=second.listeners
            )
    table = pcm_hil.load_run(second.id, "drift")
    assert table.sizes["time"] == 8 and table.attrs["resumed_from_run"] == first.id
    assert table.attrs["resumed_reads"] == 3
    np.testing.assert_array_equal(table.conductance_uS.values, result.conductance_uS)
    np.testing.assert_array_equal(table.nu.values, result.nu.astype(np.float32))
