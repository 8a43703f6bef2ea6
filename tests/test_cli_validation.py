"""Every CLI option checked before a chip is opened or a run is recorded: nonsense ends in
one line (``pcm-hil: error: …``, or argparse's usage error), a non-zero exit, no traceback,
nothing served, nothing pulsed and no run in the store. ``--resume`` continues a run only on
the chip, the resource kind and the clock it recorded; a drift measurement only on devices
that hold what it last read, with a read time still ahead of the chip's clock."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pcm_hil.cli.commands import tolerance_of
from pcm_hil.cli.devices import check_levels
from pcm_hil.cli.main import main
from pcm_hil.cli.parser import build_parser
from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import PROFILES, EmulatorOptions, WireInterface, make_chip
from pcm_hil.emulator.chip import memory_estimate
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import device_tolerance
from pcm_hil.protocols.transport import ResourceError
from pcm_hil.records.resume import HELD_TOLERANCE_US, drift_from_run
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock

TINY = ("--resource", "emulator?profile=tiny")
CURVE = ("characterize", "programming-curve", *TINY)

#: (command line, what the one error line says); each names the option or resource at fault.
REFUSED = [
    # ports, in resource strings and to serve on
    (["info", "--resource", "TCPIP0::127.0.0.1::abc::SOCKET"], "1…65535, not 'abc'"),
    (["info", "--resource", "socket://127.0.0.1:abc"], "1…65535, not 'abc'"),
    (["emulator", "serve", "--port", "70000"], "--port: must be 0…65535, not 70000"),
    (["emulator", "serve", "--port", "-1"], "--port: must be 0…65535, not -1"),
    (["emulator", "bench", "--smu-port", "70000"], "--smu-port: must be 0…65535"),
    (["emulator", "bench", "--pulse-port", "abc"], "--pulse-port: not an integer"),
    (["emulator", "serve", "--allow", "10.0.0.0/33"], "--allow: not a network"),
    (["emulator", "serve", "--partial-timeout", "0"], "--partial-timeout: must be a finite"),
    # geometries too large for memory, refused before anything is allocated
    (["info", "--resource", "emulator?tiles=100000"], "100000×256×256 devices needs about"),
    (["program", "--resource", "emulator?rows=100000&columns=100000"], "4×100000×100000"),
    (["emulator", "serve", "--tiles", "100000"], "100000×256×256 devices needs about"),
    (["emulator", "bench", "--devices", "10000000000"], "1×1×10000000000 devices"),
    (["info", "--resource", "emulator?real_time=maybe"], "real_time takes 1/true/yes"),
    (["info", "--resource", "emulator?seed=-1"], "emulator seed must be an integer ≥ 0, not -1"),
    # program
    (["program", "--tolerance", "0"], "--tolerance: must be a finite number above 0, not 0"),
    (["program", "--tolerance", "-1"], "--tolerance: must be a finite number above 0"),
    (["program", "--tolerance", "nan"], "--tolerance: must be a finite number above 0"),
    (["program", *TINY, "--levels", "1000"], "--levels 1000 over 0…25 µS are 0.025 µS apart"),
    (["program", *TINY, "--levels", "100000"], "0.00025 µS apart, closer than their tolerance"),
    (["program", *TINY, "--levels", "32"], "(--tolerance, --tolerance-rel): at most"),
    (
        ["program", *TINY, "--levels", "51", "--tolerance", "0.5", "--tolerance-rel", "0"],
        "at most 50",
    ),
    (["program", "--tolerance-rel", "-0.1"], "--tolerance-rel: must be a finite number ≥ 0"),
    (["program", "--settle", "-1"], "--settle: must be a finite number ≥ 0, not -1"),
    (["drift", "--settle", "inf"], "--settle: must be a finite number ≥ 0"),
    (["program", *TINY, "--devices", "10000000"], "--devices 10000000: a tile of this chip"),
    (["program", *TINY, "--tiles", "9"], "--tiles 9: tile(s) [9] outside 0…1"),
    (["program", "--max-iterations", "0"], "--max-iterations: must be 1…10000, not 0"),
    (["program", "--timeout", "0"], "--timeout: must be a finite number above 0"),
    (["program", "--timeout", "nan"], "--timeout: must be a finite number above 0"),
    (["program", "--resume", "7"], "no run 7"),
    (["program", *TINY, "--tiles", "0,0"], "--tiles 0,0: tile(s) [0] given more than once"),
    (["program", "--tiles", "1,0,1"], "--tiles 1,0,1: tile(s) [1] given more than once"),
    (["program", "--tiles", "0,x"], "--tiles takes 'all' or comma-separated indices"),
    # drift
    (["drift", "--points", "100000000"], "--points: must be 2…10000"),
    (["drift", "--reads-per-point", "0"], "--reads-per-point: must be 1…10000, not 0"),
    (["drift", *TINY, "--fit-from", "1e9"], "--fit-from 1e+09 s is outside the read window"),
    (["drift", *TINY, "--fit-from", "0.5"], "--fit-from 0.5 s is outside the read window"),
    (["drift", *TINY, "--fit-from", "3e7"], "leaves 1 of the 25 read times to fit ν"),
    (["drift", *TINY, "--start", "100", "--end", "10"], "--start 100 s is not before --end"),
    (["drift", *TINY, "--tiles", "0,1,0"], "--tiles 0,1,0: tile(s) [0] given more than once"),
    # a wait from one read time to the next is one CLOCk:ADVance, at most 1e10 s
    (["drift", "--end", "2e10"], "--end 2e+10 s is more than the chip's clock advances in one"),
    (["drift", "--end", "1.0001e10"], "step, 1e+10 s (CLOCk:ADVance's limit, about 317 years)"),
    # characterize
    (["characterize", "accumulation", "--pulses", "0"], "--pulses: must be 1…10000, not 0"),
    ([*CURVE, "--current-min", "500", "--current-max", "100"], "--current-min 500 µA is not below"),
    ([*CURVE, "--current-max", "5000"], "--current-max 5000 µA is above the chip's pulse limit"),
    (["characterize", "accumulation", *TINY, "--width", "5"], "--width 5 ns is outside"),
    (["characterize", "read-noise", *TINY, "--reads", "1"], "--reads: must be 2…10000"),
    (["characterize", "read-noise", *TINY, "--tile", "5"], "--tile 5 outside 0…1"),
    # inference, training, runs
    (["infer", "--chips", "0"], "--chips: must be at least 1, not 0"),
    (["infer", "--times", "-1"], "--times: must be a finite number above 0, not -1"),
    (["infer", "--times", "10", "5"], "--times must increase: 5 s comes after 10 s"),
    (["infer", "--times", "1", "2e10"], "--times 2e+10 s is more than the chip's clock advances"),
    (["infer", "--resource", "emulator?real_time=maybe"], "real_time takes 1/true/yes"),
    (["train", "--hidden", "0"], "--hidden: must be at least 1, not 0"),
    (["train", *TINY, "--hidden", "100000"], "--hidden 100000: the network needs more"),
    (["train", "--epochs", "-1"], "--epochs: must be at least 1, not -1"),
    (["runs", "list", "--limit", "-5"], "--limit: must be at least 1, not -5"),
    # tour: records nothing, but refuses before it pulses
    (["tour", "--devices-per-level", "1000000000"], "--devices-per-level 1000000000: the tour"),
    (["tour", "--devices-per-level", "2000000000"], "--devices-per-level: must be 1…1073741824"),
    (["tour", "--devices-per-level", "0"], "--devices-per-level: must be 1…1073741824, not 0"),
    (
        ["tour", "--resource", "emulator?profile=small", "--devices-per-level", "5000"],
        "on one tile, which has 4096 devices (64×64): at most 1024 per level",
    ),
    (["tour", *TINY, "--tile", "2"], "--tile 2 outside 0…1"),
    (["tour", "--resource", "emulator?tiles=100000"], "100000×256×256 devices needs about"),
]

#: Commands that take --runs (the others record nothing, or only with the default store).
RECORDING = ("program", "drift", "characterize", "infer", "train", "runs")


@pytest.fixture
def nothing_served(monkeypatch):
    """A server started by mistake fails the test instead of serving until killed."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a server was started")

    from pcm_hil.emulator.bench import EmulatedBench
    from pcm_hil.emulator.servers.pty import PtyServer

    monkeypatch.setattr(TcpServer, "start", refuse)
    monkeypatch.setattr(PtyServer, "start", refuse)
    monkeypatch.setattr(EmulatedBench, "serve", refuse)


