"""Recording a session on the chip and replaying it offline (``PcmChip.open(…, record=…)``,
the ``replay:`` resource, ``--record``, the ``pcm_replay`` fixture): identical results bit
for bit, a departing script stopped where it departs with what was expected and what came, a
killed recorder's cassette replayed up to its last whole exchange."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.drivers import PcmChip
from pcm_hil.drivers.transports import ChipTimeoutError, ResourceError
from pcm_hil.drivers.transports.recording import RecordingTransport
from pcm_hil.drivers.transports.replay import open_replay
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import program_and_verify
from pcm_hil.protocols.cassette import MAGIC, OVERHEAD, read_cassette
from pcm_hil.protocols.transport import ReplayMismatchError
from pcm_hil.targets.clock import ChipClock

pytest_plugins = ["pytester"]

RESOURCE = "emulator?profile=tiny&seed=5"
ADDRESSES = np.arange(48)
TARGETS = np.linspace(2.0, 20.0, 48)


def session(chip: PcmChip, targets=TARGETS):
    """A lab script: program-and-verify, then a drift measurement of the same devices."""
    programmed = program_and_verify(chip, 0, ADDRESSES, targets)
    drift = measure_drift(
        chip, ChipClock(chip), 1, ADDRESSES, targets, log_times(1.0, 1000.0, 6), settle_s=20.0
    )
    return programmed, drift


def same(a, b, fields) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in fields)


PROGRAM = ("target_uS", "converged", "stuck", "iterations", "final_uS", "repeat_uS")
DRIFT = ("nu", "nu_error", "g_t0_uS", "good")


def test_a_program_and_a_drift_replay_to_identical_results(tmp_path):
    cassette = tmp_path / "session.cassette"
    with PcmChip.open(RESOURCE) as chip:
        plain = session(chip)
    with PcmChip.open(RESOURCE, record=cassette) as chip:
        recorded = session(chip)
    # recording changes nothing of what the chip does
    assert same(plain[0], recorded[0], PROGRAM) and same(plain[1], recorded[1], DRIFT)
    with PcmChip.open(f"replay:{cassette}") as chip:
        replayed = session(chip)
        assert chip.transport.remaining == 0  # the whole session, nothing left over
    assert same(recorded[0], replayed[0], PROGRAM) and same(recorded[1], replayed[1], DRIFT)
    tape = read_cassette(cassette)
    assert tape.complete and tape.meta["resource"] == RESOURCE
    # compact: the wire's bytes as they were, plus a fixed overhead per record
    size = cassette.stat().st_size
    meta = len(json.dumps(tape.meta, sort_keys=True))
    assert size == len(MAGIC) + tape.wire_bytes + meta + OVERHEAD * (len(tape.records) + 1)


def test_a_script_that_sends_another_command_stops_there_showing_both(tmp_path):
    cassette = tmp_path / "session.cassette"
    with PcmChip.open(RESOURCE, record=cassette) as chip:
        session(chip)
    changed = TARGETS.copy()
    changed[7] += 0.5  # one device's target
    with PcmChip.open(f"replay:{cassette}") as chip, pytest.raises(ReplayMismatchError) as error:
        session(chip, changed)
    text = str(error.value)
    assert "differs" in text and "recorded: 'PULS:APPL 0,#<192 bytes>" in text
    assert "script:   'PULS:APPL 0,#<192 bytes>" in text
    assert "PULS:APPL amplitudes[7]: recorded" in text and "(1 of 48 differ)" in text


def test_a_script_that_stops_early_or_goes_on_is_told_so(tmp_path):
    cassette = tmp_path / "short.cassette"
    with PcmChip.open(RESOURCE, record=cassette) as chip:
        chip.read(0, ADDRESSES)
        chip.read(1, ADDRESSES)
    with PcmChip.open(f"replay:{cassette}") as chip:
        chip.read(0, ADDRESSES)
        assert chip.transport.remaining == 1  # the second read not replayed yet
        chip.read(1, ADDRESSES)
        assert chip.transport.remaining == 0
        with pytest.raises(ReplayMismatchError, match="the recording ends after exchange"):
            chip.read(0, ADDRESSES)


def test_independent_queries_may_swap_places_when_asked(tmp_path):
    cassette = tmp_path / "queries.cassette"
    with PcmChip.open(RESOURCE, record=cassette) as chip:
        recorded = (chip.query("SYST:VERS?"), chip.query("*IDN?"), chip.temperature())
    with PcmChip.open(f"replay:{cassette}") as chip:
        with pytest.raises(ReplayMismatchError, match="recorded: 'SYST:VERS\\?"):
            chip.query("*IDN?")
    with PcmChip.open(f"replay:{cassette}?order=queries") as chip:
        assert chip.temperature() == recorded[2]
        assert chip.query("*IDN?") == recorded[1]
        assert chip.query("SYST:VERS?") == recorded[0]
        assert chip.transport.remaining == 0
    with pytest.raises(ResourceError, match="order=strict\\|queries"):
        open_replay(f"replay:{cassette}?order=any")
    # a query that changes the next answer (reading the event status register clears it) is
    # never moved past another
    status = tmp_path / "status.cassette"
    with PcmChip.open(RESOURCE, record=status) as chip:
        chip.query("SYST:VERS?")
        chip.query("*ESR?")
    with PcmChip.open(f"replay:{status}?order=queries") as chip:
        with pytest.raises(ReplayMismatchError, match="recorded: 'SYST:VERS\\?"):
            chip.query("*ESR?")


def test_a_reply_that_came_late_replays_after_its_timeout(tmp_path):
    """A reply delayed past the timeout: the read times out, the next read gets it — on the
    chip, and again on the replay."""
    from pcm_hil.emulator.faults import FaultPlan

    plan = FaultPlan.parse("delay_s=5,delay_from=2")
    transport = InProcessTransport("emulator", WireInterface(make_chip("tiny", seed=1)), plan)
    recording = RecordingTransport.start(transport, tmp_path / "late.cassette")
    for _ in range(2):
        recording.write(b"*OPC?\n")
    assert recording.read(None) == b"1\n"
    with pytest.raises(ChipTimeoutError):
        recording.read(None)
    assert recording.read(None) == b"1\n"  # late
    recording.close()
    replay = open_replay(f"replay:{tmp_path / 'late.cassette'}")
    for _ in range(2):
        replay.write(b"*OPC?\n")
    assert replay.read(None) == b"1\n"
    with pytest.raises(ChipTimeoutError):
        replay.read(None)
    assert replay.read(None) == b"1\n"
    assert replay.remaining == 0


def test_a_replayed_real_time_chip_is_waited_on_without_sleeping(tmp_path, monkeypatch):
    cassette = tmp_path / "real.cassette"
    with PcmChip.open("emulator?profile=tiny&real_time=1", record=cassette) as chip:
        ChipClock(chip).wait(0.05)  # a real wait: polls of the chip's clock and sleeps
        recorded = chip.time()
    import pcm_hil.targets.clock as clock_module

    def no_sleep(seconds):
        raise AssertionError("a replay slept")

    monkeypatch.setattr(clock_module.time, "sleep", no_sleep)
    with PcmChip.open(f"replay:{cassette}") as chip:
        ChipClock(chip).wait(0.05)  # the same polls, answered at once from the recording
        assert chip.time() == recorded
        assert chip.transport.remaining == 0


def test_a_timeout_recorded_replays_as_a_timeout(tmp_path):
    transport = InProcessTransport("emulator", WireInterface(make_chip("tiny", seed=1)))
    recording = RecordingTransport.start(transport, tmp_path / "t.cassette")
    recording.write(b"*OPC?\n")
    assert recording.read(None) == b"1\n"
    with pytest.raises(ChipTimeoutError):
        recording.read(None)  # nothing more came
    recording.close()
    replay = open_replay(f"replay:{tmp_path / 't.cassette'}")
    replay.write(b"*OPC?\n")
    assert replay.read(None) == b"1\n"
    with pytest.raises(ChipTimeoutError, match="replayed from"):
        replay.read(None)
    assert replay.remaining == 0


RECORDER = """
import sys, numpy as np
from pcm_hil.drivers import PcmChip
with PcmChip.open("emulator?profile=small&seed=4", record=sys.argv[1]) as chip:
    for k in range(100000):
        chip.read_tile(k % 4)
        print(k, flush=True)
