"""Recorded runs as data (``pcm_hil.data``): every table of a run checked against what its
procedure recorded — the drift fits redone independently on the stored reads, the
programming statistics against the run's own summary, characterization curves against their
recorded means — and every export format read back with plain xarray / pandas, exactly."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pcm_hil.analog.inference import drift_experiment
from pcm_hil.cli.main import main
from pcm_hil.data import export_run, load_run, run_tables
from pcm_hil.documents.base import Step
from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator.resource import EmulatorOptions
from pcm_hil.nn.data import load_digits_split
from pcm_hil.nn.train import train
from pcm_hil.nn.zoo import mlp
from pcm_hil.procedures.characterize import conductance_bins
from pcm_hil.procedures.program import (
    TOLERANCE_FLOOR_US,
    TOLERANCE_REL,
    TOLERANCE_US,
    device_tolerance,
    program_and_verify,
)
from pcm_hil.records.store import Recorder, RunStore

DRIFT_RESOURCE = "emulator?profile=tiny&seed=5"
#: seed 2 on both tiles with 12 iterations at most: ~92% converge, 3 devices stuck
PROGRAM_RESOURCE = "emulator?profile=tiny&seed=2"
COLUMNS = 16  # the tiny profile's columns


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    """Run labels come from a config file that does not exist and no $PCM_HIL_META: the
    user's ~/.config never reaches these runs."""
    monkeypatch.setenv("PCM_HIL_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.delenv("PCM_HIL_META", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


def record_cli(capsys, *argv: str) -> int:
    """Run a recording command with --json; its run id."""
    assert main([*argv, "--quiet", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["run_id"]


def stored(run_id: int):
    """(record, events, summary) of a run of the private store."""
    with RunStore(readonly=True) as store:
        return store.run(run_id), list(store.events(run_id)), store.summary(run_id)


def drift_run(capsys) -> int:
    return record_cli(
        capsys,
        "drift",
        "--resource",
        DRIFT_RESOURCE,
        "--levels",
        "4",
        "--points",
        "10",
        "--meta",
        "sample=W12",
        "--tag",
        "retention",
    )


def program_run(capsys) -> int:
    return record_cli(
        capsys,
        "program",
        "--resource",
        PROGRAM_RESOURCE,
        "--tiles",
        "all",
        "--levels",
        "4",
        "--max-iterations",
        "12",
    )


# --- drift --------------------------------------------------------------------------------------


def test_drift_fits_equal_an_independent_fit_of_the_stored_reads(capsys):
    run_id = drift_run(capsys)
    ds = load_run(run_id)
    _info, events, summary = stored(run_id)
    (start,) = [e.document for e in events if isinstance(e.document, DriftStart)]
    reads = [e.document for e in events if isinstance(e.document, DriftRead)]
    assert len(reads) == 10 and ds.sizes == {"time": 10, "device": 256}

    # the reads as stored, each at its device's time since programming
    conductance = np.array([r.conductance_uS for r in reads], dtype=np.float64)
    elapsed = (
        np.array([r.read_at_s for r in reads])[:, None] - np.asarray(start.programmed_at_s)[None]
    )
    np.testing.assert_array_equal(ds.conductance_uS.values, conductance.astype(np.float32))
    np.testing.assert_array_equal(ds.read_at_s.values, [r.read_at_s for r in reads])
    np.testing.assert_array_equal(ds.t_s.values, [r.t_s for r in reads])
    np.testing.assert_array_equal(ds.usable.values, start.usable)

    t0 = ds.attrs["t0_s"]
    assert t0 == start.fit_from_s == 20.0
    usable = np.asarray(start.usable, dtype=bool)
    assert usable.sum() >= 200  # nearly every device programmed: the fits below are many
    nu = np.full(usable.size, np.nan)
    g_t0 = np.full(usable.size, np.nan)
    nu_error = np.full(usable.size, np.nan)
    for device in np.flatnonzero(usable):
        use = (elapsed[:, device] >= start.fit_from_s) & (conductance[:, device] > 0)
        assert use.sum() >= 3
        x, y = np.log(elapsed[use, device]), np.log(conductance[use, device])
        line, cov = np.polyfit(x, y, 1, cov=True)
        nu[device] = -line[0]
        g_t0[device] = np.exp(np.polyval(line, np.log(t0)))
        nu_error[device] = np.sqrt(cov[0, 0])
    np.testing.assert_allclose(ds.nu.values[usable], nu[usable], rtol=1e-4)
    np.testing.assert_allclose(ds.g_t0_uS.values[usable], g_t0[usable], rtol=1e-4)
    np.testing.assert_allclose(ds.nu_error.values[usable], nu_error[usable], rtol=1e-4)
    max_error = ds.attrs["max_nu_error"]
    np.testing.assert_array_equal(ds.good.values, usable & (ds.nu_error.values <= max_error))

    # the mean ν per level of the good fits is the run's summary
    by_level = ds.nu.where(ds.good).groupby("level").mean()
    levels = summary["levels"]
    assert len(levels) == 4 == by_level.sizes["level"]
    for k, level in enumerate(levels):
        at = ds.level.values == k
        assert float(ds.target_uS.values[at][0]) == pytest.approx(level["target_uS"])
        assert np.all(ds.target_uS.values[at] == ds.target_uS.values[at][0])
        assert float(by_level.sel(level=k)) == pytest.approx(level["nu_mean"], rel=1e-5)
        assert int((at & ds.good.values).sum()) == level["n_devices"]


def test_drift_dataset_is_labelled_located_and_described(capsys):
    run_id = drift_run(capsys)
    ds = load_run(run_id)
    info, events, _summary = stored(run_id)
    (start,) = [e.document for e in events if isinstance(e.document, DriftStart)]
    assert ds.conductance_uS.dims == ("time", "device")
    for name in ("nu", "nu_error", "fit_rms", "g_t0_uS", "good", "usable", "programmed_at_s"):
        assert ds[name].dims == ("device",), name
    assert ds.read_at_s.dims == ds.t_s.dims == ("time",)
    np.testing.assert_array_equal(ds.tile.values, start.tile)
    np.testing.assert_array_equal(ds.address.values, start.address)
    np.testing.assert_array_equal(ds.row.values * COLUMNS + ds.column.values, ds.address.values)
    assert ds.row.values.max() == COLUMNS - 1 and ds.column.values.max() == COLUMNS - 1
    np.testing.assert_array_equal(ds.target_uS.values, start.target_uS)
    targets = np.unique(ds.target_uS.values)
    np.testing.assert_array_equal(targets[ds.level.values], ds.target_uS.values)
    np.testing.assert_allclose(targets, [3.125, 9.375, 15.625, 21.875])
    # units and descriptions
    assert ds.conductance_uS.attrs["units"] == "uS"
    assert ds.g_t0_uS.attrs["units"] == "uS" and ds.target_uS.attrs["units"] == "uS"
    assert ds.t_s.attrs["units"] == "s" and ds.read_at_s.attrs["units"] == "s"
    assert ds.nu.attrs["units"] == "1" and ds.nu.attrs["long_name"]
    # the run's record
    assert ds.attrs["run_id"] == run_id and ds.attrs["run_procedure"] == "drift"
    assert ds.attrs["status"] == "completed" and ds.attrs["table"] == "drift"
    assert ds.attrs["chip_serial"] == info.identity["serial"] == "EMU-0001"
    assert ds.attrs["chip_columns"] == COLUMNS
    assert ds.attrs["meta_sample"] == "W12" and ds.attrs["tags"] == "retention"
    assert ds.attrs["seed"] == 5 and ds.attrs["resource"] == DRIFT_RESOURCE
    assert list(run_tables(run_id)) == ["drift", "program", "program.verify"]


# --- program-and-verify -------------------------------------------------------------------------


def test_program_table_matches_the_runs_summary(capsys):
    run_id = program_run(capsys)
    ds = load_run(run_id)
    _info, _events, summary = stored(run_id)
    assert ds.sizes == {"device": 512}
    converged, stuck = ds.converged.values, ds.stuck.values
    # the run is one worth checking: some devices converge, some do not, some are stuck
    assert 0.5 < converged.mean() < 1 and stuck.sum() > 0
    assert not np.any(converged & stuck)
    assert converged.mean() == summary["converged_fraction"]
    assert stuck.sum() == summary["stuck_devices"]
    assert ds.iterations.values[converged].mean() == pytest.approx(summary["iterations_mean"])
    np.testing.assert_array_equal(ds.error_uS.values, ds.final_uS.values - ds.target_uS.values)
    error = ds.error_uS.values.astype(np.float64)
    assert error[converged].std() == pytest.approx(summary["error_std_uS"], rel=1e-9)
    assert len(summary["levels"]) == 4
    for k, level in enumerate(summary["levels"]):
        at = ds.level.values == k
        assert float(ds.target_uS.values[at][0]) == level["target_uS"]
        assert at.sum() == level["devices"]
        assert converged[at].mean() == pytest.approx(level["converged_fraction"])
        assert stuck[at].sum() == level["stuck"]
        assert error[at & converged].std() == pytest.approx(level["error_std_uS"], rel=1e-6)


def test_verify_table_holds_every_verify_read_and_nothing_else(capsys):
    run_id = program_run(capsys)
    devices = load_run(run_id, "program")
    verify = load_run(run_id, "program.verify")
    _info, events, _summary = stored(run_id)
    (start,) = [e.document for e in events if isinstance(e.document, ProgramStart)]
    steps = [e.document for e in events if isinstance(e.document, ProgramIteration)]
    reads = verify.conductance_uS.values
    assert verify.conductance_uS.dims == ("iteration", "device")
    assert verify.iteration.values.tolist() == list(range(1, len(steps) + 1)) and len(steps) == 12
    trace = ProgramTrace(int(start.devices))
    for k, step in enumerate(steps):
        # a device is read in an iteration exactly when it was not finished before it
        np.testing.assert_array_equal(step.is_read, ~trace.finished)
        np.testing.assert_array_equal(~np.isnan(reads[k]), step.is_read)
        np.testing.assert_array_equal(reads[k][step.is_read], step.conductance_uS)
        assert verify.converged_devices.values[k] == step.converged
        trace.add(step)
    np.testing.assert_array_equal(trace.finished, devices.converged.values | devices.stuck.values)
    taken = (~np.isnan(reads)).sum(axis=0)
    np.testing.assert_array_equal(taken, devices.iterations.values)
    last = reads[taken - 1, np.arange(reads.shape[1])]  # each device's last verify read
    target = devices.target_uS.values
    # each device's tolerance: the CLI's defaults, --tolerance (the attribute) the widest
    assert devices.attrs["tolerance_uS"] == TOLERANCE_US
    tolerance = device_tolerance(target, TOLERANCE_US, TOLERANCE_REL, TOLERANCE_FLOOR_US)
    converged, stuck = devices.converged.values, devices.stuck.values
    within = np.abs(last - target) <= tolerance
    assert within[converged].all() and not within[~converged].any()
    assert np.all(taken[~converged & ~stuck] == 12)  # never finished: read every iteration
    assert verify.converged_devices.values[-1] == converged.sum()
    assert verify.stuck_devices.values[-1] == stuck.sum()


# --- exports ------------------------------------------------------------------------------------


def _exported(capsys, tmp_path, fmt: str):
    """A drift run (three tables) exported in ``fmt`` by the API and by the CLI: (tables,
    [path by the API, path by the CLI])."""
    run_id = drift_run(capsys)
    suffix = {"netcdf": ".nc", "hdf5": ".h5", "parquet": "", "csv": ""}[fmt]
    by_api = export_run(run_id, fmt, tmp_path / f"api{suffix}")
    assert by_api == tmp_path / f"api{suffix}"
    cli_path = tmp_path / f"cli{suffix}"
    argv = ["runs", "export", str(run_id), "--format", fmt, "--output", str(cli_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(cli_path)
    return run_tables(run_id), [by_api, cli_path]


@pytest.mark.parametrize("fmt", ["netcdf", "hdf5"])
def test_netcdf_and_hdf5_exports_open_with_plain_xarray_exactly(fmt, capsys, tmp_path):
    tables, paths = _exported(capsys, tmp_path, fmt)
    assert list(tables) == ["drift", "program", "program.verify"]
    for path in paths:
        with xr.open_dataset(path) as root:
            xr.testing.assert_identical(root.load(), tables["drift"])
        for name in ("program", "program.verify"):
            with xr.open_dataset(path, group=name) as group:
                xr.testing.assert_identical(group.load(), tables[name])
        assert tables["drift"].conductance_uS.dtype == np.float32
        back = load_run(path)
        xr.testing.assert_identical(back, tables["drift"])
        assert back.attrs == tables["drift"].attrs and back.attrs["table"] == "drift"
        assert back.conductance_uS.attrs["units"] == "uS"
        xr.testing.assert_identical(load_run(path, "program.verify"), tables["program.verify"])


def test_parquet_export_reads_back_exactly_with_units(capsys, tmp_path):
    tables, paths = _exported(capsys, tmp_path, "parquet")
    for folder in paths:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["metadata.json", *(f"{name}.parquet" for name in tables)]
        )
        for name, table in tables.items():
            back = pd.read_parquet(folder / f"{name}.parquet")
            expected = _tidy(name, table)
            pd.testing.assert_frame_equal(back, expected)  # values and dtypes (float32 kept)
            units = back.attrs["units"]
            for column in expected.columns:
                if column in table.variables:
                    assert units[column] == table[column].attrs.get("units", "")
            assert back.attrs["run"]["run_id"] == table.attrs["run_id"]
            assert back.attrs["run"]["table"] == name
    assert tables["drift"].conductance_uS.attrs["units"] == "uS"


def _tidy(name: str, table) -> pd.DataFrame:
    """The table as a folder export holds it: tidy, and for verify reads only those taken."""
    frame = table.to_dataframe().reset_index()
    if name.endswith(".verify"):
        taken = frame.dropna(subset=["conductance_uS"]).reset_index(drop=True)
        assert len(taken) == int(np.isfinite(table.conductance_uS.values).sum())
        return taken
    return frame


_SIGNIFICANT = re.compile(r"^-?(\d*)\.?(\d*)(?:[eE][-+]?\d+)?$")


def _significant_digits(text: str) -> int:
    match = _SIGNIFICANT.match(text)
    assert match, text
    digits = (match.group(1) + match.group(2)).lstrip("0")
    return len(digits.rstrip("0")) if "." in text or "e" in text.lower() else len(digits)


def test_csv_export_has_a_header_shortest_floats_and_reads_back_exactly(capsys, tmp_path):
    tables, paths = _exported(capsys, tmp_path, "csv")
    for folder in paths:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["metadata.json", *(f"{name}.csv" for name in tables)]
        )
        described = json.loads((folder / "metadata.json").read_text())["tables"]
        assert set(described) == set(tables)
        for name, table in tables.items():
            expected = _tidy(name, table)
            with open(folder / f"{name}.csv", newline="") as f:
                rows = list(csv.reader(f))
            assert rows[0] == [str(c) for c in expected.columns]  # the header row
            assert len(rows) == 1 + len(expected)
            back = pd.read_csv(folder / f"{name}.csv")
            for k, column in enumerate(expected.columns):
                want = expected[column].to_numpy()
                texts = [row[k] for row in rows[1:] if row[k] != ""]
                if want.dtype == np.float32:
                    assert max(_significant_digits(t) for t in texts) <= 9, column
                    got = back[column].to_numpy().astype(np.float32)
                    np.testing.assert_array_equal(got, want, err_msg=f"{name}.{column}")
                elif want.dtype.kind == "f":
                    assert max(_significant_digits(t) for t in texts) <= 17, column
                    np.testing.assert_array_equal(back[column].to_numpy(), want)
                elif want.dtype == bool:
                    assert set(texts) <= {"True", "False"}
                    np.testing.assert_array_equal(back[column].to_numpy(), want)
                else:
                    np.testing.assert_array_equal(back[column].to_numpy(), want)
            # every column described, with its units
            columns = described[name]["columns"]
            assert list(columns) == [str(c) for c in expected.columns]
            assert described[name]["rows"] == len(expected)
            for column in expected.columns:
                if column in table.variables:
                    assert columns[column]["units"] == table[column].attrs.get("units", "")
            assert described[name]["attributes"]["run_id"] == table.attrs["run_id"]
        assert described["drift"]["columns"]["conductance_uS"]["units"] == "uS"
        assert described["drift"]["columns"]["t_s"]["units"] == "s"


# --- a run cut off, a procedure pcm-hil does not know -------------------------------------------


def test_a_program_run_cut_off_loads_from_its_verify_reads():
    """A program-and-verify cancelled at iteration 3, recorded twice: once with its end (the
    cancelled end's per-device arrays) and once cut off before it (as a killed process leaves
    it: the trace of verify reads). Both tables are the procedure's result — but for the
    final reads of the converged devices, taken as they converged and recorded only in the
    end: cut off, a table has their last verify reads in their place."""

    class CutOff(Exception):
        pass

    with RunStore() as store, PcmChip.open("emulator?profile=tiny&seed=4") as chip:
        runs = [store.start_run("program", resource=chip.resource) for _ in range(2)]
        for run_id in runs:
            store.describe_chip(run_id, chip.config)
        ended = Recorder(store, runs[0], "program")
        killed = Recorder(store, runs[1], "program")

        def until_the_kill(event):
            if event.kind != "end":  # the process died before its end was written
                killed(event)

        def ctrl_c(event):
            if isinstance(event.document, ProgramIteration) and event.document.iteration == 3:
                raise KeyboardInterrupt

        tiles = np.repeat([0, 1], 256)
        addresses = np.tile(np.arange(256), 2)
        targets = np.tile([3.0, 9.0, 15.0, 21.0], 128)
        result = program_and_verify(
            chip, tiles, addresses, targets, listeners=[ended, until_the_kill, ctrl_c]
        )
        assert result.status == "cancelled"
        assert store.run(runs[0]).status == "cancelled"
        assert store.run(runs[1]).status == "running"  # no end: nothing said how it ended
    finished = result.converged | result.stuck
    assert 0 < result.converged.sum() and not finished.all()  # cut off mid-way
    for run_id, how in zip(runs, ("yes", "no"), strict=True):
        ds = load_run(run_id)
        assert ds.attrs["ended"].startswith(how)
        np.testing.assert_array_equal(ds.converged.values, result.converged)
        np.testing.assert_array_equal(ds.stuck.values, result.stuck)
        np.testing.assert_array_equal(ds.iterations.values, result.iterations)
        np.testing.assert_array_equal(ds.address.values, result.address)
        verify = load_run(run_id, "program.verify")
        assert verify.iteration.values.tolist() == [1, 2, 3]
        reads = verify.conductance_uS.values
        last = reads[result.iterations - 1, np.arange(result.iterations.size)]
        # the unconverged devices' final read is their last verify read, in both
        unconverged = ~result.converged
        np.testing.assert_array_equal(ds.final_uS.values[unconverged], last[unconverged])
        np.testing.assert_array_equal(ds.final_uS.values[unconverged], result.final_uS[unconverged])
        if how == "yes":  # the end's final reads, fresh ones for the converged devices
            np.testing.assert_array_equal(ds.final_uS.values, result.final_uS)
            assert not np.array_equal(ds.final_uS.values[result.converged], last[result.converged])
        else:  # cut off before the end: the last verify reads
            np.testing.assert_array_equal(ds.final_uS.values, last)


@dataclass(frozen=True)
class LabBiasPoint(Step, name="lab-bias.point"):
    """A lab's own procedure's step, declared in the lab's code."""

    bias_V: float
    label: str
    settled: bool
    repeats: int
    currents_uA: np.ndarray
    remark: str | None = None


def test_a_procedure_pcm_hil_does_not_know_loads_as_a_table_per_step():
    points = [
        LabBiasPoint(
            bias_V=0.1 * k,
            label=f"p{k}",
            settled=k % 2 == 0,
            repeats=k + 1,
            currents_uA=np.arange(3, dtype=np.float32) + k,
            remark="odd" if k % 2 else None,
        )
        for k in range(4)
    ]
    with RunStore() as store:
        run_id = store.start_run("lab-bias", meta={"sample": "W3"})
        events = [Event(p, k + 1, 4, wall_time_s=1000.0 + k) for k, p in enumerate(points)]
        for event in events:
            store.add_event(run_id, event)
        store.finish_run(run_id, "completed")
    assert list(run_tables(run_id)) == ["lab-bias"]
    ds = load_run(run_id)
    assert ds.step.values.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(ds.wall_time_s.values, [1000.0, 1001.0, 1002.0, 1003.0])
    np.testing.assert_allclose(ds.bias_V.values, [0.0, 0.1, 0.2, 0.3])
    assert ds.label.values.tolist() == ["p0", "p1", "p2", "p3"]
    assert ds.settled.dtype == bool and ds.settled.values.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(ds.repeats.values, [1, 2, 3, 4])
    assert ds.currents_uA.dims[0] == "step" and ds.currents_uA.shape == (4, 3)
    np.testing.assert_array_equal(ds.currents_uA.values, np.stack([p.currents_uA for p in points]))
    assert ds.remark.values.tolist() == ["", "odd", "", "odd"]
    assert ds.attrs["run_procedure"] == "lab-bias" and ds.attrs["meta_sample"] == "W3"


# --- characterization and inference -------------------------------------------------------------

CHARACTERIZE = "emulator?profile=tiny&seed=3"


@pytest.mark.parametrize(
    ("kind", "options", "x_name", "xs"),
    [
        (
            "programming-curve",
            ["--points", "6", "--current-min", "200", "--current-max", "560"],
            "current_uA",
            np.linspace(200, 560, 6),
        ),
        ("accumulation", ["--pulses", "5"], "pulses", np.arange(6)),
    ],
)
def test_a_curve_loads_point_by_device_with_its_recorded_statistics(
    kind, options, x_name, xs, capsys
):
    run_id = record_cli(capsys, "characterize", kind, "--resource", CHARACTERIZE, *options)
    ds = load_run(run_id)
    _info, events, summary = stored(run_id)
    points = [e.document for e in events if e.kind == "step"]
    assert ds.conductance_uS.dims == ("point", "device")
    assert ds.sizes == {"point": len(xs), "device": 256}
    np.testing.assert_allclose(ds[x_name].values, xs)
    np.testing.assert_array_equal(ds.address.values, np.arange(256))
    np.testing.assert_array_equal(ds.row.values * COLUMNS + ds.column.values, ds.address.values)
    reads = ds.conductance_uS.values.astype(np.float64)
    recorded = summary["points"]
    assert len(recorded) == len(points) == len(xs)
    for k, (point, printed) in enumerate(zip(points, recorded, strict=True)):
        np.testing.assert_array_equal(ds.conductance_uS.values[k], point.conductance_uS)
        assert reads[k].mean() == pytest.approx(point.mean_uS, rel=1e-9)
        assert reads[k].std() == pytest.approx(point.std_uS, rel=1e-9)
        assert reads[k].mean() == pytest.approx(printed["mean_uS"], rel=1e-9)
        assert reads[k].std() == pytest.approx(printed["std_uS"], rel=1e-9)
        assert printed[x_name] == pytest.approx(xs[k])
    np.testing.assert_allclose(ds.mean_uS.values, [p["mean_uS"] for p in recorded])
    assert ds.conductance_uS.attrs["units"] == "uS"
    assert reads.std(axis=1).max() > 0.1  # the devices differ: the statistics mean something


def test_read_noise_loads_per_device_and_bins_as_its_summary(capsys):
    run_id = record_cli(
        capsys, "characterize", "read-noise", "--resource", CHARACTERIZE, "--reads", "6"
    )
    ds = load_run(run_id)
    _info, _events, summary = stored(run_id)
    assert ds.sizes == {"device": 256} and ds.attrs["reads"] == 6
    mean = ds.mean_uS.values.astype(np.float64)
    std = ds.std_uS.values.astype(np.float64)
    np.testing.assert_allclose(ds.relative_std.values, std / mean, rtol=1e-6)
    bins = len(summary["points"])
    which = conductance_bins(mean, bins)
    for k, point in enumerate(summary["points"]):
        assert (which == k).sum() == point["devices"]
        assert mean[which == k].mean() == pytest.approx(point["conductance_uS"], rel=1e-6)
        assert (std / mean)[which == k].mean() == pytest.approx(point["relative_std"], rel=1e-5)


def test_timed_read_noise_loads_time_by_device(capsys):
    run_id = record_cli(
        capsys,
        "characterize",
        "read-noise",
        "--resource",
        CHARACTERIZE,
        "--reads",
        "4",
        "--times",
        "1",
        "100",
    )
    ds = load_run(run_id)
    assert ds.mean_by_time_uS.dims == ("time", "device")
    assert ds.sizes == {"time": 2, "device": 256}
    np.testing.assert_array_equal(ds.t_s.values, [1.0, 100.0])
    # the first time's burst is the per-device statistic
    np.testing.assert_array_equal(ds.mean_by_time_uS.values[0], ds.mean_uS.values)
    np.testing.assert_array_equal(ds.std_by_time_uS.values[0], ds.std_uS.values)
    assert ds.t_s.attrs["units"] == "s"


#: The inference experiment on small chips (the tiny chip holds no digits network: 64 inputs
#: need 64 rows); the CLI's ``infer`` (two 256-unit networks trained for 40 epochs) is tested
#: in tests/test_inference.py and tests/test_metadata.py; here two small networks, quickly.
INFER_RESOURCE = "emulator?profile=small&seed=3"


def test_infer_loads_chip_by_weights_by_time_by_compensation():
    data = load_digits_split(seed=0)
    networks = {}
    for name, eta in (("plain", 0.0), ("noise-aware", 0.1)):
        network = mlp(np.random.default_rng(1), hidden=16)
        train(network, *data[:2], epochs=2, lr=0.05, rng=np.random.default_rng(2), noise_eta=eta)
        networks[name] = network
    fp = networks["plain"].accuracy(data[2], data[3])
    options = EmulatorOptions.parse(INFER_RESOURCE)
    resources = [options.with_seed(3 + i).resource for i in range(2)]
    with RunStore() as store:
        run_id = store.start_run("infer", resource=INFER_RESOURCE)
        result = drift_experiment(
            lambda i: PcmChip.open(resources[i]),
            networks,
            data,
            fp_accuracy=fp,
            times_s=(1.0, 3600.0, 86400.0),
            chips=2,
            listeners=[Recorder(store, run_id, "infer")],
        )
    assert result.status == "completed"
    ds = load_run(run_id)
    assert ds.accuracy.dims == ("chip", "weights", "time", "compensation")
    assert ds.sizes == {"chip": 2, "weights": 2, "time": 3, "compensation": 2}
    assert ds.weights.values.tolist() == ["plain", "noise-aware"]
    assert ds.compensation.values.tolist() == ["none", "gdc"]
    np.testing.assert_array_equal(ds.t_s.values, [1.0, 3600.0, 86400.0])
    assert ds.t_s.attrs["units"] == "s" and ds.accuracy.attrs["units"] == "1"
    assert ds.chip_resource.values.tolist() == resources
    assert ds.chip_serial.values.tolist() == ["EMU-0001", "EMU-0001"]
    assert not np.isnan(ds.accuracy.values).any()
    assert ds.attrs["fp_accuracy"] == pytest.approx(fp)
    points = result.points()
    assert len(points) == 2 * 3 * 2 and all(p["chips"] == 2 for p in points)
    for point in points:
        over_chips = ds.accuracy.sel(
            weights=point["weights"], compensation=point["compensation"]
        ).isel(time=ds.t_s.values.tolist().index(point["t_s"]))
        assert float(over_chips.mean()) == pytest.approx(point["accuracy_mean"], rel=1e-12)
        assert float(over_chips.std()) == pytest.approx(point["accuracy_std"], abs=1e-12)
    assert np.ptp(ds.accuracy.values) > 0  # chips, weights and times differ: a real table
