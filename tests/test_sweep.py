"""Sweeps on Dask distributed (``pcm_hil.sweep``): a real LocalCluster of worker processes,
and a scheduler and two workers started as separate ``dask`` processes on 127.0.0.1. Results
depend only on each point's parameters and seed; a killed worker or a cancelled sweep loses
nothing and records nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.documents.sweep import SweepPoint
from pcm_hil.records.store import RunStore
from pcm_hil.sweep import SweepSpec, SweepSpecError, load_spec, load_sweep, point_seed, run_sweep
from pcm_hil.sweep.run import local_cluster

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
MEASURED = "tests.sweep_points:measured"


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (one thread each) on 127.0.0.1; the workers find
    tests.sweep_points on PYTHONPATH, as a lab's workers find its modules."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), before or ""])
    cluster = local_cluster(2)
    try:
        with distributed.Client(cluster) as connected:
            yield connected
    finally:
        cluster.close()
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def spec(function: str = MEASURED, **fixed) -> SweepSpec:
    return SweepSpec(function, axes={"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 1]}, fixed=fixed, seed=5)


def points(store: RunStore, run_id: int) -> list[int]:
    return [e.document.index for e in store.events(run_id) if isinstance(e.document, SweepPoint)]


def test_a_sweep_records_every_point_once_with_what_its_seed_gives(client, tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        result = run_sweep(spec(), client=client, store=store)
        assert result.status == "completed" and sorted(points(store, result.run_id)) == list(
            range(8)
        )
        data = load_sweep(result.run_id, store)
        assert store.run(result.run_id).status == "completed"
    assert data["mean"].dims == ("x", "y") and data["trace"].dims == ("x", "y", "sample")
    np.testing.assert_array_equal(data.x.values, [0.0, 1.0, 2.0, 3.0])
    for _index, point in spec().points():
        parameters = spec().parameters(point)
        draws = np.random.default_rng(point_seed(5, parameters)).normal(point["x"], 1.0, 64)
        at = data.sel(point)
        assert float(at["mean"]) == pytest.approx(draws.mean(), rel=1e-12)
        np.testing.assert_allclose(at["trace"].values, draws[:4])
    # the workers did the work: both of them, each point where it ran recorded
    with RunStore(tmp_path / "runs.sqlite", readonly=True) as store:
        workers = {
            e.document.worker
            for e in store.events(result.run_id)
            if isinstance(e.document, SweepPoint)
        }
    assert workers <= set(client.scheduler_info()["workers"]) and len(workers) == 2


def test_results_do_not_depend_on_the_number_of_workers(client, tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        two = load_sweep(run_sweep(spec(), client=client, store=store).run_id, store)
        one = load_sweep(run_sweep(spec(), workers=1, store=store).run_id, store)
    for name in ("mean", "first", "trace"):
        np.testing.assert_array_equal(one[name].values, two[name].values)


def test_a_cancelled_sweep_resumes_to_the_same_results(client, tmp_path):
    """Ctrl-C after three points: the run is cancelled with three points; resumed, the new
    run computes the other five only, and the two read as the uninterrupted sweep."""

    class Interrupt:
        def __init__(self) -> None:
            self.seen = 0

        def __call__(self, event) -> None:
            if isinstance(event.document, SweepPoint):
                self.seen += 1
                if self.seen == 3:
                    raise KeyboardInterrupt

    with RunStore(tmp_path / "runs.sqlite") as store:
        whole = load_sweep(run_sweep(spec(), client=client, store=store).run_id, store)
        cut = run_sweep(spec(), client=client, store=store, listeners=[Interrupt()])
        assert cut.status == "cancelled" and store.run(cut.run_id).status == "cancelled"
        assert len(points(store, cut.run_id)) == 3
        resumed = run_sweep(spec(), client=client, store=store, resume=cut.run_id)
        assert sorted(points(store, cut.run_id) + points(store, resumed.run_id)) == list(range(8))
        joined = load_sweep(resumed.run_id, store)
        with pytest.raises(ValueError, match="swept another spec"):
            run_sweep(spec(extra=1), client=client, store=store, resume=cut.run_id)
    assert bool(joined.computed.all()) and joined.attrs["resumed_from_run"] == cut.run_id
    for name in ("mean", "first", "trace"):
        np.testing.assert_array_equal(joined[name].values, whole[name].values)


def test_a_worker_killed_mid_sweep_loses_nothing(client, tmp_path):
    """The first attempt at one point kills its worker process: Dask runs the point again on
    a worker that lives, every point is recorded once, with the same results as a sweep in
    which no worker died."""
    killing = spec("tests.sweep_points:dies_once", marker=str(tmp_path), kill_at=2.0)
    with RunStore(tmp_path / "runs.sqlite") as store:
        result = run_sweep(killing, client=client, store=store)
        assert result.status == "completed"
        assert sorted(points(store, result.run_id)) == list(range(8))
        died = load_sweep(result.run_id, store)
    assert (tmp_path / "killed").exists()  # a worker did die
    for _index, point in killing.points():
        parameters = killing.parameters(point)
        draws = np.random.default_rng(point_seed(5, parameters)).normal(point["x"], 1.0, 64)
        assert float(died.sel(point)["mean"]) == pytest.approx(draws.mean(), rel=1e-12)


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, as on a lab's
    machines: the first holds a chip named ``bench1`` (an emulator, by its resource string in
    $PCM_HIL_CHIPS, declared as the worker resource ``chip-bench1``), the second none.
    Yields (scheduler address, the chip worker's address)."""
    folder = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            env=env, **quiet,
        )
    ]  # fmt: skip
    try:
        for _ in range(600):  # the scheduler writes its address when it listens
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = [
            dask,
            "worker",
            address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ]
        holding = {**env, "PCM_HIL_CHIPS": "bench1=emulator?profile=tiny&seed=11"}
        started.append(
            subprocess.Popen([*worker, "--resources", "chip-bench1=1"], env=holding, **quiet)
        )
        started.append(subprocess.Popen(worker, env=env, **quiet))
        with distributed.Client(address, timeout="30s") as connected:
            connected.wait_for_workers(2, timeout=60)
            info = connected.scheduler_info()["workers"]
            chip_worker = next(a for a, w in info.items() if w.get("resources"))
        yield address, chip_worker
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            process.wait(timeout=30)