"""


def test_a_cassette_cut_by_kill_9_replays_up_to_its_last_whole_exchange(tmp_path):
    cassette = tmp_path / "killed.cassette"
    child = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(cassette)], stdout=subprocess.PIPE, text=True
    )
    try:
        done = 0
        for line in child.stdout:  # the reads the recording script finished, as it goes
            done = int(line) + 1
            if done >= 40:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    tape = read_cassette(cassette)
    if not tape.complete:  # killed mid-record: refused unless asked for what is whole
        with pytest.raises(ResourceError, match="torn record"):
            open_replay(f"replay:{cassette}")
    replayed = 0
    with PcmChip.open(f"replay:{cassette}?partial=1") as chip:
        with PcmChip.open("emulator?profile=small&seed=4") as fresh:
            try:
                while True:
                    tile = chip.read_tile(replayed % 4)
                    np.testing.assert_array_equal(tile, fresh.read_tile(replayed % 4))
                    replayed += 1
            except ReplayMismatchError as error:
                assert "ends" in str(error) or "reads" in str(error)
    assert replayed >= done  # every read the script finished, bit for bit


def test_a_torn_last_record_is_cut_off(tmp_path):
    cassette = tmp_path / "whole.cassette"
    with PcmChip.open(RESOURCE, record=cassette) as chip:
        first = chip.read(0, ADDRESSES)
        chip.read(0, ADDRESSES)
    data = cassette.read_bytes()
    torn = tmp_path / "torn.cassette"
    torn.write_bytes(data[:-7])  # the last record (the second read's reply) cut
    tape = read_cassette(torn)
    assert not tape.complete and tape.valid_bytes < len(data) - 7
    assert len(tape.records) == len(read_cassette(cassette).records) - 1
    with pytest.raises(ResourceError, match="add \\?partial=1"):
        PcmChip.open(f"replay:{torn}")
    with PcmChip.open(f"replay:{torn}?partial=1") as chip:
        np.testing.assert_array_equal(chip.read(0, ADDRESSES), first)
        with pytest.raises(ReplayMismatchError):
            chip.read(0, ADDRESSES)  # its reply was torn off


def test_the_cli_records_and_replays_a_command(tmp_path, capsys):
    cassette = tmp_path / "program.cassette"
    runs = str(tmp_path / "runs.sqlite")
    common = ["program", "--devices", "64", "--levels", "4", "--json", "--runs", runs]
    assert main([*common, "--resource", RESOURCE, "--record", str(cassette)]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert main([*common, "--resource", f"replay:{cassette}"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    for key in ("converged_fraction", "iterations_mean", "error_std_uS", "levels"):
        assert replayed[key] == recorded[key], key
    assert main([*common, "--resource", f"replay:{cassette}", "--levels", "5"]) == 1
    err = capsys.readouterr().err  # the whole story, no traceback: where, recorded, script
    assert "differs" in err and "  recorded: 'PULS:APPL" in err and "  script:   'PULS:APPL" in err
    assert "amplitudes[" in err and "Traceback" not in err
    bench = ["--bench", "TCPIP0::127.0.0.1::1::SOCKET,TCPIP0::127.0.0.1::2::SOCKET"]
    assert main([*common, *bench, "--record", str(tmp_path / "b.cassette")]) == 1
    assert "a bench's instruments have none" in capsys.readouterr().err


def test_a_command_that_opens_chips_several_times_records_each_open(tmp_path, capsys):
    """`infer` opens each chip once per set of weights: each open its own cassette, refused
    up front if one exists; replayed, the same accuracies."""
    cassette = tmp_path / "infer.cassette"
    runs = str(tmp_path / "runs.sqlite")
    common = ["infer", "--chips", "1", "--times", "1", "100", "--json", "--quiet", "--runs", runs]
    assert main([*common, "--record", str(cassette)]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert cassette.exists() and (tmp_path / "infer.1.cassette").exists()
    assert not (tmp_path / "infer.2.cassette").exists()
    assert main([*common, "--resource", f"replay:{cassette}"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["points"] == recorded["points"]
    assert main([*common, "--record", str(cassette)]) == 1  # before anything is programmed
    assert "infer.cassette exists" in capsys.readouterr().err


USER_TEST = """
import numpy as np
import pytest
from pcm_hil import program_and_verify