@pytest.fixture
def nothing_pulsed(monkeypatch):
    """A pulse sent by mistake fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a device was pulsed")

    monkeypatch.setattr(PcmChip, "pulse", refuse)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``pcm-hil argv``, argparse's exit included."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def recorded_runs(*paths: Path) -> int:
    """Runs recorded in the stores at ``paths`` (a store not made counts none)."""
    count = 0
    for path in paths:
        if path.exists():
            with RunStore(path) as store:
                count += len(store.runs())
    return count


def assert_one_error_line(code: int, err: str, fragment: str) -> None:
    assert code not in (0, None) and "Traceback" not in err, err
    lines = err.splitlines()
    if code == 2 and lines and lines[0].startswith("usage:"):  # argparse: usage, one error
        assert sum(": error: " in line for line in lines) == 1 and ": error: " in lines[-1]
        assert fragment in lines[-1], err
    else:
        assert len(lines) == 1 and lines[0].startswith("pcm-hil: error: "), err
        assert fragment in lines[0], err


@pytest.mark.parametrize(
    "argv, fragment", REFUSED, ids=[" ".join(argv)[:60] for argv, _ in REFUSED]
)
def test_refused_in_one_line_with_no_run_recorded(
    argv, fragment, tmp_path, capsys, private_run_store, nothing_served, nothing_pulsed
):
    runs = tmp_path / "runs.sqlite"
    if argv[0] in RECORDING:
        argv = [*argv, "--runs", str(runs)]
    if argv[0] in ("program", "drift", "characterize", "infer", "train"):
        argv = [*argv, "--quiet"]
    code, err = run_cli(argv, capsys)
    assert_one_error_line(code, err, fragment)
    assert recorded_runs(runs, private_run_store) == 0


def test_32_levels_at_an_absolute_half_microsiemens_tolerance_run(tmp_path, capsys):
    """The seeds' multi-level figure: 32 levels over 0…25 µS are 0.78 µS apart, > 0.5 µS
    (refused at the default tolerance, whose widest, at the top levels, is wider: above)."""
    runs = tmp_path / "runs.sqlite"
    argv = ["program", "--resource", "emulator?profile=tiny&seed=1", "--devices", "64"]
    argv += ["--tolerance", "0.5", "--tolerance-rel", "0"]
    code = main([*argv, "--levels", "32", "--json", "--runs", str(runs)])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["devices"] == 64 and len(result["levels"]) == 32
    with RunStore(runs) as store:
        (run,) = store.runs()
    assert run.status == "completed" and run.parameters["clock_mode"] == "VIRT"


def absolute(tolerance_uS: float):
    """A tolerance of ``tolerance_uS`` for every target (``--tolerance-rel 0``)."""
    return lambda targets: device_tolerance(targets, tolerance_uS, None)


def test_levels_may_be_exactly_one_tolerance_apart():
    check_levels(50, absolute(0.5), 25.0)
    with pytest.raises(ValueError, match="at most 50 levels"):
        check_levels(51, absolute(0.5), 25.0)
    with pytest.raises(ValueError, match="a tolerance of 30 µS is wider than the chip's range"):
        check_levels(1, absolute(30.0), 25.0)


def test_levels_are_spaced_by_their_widest_relative_tolerance():
    """2% of the target, 0.1…1 µS: the top level's tolerance counts. 50 levels, 0.5 µS apart,
    the top at 24.75 µS (0.495 µS); 51 levels are 0.490 µS apart, the top at 24.75 µS too."""
    relative = lambda targets: device_tolerance(targets, 1.0, 0.02, 0.1)  # noqa: E731
    check_levels(50, relative, 25.0)
    with pytest.raises(ValueError, match=r"up to 0\.495 µS .*: at most 50 levels"):
        check_levels(51, relative, 25.0)
    # the CLI's: the defaults, widest at the top levels, refuse 32 levels (0.78 µS apart)
    with pytest.raises(ValueError, match=r"--levels 32 over 0…25 µS are 0\.781 µS apart"):
        check_levels(32, tolerance_of(build_parser().parse_args(["program"])), 25.0)


def test_devices_left_to_their_default_fit_a_small_tile(tmp_path, capsys):
    """drift's 4096 devices per tile unless told: all 256 of a tiny tile."""
    runs = tmp_path / "runs.sqlite"
    argv = ["drift", "--resource", "emulator?profile=tiny", "--levels", "4", "--points", "6"]
    assert main([*argv, "--json", "--runs", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out)["devices"] == 256
    with RunStore(runs) as store:
        assert store.runs()[0].parameters["devices"] == 256


def test_emulator_geometry_refused_before_allocating():
    estimate = memory_estimate(PROFILES["default"])
    assert 10e6 < estimate < 50e6  # 4×256×256 devices: about 24 MB
    with pytest.raises(ValueError, match=r"needs about 445\.6 GiB"):
        make_chip("default", tiles=100_000)  # would be a MemoryError if it allocated first
    with pytest.raises(ResourceError, match="4×100000×100000"):
        EmulatorOptions.parse("emulator?rows=100000&columns=100000")


# --- --resume on another chip -------------------------------------------------------------------


def record_program(resource: str, runs: Path, capsys) -> int:
    """Run a short program-and-verify through the CLI; its run id."""
    argv = ["program", "--resource", resource, "--devices", "32", "--levels", "4"]
    assert main([*argv, "--json", "--runs", str(runs)]) == 0
    return json.loads(capsys.readouterr().out)["run_id"]


def assert_resume_refused(argv: list[str], runs: Path, fragment: str, capsys) -> None:
    before = recorded_runs(runs)
    code, err = run_cli([*argv, "--json", "--runs", str(runs)], capsys)
    assert_one_error_line(code, err, fragment)
    assert recorded_runs(runs) == before  # no new run, not even a failed one


@pytest.mark.parametrize(
    "resource, fragment",
    [
        ("emulator?profile=tiny&seed=2", "ran on the embedded emulator, whose chip went"),
        ("emulator?profile=tiny&seed=1", "ran on the embedded emulator, whose chip went"),
        ("emulator?profile=small&seed=1", "tiles 2 → 4; rows 16 → 64; columns 16 → 64"),
        ("emulator?profile=tiny&seed=1&real_time=true", "clock VIRT → REAL"),
    ],
)
def test_resume_refused_on_the_embedded_emulator(resource, fragment, tmp_path, capsys):
    runs = tmp_path / "runs.sqlite"
    run = record_program("emulator?profile=tiny&seed=1", runs, capsys)
    for command in ("program", "drift"):
        argv = [command, "--resource", resource, "--resume", str(run)]
        assert_resume_refused(argv, runs, fragment, capsys)


def test_resume_refused_on_another_served_chip_or_clock(tmp_path, capsys):
    runs = tmp_path / "runs.sqlite"
    with TcpServer(WireInterface(make_chip("tiny", 1))) as server:
        run = record_program(server.resource, runs, capsys)
        argv = ["program", "--resource", server.resource, "--resume", str(run)]
        assert_resume_refused(argv, runs, "left no device to program: all 32 finished", capsys)
    for chip, fragment in [
        (make_chip("tiny", 1, serial="EMU-OTHER"), "serial EMU-0001 → EMU-OTHER"),
        (make_chip("tiny", 1, real_time=True), "clock VIRT → REAL"),
    ]:
        with TcpServer(WireInterface(chip)) as other:
            argv = ["program", "--resource", other.resource, "--resume", str(run)]
            assert_resume_refused(argv, runs, fragment, capsys)


def test_resume_refused_through_another_kind_of_resource(tmp_path, capsys, tcp_server, pty_server):
    """The same chip served on a pty: a run recorded over TCP is not continued over serial."""
    runs = tmp_path / "runs.sqlite"
    run = record_program(tcp_server.resource, runs, capsys)
    argv = ["program", "--resource", pty_server.resource, "--resume", str(run)]
    assert_resume_refused(argv, runs, "reached through TCP → serial", capsys)


#: The drift plan of the cut-off runs below: 64 devices at 4 levels on tile 0 of a tiny chip,
#: read at 8 log-spaced times from 1 s to 1e6 s, ν fitted from 20 s.
DRIFT_TIMES = log_times(1.0, 1e6, 8)


def record_cut_drift(resource: str, runs: Path, reads: int = 3, **options) -> int:
    """A drift measurement on the served chip at ``resource``, recorded in ``runs`` and cut
    off (Ctrl-C) after ``reads`` read times (0: right after programming); its run id.
    ``options`` go to ``measure_drift``."""
    with RunStore(runs) as store, PcmChip.open(resource, timeout_s=5) as chip:
        run = store.start_run("drift", resource=resource)
        store.describe_chip(run, chip.config)
        recorder = Recorder(store, run, "drift")

        def cut(event):
            if event.procedure == "drift" and event.done == reads and event.kind != "end":
                raise KeyboardInterrupt

        targets = np.tile([3.0, 9.0, 15.0, 21.0], 16)
        try:
            result = measure_drift(
                chip,
                ChipClock(chip),
                0,
                np.arange(64),
                targets,
                DRIFT_TIMES,
                listeners=[recorder, cut],
                **options,
            )
        except KeyboardInterrupt:  # cut at the start document, outside the cancellable reads
            store.finish_run(run, "cancelled", "interrupted")
        else:
            assert result.status == "cancelled" and result.conductance_uS.shape[0] == reads
    return run


def test_drift_resume_refused_on_a_restarted_chip(tmp_path, capsys):
    """The same chip model, serial and clock mode, but its clock started again: the devices
    the run programmed hold nothing of it (the all-NaN fits of issue 11)."""
    runs = tmp_path / "runs.sqlite"
    with TcpServer(WireInterface(make_chip("tiny", 3))) as server:
        run = record_cut_drift(server.resource, runs)
    with TcpServer(WireInterface(make_chip("tiny", 3))) as restarted:
        argv = ["drift", "--resource", restarted.resource, "--resume", str(run)]
        assert_resume_refused(argv, runs, "before run 1 last programmed or read", capsys)


def deviation_in(err: str) -> float:
    """The median |ΔG| a refusal names, µS."""
    return float(re.search(r"median \|ΔG\| = ([0-9.e+-]+) µS", err)[1])


@pytest.mark.parametrize("reads, what", [(3, "last read"), (0, "programmed")])
def test_drift_resume_refused_on_another_chip_with_the_same_identity(reads, what, tmp_path, capsys):
    """Every emulator seed reports serial EMU-0001: identity alone cannot tell them apart.
    Another seed, its clock moved to where the run's chip was, holds other conductances; the
    run would have mixed two chips. Refused after a read of the run's devices — nothing
    pulsed, the other chip's clock unmoved — with what it found (the same chip: about
    0.3 µS, read noise)."""
    runs = tmp_path / "runs.sqlite"
    recorded = make_chip("tiny", 3)
    with TcpServer(WireInterface(recorded)) as server:
        run = record_cut_drift(server.resource, runs, reads)
    other = make_chip("tiny", 4)
    assert other.identity == recorded.identity
    with TcpServer(WireInterface(other)) as served:
        with PcmChip.open(served.resource, timeout_s=5) as client:  # another client
            client.advance(recorded.now())
        programmed = other.devices.g_prog.copy()
        argv = ["drift", "--resource", served.resource, "--resume", str(run)]
        before = recorded_runs(runs)
        code, err = run_cli([*argv, "--json", "--runs", str(runs)], capsys)
        assert_one_error_line(code, err, f"the devices of run {run} do not hold what it {what}")
        # (programmed: the band allows for the widest programming tolerance, --tolerance, and
        # for drift from each device's verify read to the end of programming)
        assert "another chip?" in err and deviation_in(err) > 4 * HELD_TOLERANCE_US
        assert recorded_runs(runs) == before
        assert other.now() == recorded.now()
        np.testing.assert_array_equal(other.devices.g_prog, programmed)


def test_drift_resume_refused_when_the_clock_has_passed_its_reads(tmp_path, capsys):
    """Another client moved the run's chip's clock on by 1e9 s (CLOCk:ADVance 1e9): every
    read time left is past. Resumed anyway, every read left is taken at once, now, and no ν
    can be fitted (all NaN, recorded as completed: issue 11). Refused; the chip untouched."""
    runs = tmp_path / "runs.sqlite"
    chip = make_chip("tiny", 3)
    with TcpServer(WireInterface(chip)) as server:
        # programmed without a settle time: the two reads taken, 1 s and 7 s after programming,
        # lie before the fit window (20 s) for every device
        run = record_cut_drift(server.resource, runs, reads=2, settle_s=0)
        with PcmChip.open(server.resource, timeout_s=5) as client:
            client.advance(1e9)
        now = chip.now()
        argv = ["drift", "--resource", server.resource, "--resume", str(run)]
        fragment = f"the chip's clock (1e+09 s) is past the read times left in run {run}: 6 reads"
        assert_resume_refused(argv, runs, fragment, capsys)
        assert chip.now() == now
        with RunStore(runs, readonly=True) as store:
            record = drift_from_run(store, run)
        with PcmChip.open(server.resource, timeout_s=5) as client:  # what it refuses
            result = measure_drift(
                client, ChipClock(client), None, None, None, resume=record.progress
            )
    assert result.status == "completed" and np.isnan(result.nu).all()


def test_drift_resume_continues_on_the_same_chip_after_its_clock_moved_on(tmp_path, capsys):
    """The run's chip, its clock moved on 1e4 s by another client (a real-time chip resumed
    hours later): its devices drifted lower, within what drift allows, and read times are
    still ahead. Resumed with the run's own fit window and reads per read time: ν fitted at
    every level; the check's read is not in the new run."""
    runs = tmp_path / "runs.sqlite"
    chip = make_chip("tiny", 3)
    with TcpServer(WireInterface(chip)) as server:
        run = record_cut_drift(server.resource, runs, 3, fit_from_s=50.0, reads_per_point=2)
        with PcmChip.open(server.resource, timeout_s=5) as client:
            client.advance(1e4)
        argv = ["drift", "--resource", server.resource, "--resume", str(run)]
        assert main([*argv, "--json", "--runs", str(runs)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "completed" and result["read_times"] == DRIFT_TIMES.size
    assert result["fit_from_s"] == 50.0
    assert all(0.02 < level["nu_mean"] < 0.15 for level in result["levels"])
    with RunStore(runs, readonly=True) as store:
        documents = [event.document for event in store.events(result["run_id"])]
    (start,) = [document for document in documents if isinstance(document, DriftStart)]
    assert start.reads_per_point == 2 and start.resumed == 3
    reads = [document for document in documents if isinstance(document, DriftRead)]
    assert len(reads) == DRIFT_TIMES.size - 3  # the reads it had left, and no other