def test_two_sweeps_on_one_cluster_keep_their_own_points(client, tmp_path):
    """Two sweeps of the same grid, differing only in a fixed parameter, on one cluster and
    each in a store of its own (both run 1): each records its own results."""
    found = []
    for shift in (0.0, 10.0):
        with RunStore(tmp_path / f"runs-{shift}.sqlite") as store:
            result = run_sweep(spec(shift=shift), client=client, store=store)
            assert result.run_id == 1
            found.append(load_sweep(result.run_id, store))
    for _index, point in spec().points():
        assert float(found[0].sel(point)["mean"]) != float(found[1].sel(point)["mean"])


def test_a_failing_point_fails_the_sweep_in_a_line_and_leaves_nothing_running(client, tmp_path):
    failing = spec("tests.sweep_points:fails_at_two")
    with RunStore(tmp_path / "runs.sqlite") as store:
        with pytest.raises(RuntimeError, match=r"point [0-9]+ .*'x': 2.0.*ZeroDivisionError"):
            run_sweep(failing, client=client, store=store)
        run = store.runs()[0]
        assert run.status == "failed" and "ZeroDivisionError" in (run.error or "")
        assert set(points(store, run.id)) <= {0, 1, 2, 3, 6, 7}  # never a point at x = 2
    for _ in range(100):  # the sweep's other tasks cancelled on the cluster
        if not any(client.processing().values()):
            break
        time.sleep(0.05)
    assert not any(client.processing().values())