@pytest.mark.pcm(profile="tiny", seed=9)
@pytest.mark.pcm_replay("cassettes/program.cassette")
def test_my_script(pcm_replay):
    result = program_and_verify(pcm_replay, 0, np.arange(32), np.linspace(2.0, {top}, 32))
    assert result.converged.mean() > 0.9
"""


SWALLOWING_TEST = """
import numpy as np
import pytest
from pcm_hil import program_and_verify
from pcm_hil.drivers.errors import TransportError

@pytest.mark.pcm(profile="tiny", seed=9)
@pytest.mark.pcm_replay("cassettes/program.cassette")
def test_my_script(pcm_replay):
    try:  # a script that catches the transport's errors and goes on
        program_and_verify(pcm_replay, 0, np.arange(32), np.linspace(2.0, 19.0, 32))
    except TransportError:
        pass
"""


def test_the_fixture_runs_a_users_test_outside_the_repository(pytester: pytest.Pytester):
    pytester.makepyfile(test_lab=USER_TEST.format(top=18.0))
    recorded = pytester.runpytest_subprocess("--pcm-record", "-q")
    recorded.assert_outcomes(passed=1)
    cassette = pytester.path / "cassettes" / "program.cassette"
    kept = cassette.read_bytes()
    # a recording whose test fails leaves the cassette that was there
    pytester.makepyfile(test_lab=USER_TEST.format(top=18.0) + "    assert False\n")
    pytester.runpytest_subprocess("--pcm-record", "-q").assert_outcomes(failed=1)
    assert cassette.read_bytes() == kept
    assert not list(cassette.parent.glob("*.recording"))
    pytester.makepyfile(test_lab=USER_TEST.format(top=18.0))
    replayed = pytester.runpytest_subprocess("-q")
    replayed.assert_outcomes(passed=1)
    pytester.makepyfile(test_lab=USER_TEST.format(top=19.0))  # the script changed
    changed = pytester.runpytest_subprocess("-q")
    changed.assert_outcomes(failed=1)  # failed, and only that: no teardown error on top
    changed.stdout.fnmatch_lines(["*ReplayMismatchError*differs*", "*recorded: 'PULS:APPL*"])
    pytester.makepyfile(test_lab=SWALLOWING_TEST)  # the mismatch caught by the script
    swallowed = pytester.runpytest_subprocess("-q")
    swallowed.assert_outcomes(passed=1, errors=1)
    swallowed.stdout.fnmatch_lines(["*the script departed from the recording*"])
