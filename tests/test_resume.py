"""A drift measurement cut off by a dropped connection resumes after reconnecting, from what
the run store recorded, and fits the same ν as a run that was never interrupted."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.drivers import ChipDisconnectedError, PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.records.resume import progress_from_run, unfinished_from_run
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock

SEED = 21
TIMES = log_times(1.0, 365 * 86400.0, 16)


def plan():
    addresses = np.arange(0, 4096, 4)
    targets = np.tile([3.0, 9.0, 15.0, 21.0], addresses.size // 4)
    return addresses, targets


def test_interrupted_drift_resumes_with_the_same_fit(tmp_path):
    addresses, targets = plan()
    reference_chip = PcmChip(
        InProcessTransport("emulator", WireInterface(make_chip("small", SEED)))
    )
    reference = measure_drift(
        reference_chip, ChipClock(reference_chip), 0, addresses, targets, TIMES
    )
    assert reference.status == "completed"

    wire = WireInterface(make_chip("small", SEED))
    server = TcpServer(wire).start()
    port = server.port
    store = RunStore(tmp_path / "runs.sqlite")
    first = store.start_run("drift", resource=server.resource)

    def pull_the_cable(event):
        if event.procedure == "drift" and event.kind == "step" and event.done == 6:
            server.stop()

    chip = PcmChip.open(server.resource, timeout_s=2)
    with pytest.raises(ChipDisconnectedError):
        measure_drift(
            chip,
            ChipClock(chip),
            0,
            addresses,
            targets,
            TIMES,
            listeners=[Recorder(store, first, "drift"), pull_the_cable],
        )
    assert store.run(first).status == "failed"

    server = TcpServer(wire, port=port).start()  # the cable is back
    try:
        chip.reconnect()
        progress = progress_from_run(store, first)
        assert len(progress.reads) == 6
        second = store.start_run(
            "drift", resource=server.resource, parameters={"resumed_from": first}
        )
        resumed = measure_drift(
            chip,
            ChipClock(chip),
            None,
            None,
            None,
            resume=progress,
            listeners=[Recorder(store, second, "drift")],
        )
    finally:
        chip.close()
        server.stop()
    assert resumed.status == "completed" and store.run(second).status == "completed"
    assert resumed.conductance_uS.shape == reference.conductance_uS.shape
    np.testing.assert_array_equal(resumed.address, reference.address)
    np.testing.assert_array_equal(resumed.conductance_uS, reference.conductance_uS)
    np.testing.assert_array_equal(resumed.nu, reference.nu)
    assert resumed.summary()["levels"] == reference.summary()["levels"]
    store.close()


def test_reconnect_refuses_a_different_chip():
    server = TcpServer(WireInterface(make_chip("small", 1))).start()
    port = server.port
    chip = PcmChip.open(server.resource, timeout_s=2)
    server.stop()
    other = TcpServer(WireInterface(make_chip("small", 1, serial="EMU-OTHER")), port=port).start()
    try:
        with pytest.raises(Exception, match="different chip"):
            chip.reconnect()
    finally:
        chip.close()
        other.stop()


def test_reconnect_in_process_keeps_the_same_chip():
    chip = PcmChip.open("emulator?profile=tiny&seed=4")
    chip.advance(100.0)
    chip.reconnect()
    assert chip.time() == 100.0


def test_cli_drift_resume(tmp_path, capsys):
    """`pcm-hil drift --resume RUN` against the served chip a cut-off run was measuring."""
    import json

    from pcm_hil.cli.main import main

    addresses, targets = plan()
    wire = WireInterface(make_chip("small", SEED))
    server = TcpServer(wire).start()
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.start_run("drift", resource=server.resource)

    def cut(event):
        if event.procedure == "drift" and event.kind == "step" and event.done == 4:
            raise KeyboardInterrupt  # Ctrl-C: the run is cancelled with its reads kept

    chip = PcmChip.open(server.resource, timeout_s=2)
    cancelled = measure_drift(
        chip,
        ChipClock(chip),
        0,
        addresses,
        targets,
        TIMES,
        listeners=[Recorder(store, run, "drift"), cut],
    )
    chip.close()
    store.close()
    assert cancelled.status == "cancelled" and cancelled.conductance_uS.shape[0] == 4
    try:
        code = main(
            [
                "drift",
                "--resource",
                server.resource,
                "--resume",
                str(run),
                "--json",
                "--runs",
                str(tmp_path / "runs.sqlite"),
            ]
        )
    finally:
        server.stop()
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resumed_from"] == run and result["read_times"] == len(TIMES)
    assert all(0.04 < level["nu_mean"] < 0.1 for level in result["levels"])


def test_program_and_verify_resumes_where_it_was_cut_off(tmp_path, capsys):
    import json

    from pcm_hil.cli.main import main

    runs = str(tmp_path / "runs.sqlite")
    wire = WireInterface(make_chip("small", 5))
    server = TcpServer(wire).start()
    store = RunStore(runs)
    run = store.start_run("program", resource=server.resource)

    def cut(event):
        if event.procedure == "program" and event.kind == "step" and event.done == 3:
            raise KeyboardInterrupt

    from pcm_hil.procedures.program import level_targets, program_and_verify

    n = 4096
    targets = level_targets(8, 25.0)[np.arange(n) % 8]
    chip = PcmChip.open(server.resource, timeout_s=2)
    cut_off = program_and_verify(
        chip, 0, np.arange(n), targets, listeners=[Recorder(store, run, "program"), cut]
    )
    chip.close()
    assert cut_off.status == "cancelled"
    before = wire.chip.devices.g_prog[0, :n].copy()
    _tiles, addresses, _targets, finished = unfinished_from_run(store, run)
    assert (
        finished == int((cut_off.converged | cut_off.stuck).sum())
        and finished + addresses.size == n
    )
    store.close()
    try:
        code = main(
            [
                "program",
                "--resource",
                server.resource,
                "--resume",
                str(run),
                "--json",
                "--runs",
                runs,
            ]
        )
    finally:
        server.stop()
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["devices"] == n - finished and result["finished_before"] == finished
    assert result["converged_fraction"] > 0.97
    # the devices finished before the cut were not pulsed again
    after = wire.chip.devices.g_prog[0, :n].copy()
    np.testing.assert_array_equal(after[cut_off.converged], before[cut_off.converged])
    assert not np.array_equal(after[~cut_off.converged], before[~cut_off.converged])