def test_a_resume_needs_the_spec_exactly_as_it_was(client, tmp_path):
    """Axis order and value types count: reordered axes index other cells, 1.0 seeds other
    than 1 — both refused."""
    with RunStore(tmp_path / "runs.sqlite") as store:
        first = run_sweep(spec(), client=client, store=store)
        reordered = SweepSpec(MEASURED, axes={"y": [0, 1], "x": [0.0, 1.0, 2.0, 3.0]}, seed=5)
        retyped = SweepSpec(MEASURED, axes={"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0]}, seed=5)
        for other in (reordered, retyped):
            with pytest.raises(ValueError, match="swept another spec"):
                run_sweep(other, client=client, store=store, resume=first.run_id)
        with pytest.raises(KeyError, match="no run 99"):
            run_sweep(spec(), client=client, store=store, resume=99)


def test_a_chip_no_worker_holds_is_refused_before_anything_runs(client, tmp_path):
    pinned = SweepSpec(MEASURED, axes={"x": [1.0]}, fixed={"chip": "bench9"}, seed=1)
    with RunStore(tmp_path / "runs.sqlite") as store:
        with pytest.raises(ValueError, match=r"no worker holds chip\(s\) bench9"):
            run_sweep(pinned, client=client, store=store)
    with pytest.raises(SweepSpecError, match="a chip's name is letters"):
        SweepSpec(MEASURED, axes={"chip": ["a b", "c"]})


def test_a_sweep_on_a_scheduler_and_workers_started_as_processes(processes, tmp_path):
    """The sweep connects by address and gets the LocalCluster's results."""
    address, _chip_worker = processes
    with RunStore(tmp_path / "runs.sqlite") as store:
        remote = load_sweep(run_sweep(spec(), scheduler=address, store=store).run_id, store)
        local = load_sweep(run_sweep(spec(), workers=1, store=store).run_id, store)
    np.testing.assert_array_equal(remote["mean"].values, local["mean"].values)


def test_points_on_a_chip_run_only_where_the_chip_is(processes, tmp_path):
    """Points naming chip ``bench1`` run on the worker holding it, never the other; they
    program that chip (the emulator its resource string names), the same as that chip opened
    here."""
    from pcm_hil.sweep.functions import program_point

    address, chip_worker = processes
    pinned = SweepSpec(
        "program",
        axes={"tolerance_rel": [0.1, 0.22, 0.3], "levels": [2, 4]},
        fixed={"chip": "bench1", "devices": 64},
        seed=1,
    )
    with RunStore(tmp_path / "runs.sqlite") as store:
        result = run_sweep(pinned, scheduler=address, store=store)
        workers = {
            e.document.worker
            for e in store.events(result.run_id)
            if isinstance(e.document, SweepPoint)
        }
    assert result.status == "completed" and workers == {chip_worker}
    # each point opened the chip the worker holds by its resource string (here a fresh
    # emulator each time): the same function on the same resource here gives the same
    os.environ["PCM_HIL_CHIPS"] = "bench1=emulator?profile=tiny&seed=11"
    try:
        for index, point in pinned.points():
            parameters = pinned.parameters(point)
            here = program_point(parameters, point_seed(1, parameters))
            found = result.results[index]
            assert found["level_target_uS"] == pytest.approx(here["level_target_uS"])
            assert found["error_std_uS"] == pytest.approx(here["error_std_uS"], rel=1e-12)
    finally:
        del os.environ["PCM_HIL_CHIPS"]
    with pytest.raises(ValueError, match="this worker holds no chip 'bench1'"):
        program_point(pinned.parameters(point), 0)


def test_the_cli_runs_a_spec_and_refuses_a_bad_one_in_a_line(client, tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'function = "program"\nseed = 3\n[axes]\nchip_seed = [0, 1]\n'
        '[fixed]\ndevices = 64\nprofile = "tiny"\nlevels = 4\n',
        encoding="utf-8",
    )
    assert main(["sweep", str(path), "--workers", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    found = json.loads(out)
    rows = {(r["result"], r["value"]) for r in found["summary"] if r["axis"] == "chip_seed"}
    assert ("converged_fraction", 0) in rows and ("converged_fraction", 1) in rows
    # with the dashboard: its last frame (stderr is no terminal) shows the sweep's points
    assert main(["sweep", str(path), "--workers", "1", "--dashboard"]) == 0
    frame = capsys.readouterr().err
    assert "program over chip_seed (2)" in frame and "2 computed" in frame
    assert "2/2" in frame
    path.write_text('function = "program"\n[axes]\nchip_seed = []\n', encoding="utf-8")
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "axis 'chip_seed' needs a list of one value or more" in err


@pytest.mark.parametrize(
    "text, message",
    [
        ('function = ""\n[axes]\nx = [1]\n', "needs a function"),
        ('function = "f:g"\n', "at least one axis"),
        ('function = "f:g"\n[axes]\nx = [1, 1]\n', "repeats a value"),
        ('function = "f:g"\n[axes]\nx = [1]\n[fixed]\nx = 2\n', "both an axis and fixed"),
        ('function = "f:g"\nseed = -1\n[axes]\nx = [1]\n', "seed = -1"),
        ('function = "f:g"\n[axes]\nx = [[1]]\n', "a parameter is a string, number or boolean"),
        ('function = "f:g"\nwhat = 1\n[axes]\nx = [1]\n', "unknown key(s) what"),
    ],
)
def test_a_bad_spec_says_what(text, message, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SweepSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(path)


def test_a_points_seed_depends_on_its_parameters_only():
    assert point_seed(1, {"a": 1, "b": "x"}) == point_seed(1, {"b": "x", "a": 1})
    assert point_seed(1, {"a": 1}) != point_seed(2, {"a": 1}) != point_seed(1, {"a": 2})
    assert 0 <= point_seed(9, {"a": 1.5}) < 2**63


def test_ctrl_c_stops_the_sweep_quietly_and_it_resumes(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group: the CLI and its cluster's processes)
    once points are recorded: the sweep ends cancelled, exit code 130, its table printed with
    what it has — and not one traceback or warning from a worker; resumed, it completes."""
    import signal

    path = tmp_path / "sweep.toml"
    seeds = ", ".join(str(s) for s in range(300))
    path.write_text(
        f'function = "program"\nseed = 3\n[axes]\nchip_seed = [{seeds}]\n'
        '[fixed]\ndevices = 256\nprofile = "tiny"\nlevels = 4\n',
        encoding="utf-8",
    )
    runs = tmp_path / "runs.sqlite"
    command = [sys.executable, "-m", "pcm_hil.cli", "sweep", str(path), "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--runs", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 120
        recorded = 0
        while recorded < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the other process's progress: polled, nothing to wait on here
            if runs.exists():
                with RunStore(runs, readonly=True) as store:
                    latest = store.latest()
                    recorded = len(points(store, latest.id)) if latest else 0
        assert recorded >= 3 and process.poll() is None
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert err == "", err  # no traceback, no worker's warning
    assert "(cancelled)" in out
    with RunStore(runs, readonly=True) as store:
        run = store.latest()
        assert run.status == "cancelled"
        done = points(store, run.id)
        assert len(done) == len(set(done)) and 3 <= len(done) < 300
    resumed = [str(path), "--workers", "2", "--runs", str(runs), "--resume", str(run.id)]
    assert main(["sweep", *resumed, "--json"]) == 0
    with RunStore(runs, readonly=True) as store:
        again = store.latest()
        assert again.id != run.id and again.status == "completed"
        assert sorted(points(store, again.id) + done) == list(range(300))  # none twice
        assert bool(load_sweep(again.id, store)["computed"].all())
