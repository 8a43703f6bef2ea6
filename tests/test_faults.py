"""Fault injection (``emulator.faults``): what each fault does on the wire, and what the driver
(``drivers.PcmChip``) does about it.

Every fault is counted in program messages per connection. The driver's handshake takes a
fixed number of messages (``handshake()``, measured, not assumed); after it, a command with
arguments or without a reply is two messages (the command, then ``SYST:ERR?``) and a query
without arguments is one. Servers run on 127.0.0.1, port 0, started and stopped by each test;
the driver's timeout is ``TIMEOUT_S`` and every test is bounded by ``TEST_BOUND_S`` (SIGALRM),
so a fault that made something hang fails the test instead of hanging the run. Nothing here
measures how long anything took: a late reply is told from a lost one by a client whose
timeout outlasts the delay, a server that let go of a connection by the next client being
admitted rather than refused busy, and an in-process fault by nothing waiting at all.

What the driver does, in short (asserted below):

- late reply (``delay_s``): ``ChipTimeoutError`` after its timeout; the command itself ran.
- dropped connection (``drop_after``, ``drop_mid_block``, ``reset_after``):
  ``ChipDisconnectedError`` at once; a message that arrived after the drop point never ran.
- corrupted block (``corrupt_block``): nothing — the protocol has no checksum and the length
  is right, so the damaged values are returned as data.
- truncated block (``truncate_block``): ``TransportError`` — a timeout (``ChipTimeoutError``)
  when what follows is shorter than the missing part, else "block reply not terminated by LF".
- injected error (``error_reply``): ``ChipError`` with that code (``PulseLimitError`` for 101),
  raised by the next command that reads the error queue, although that command succeeded.
- temperature excursion: nothing; ``temperature()`` reports it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import time
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest

from pcm_hil.documents.events import Event
from pcm_hil.drivers import (
    ChipDisconnectedError,
    ChipError,
    ChipTimeoutError,
    PcmChip,
    PulseLimitError,
    TransportError,
)
from pcm_hil.emulator import EmulatedChip, WireInterface, make_chip
from pcm_hil.emulator import faults as faults_module
from pcm_hil.emulator.devices import NOT_STUCK, STUCK_RESET, STUCK_SET
from pcm_hil.emulator.faults import INJECTED_DETAIL, FaultPlan
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.procedures.program import program_and_verify
from pcm_hil.protocols.errors import ScpiError
from pcm_hil.testing.serve import served_emulator

SEED = 70
TIMEOUT_S = 0.5  # the driver's I/O timeout
LATE_S = 2.0  # an injected delay a client waits out: 4x TIMEOUT_S
PATIENT_TIMEOUT_S = LATE_S + 8.0  # the timeout of a client that outlasts the delay
BUSY_WAIT_S = 0.5  # how long a server lets a new client wait for the last one to be let go
TEST_BOUND_S = 15  # no test may take longer (each takes a few seconds at most)
AMBIENT_K = 300.0


@pytest.fixture(autouse=True)
def bounded():
    """Fail (do not hang) a test that runs longer than TEST_BOUND_S."""

    def expire(*_):
        raise TimeoutError(f"test exceeded {TEST_BOUND_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_BOUND_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class CountingWire(WireInterface):
    """A wire interface that counts the messages it executes."""

    executed = 0

    def respond(self, message: bytes):
        self.executed += 1
        return super().respond(message)


@functools.cache
def handshake() -> int:
    """Messages the driver sends to open a chip (measured on a counting wire)."""
    wire = CountingWire(make_chip("tiny", seed=SEED))
    PcmChip(InProcessTransport("emulator", wire)).close()
    return wire.executed


def test_message_counts_used_below():
    """The per-command message counts the tests rely on."""
    wire = CountingWire(make_chip("tiny", seed=SEED))
    chip = PcmChip(InProcessTransport("emulator", wire))
    assert wire.executed == handshake() > 0
    for call, messages in (
        (lambda: chip.set_temperature(320.0), 2),
        (chip.temperature, 1),
        (lambda: chip.pulse(0, [1], 300.0, 50.0), 2),
        (lambda: chip.read(0, [1]), 2),
        (lambda: chip.read_tile(0), 2),
        (chip.clock_mode, 1),
        (chip.time, 1),
        (lambda: chip.advance(20.0), 2),
    ):
        before = wire.executed
        call()
        assert wire.executed - before == messages


@contextlib.contextmanager
def serve(
    plan: FaultPlan | None, profile: str = "tiny", seed: int = SEED
) -> Iterator[tuple[TcpServer, EmulatedChip]]:
    """The chip served with ``plan``. A new client waits at most ``BUSY_WAIT_S`` for the last
    one to be let go, then is refused busy (``ChipBusyError``); every delay waited out here
    outlasts the driver's timeout by more than that, so a server that kept waiting for a late
    reply after its client left would refuse the next client."""
    chip = make_chip(profile, seed=seed)
    with TcpServer(WireInterface(chip), faults=plan, busy_wait_s=BUSY_WAIT_S) as server:
        yield server, chip


def open_chip(server: TcpServer) -> PcmChip:
    return PcmChip.open(server.resource, timeout_s=TIMEOUT_S)


def in_process(chip: EmulatedChip, plan: FaultPlan | None) -> tuple[PcmChip, InProcessTransport]:
    transport = InProcessTransport("emulator", WireInterface(chip), faults=plan)
    return PcmChip(transport), transport


def assert_serves(server: TcpServer) -> None:
    """A new client is admitted (not refused busy: the server has let go of the last one) and
    answers the driver's handshake within its timeout."""
    admitted = server.connections
    with open_chip(server) as chip:
        assert chip.identity.model == "PCM-EMULATOR"
    assert server.connections == admitted + 1


@pytest.fixture
def never_waits(monkeypatch):
    """In-process, a fault makes nothing wait: a delay is a reply held back, not a pause.
    Sleeping, or the servers' wait for a late reply, fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the in-process transport waited")

    monkeypatch.setattr(time, "sleep", refuse)
    monkeypatch.setattr(faults_module, "wait_for_client", refuse)


def live_address(chip: EmulatedChip, tile: int = 0) -> int:
    """A device that is not stuck."""
    return int(np.flatnonzero(chip.devices.stuck[tile] == NOT_STUCK)[0])


# --- the plan and its text form ------------------------------------------------------------------


def test_parse_and_format_round_trip():
    text = (
        "drop_after=100,delay_s=2,delay_from=5,error_reply=12:-200,"
        "temperature_excursion=20:350.5,stuck_fraction=0.01,seed=3"
    )
    plan = FaultPlan.parse(text)
    assert plan.drop_after == 100 and plan.delay_s == 2.0 and plan.delay_from == 5
    assert plan.error_reply == (12, -200)
    assert plan.temperature_excursion == (20, 350.5)
    assert plan.connection_faults and plan.device_faults
    assert FaultPlan.parse(plan.format()) == plan
    assert FaultPlan.parse("") == FaultPlan() and not FaultPlan()
    assert str(FaultPlan()) == "no faults"
    assert FaultPlan.parse(" drift_factor = 2 ").format() == "drift_factor=2"


@pytest.mark.parametrize(
    "text, message",
    [
        ("drop_afterr=3", "unknown fault 'drop_afterr'; known: delay_s, delay_from, drop_after"),
        ("drop_after", "'drop_after' is not key=value"),
        ("drop_after=x", "bad value 'x' for fault drop_after"),
        ("drop_after=1,drop_after=2", "'drop_after' given twice"),
        ("drop_after=-1", "drop_after must be at least 0"),
        ("delay_s=-1", "delay_s must be finite"),
        ("delay_s=nan", "delay_s must be finite"),
        ("error_reply=3", "error_reply takes two values"),
        ("error_reply=3:7", "code 7 is not an error code"),
        ("error_reply=3:0", "code 0 is not an error code"),
        ("temperature_excursion=3:-5", "kelvin must be finite and above 0"),
        ("stuck_fraction=1.5", "stuck_fraction must be at most 1"),
        ("drift_factor=0", "drift_factor must be finite and above 0"),
    ],
)
def test_bad_plans_are_refused_clearly(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FaultPlan.parse(text)


# --- late replies ------------------------------------------------------------------------------------


def test_delay_times_out_the_driver_but_the_command_ran():
    h = handshake()
    # TEMP is message h+1 (no reply: not delayed); its SYST:ERR? (h+2) gets a late reply
    with serve(FaultPlan(delay_s=LATE_S, delay_from=h + 2)) as (server, emulated):
        chip = open_chip(server)  # its timeout is shorter than the delay
        with pytest.raises(ChipTimeoutError):
            chip.set_temperature(350.0)
        chip.close()
        assert emulated.temperature_K == 350.0  # a timeout does not mean "not executed"
        # the server gives up the late reply when its client leaves: the next client is
        # admitted, not refused busy for the rest of the delay
        with open_chip(server) as again:
            assert again.temperature() == 350.0  # message h+1: before delay_from
        # a client whose timeout outlasts the delay gets the late reply: nothing is lost
        with PcmChip.open(server.resource, timeout_s=PATIENT_TIMEOUT_S) as patient:
            patient.set_temperature(340.0)  # its error check (h+2) answers late: no error
        assert emulated.temperature_K == 340.0
        assert [(e.connection, e.fault, e.message) for e in server.fault_events] == [
            (1, "delay", h + 2),
            (3, "delay", h + 2),
        ]
        assert {e.detail for e in server.fault_events} == {f"reply delayed {LATE_S:g} s"}


def test_delay_from_the_first_message_fails_the_open():
    with serve(FaultPlan(delay_s=LATE_S)) as (server, _):
        with pytest.raises(ChipTimeoutError):
            open_chip(server)
        # every connection: the count restarts; admitted (not busy), it times out the same way
        with pytest.raises(ChipTimeoutError):
            open_chip(server)
        assert [(e.connection, e.fault, e.message) for e in server.fault_events] == [
            (1, "delay", 1),
            (2, "delay", 1),
        ]


def test_delay_in_process_raises_at_once_and_the_late_reply_follows(never_waits):
    h = handshake()
    emulated = make_chip("tiny", seed=SEED)
    chip, transport = in_process(emulated, FaultPlan(delay_s=30.0, delay_from=h + 2))
    with pytest.raises(ChipTimeoutError, match="late"):  # at once: nothing waits the 30 s
        chip.set_temperature(350.0)
    assert emulated.temperature_K == 350.0
    # the late reply is there afterwards, as on a wire: a stale reply for whoever reads next
    assert transport.read(None) == b'0,"No error"\n'
    assert [e.fault for e in transport.fault_events] == ["delay"]


# --- dropped connections -------------------------------------------------------------------------


@pytest.mark.parametrize("executed", [False, True], ids=["before-command", "before-error-query"])
def test_drop_after_disconnects_and_leaves_the_chip_consistent(executed):
    h = handshake()
    # the pulse is message h+1, its SYST:ERR? h+2: drop before one or the other
    plan = FaultPlan(drop_after=h + 1 if executed else h)
    with serve(plan) as (server, emulated):
        chip = open_chip(server)
        address = live_address(emulated)
        before = emulated.devices.snapshot()
        rng_before = emulated.rng.bit_generator.state
        with pytest.raises(ChipDisconnectedError):  # the end of the stream, not a timeout
            chip.pulse(0, [address], 300.0, 50.0)
        chip.close()
        after = emulated.devices.snapshot()
        if executed:  # the pulse ran; only its error check was lost
            assert after["g_prog"][0, address] != before["g_prog"][0, address]
        else:  # the pulse never ran: not a device, not a random draw changed
            for name in before:
                np.testing.assert_array_equal(after[name], before[name], err_msg=name)
            assert emulated.rng.bit_generator.state == rng_before
        assert [(e.fault, e.message) for e in server.fault_events] == [
            ("drop_after", plan.drop_after + 1)
        ]
        assert_serves(server)


def test_drop_after_in_process(never_waits):
    h = handshake()
    emulated = make_chip("tiny", seed=SEED)
    chip, transport = in_process(emulated, FaultPlan(drop_after=h))
    with pytest.raises(ChipDisconnectedError):
        chip.set_temperature(350.0)
    assert emulated.temperature_K == AMBIENT_K  # TEMP (message h+1) never ran
    with pytest.raises(ChipDisconnectedError):
        transport.write(b"*IDN?\n")
    # another connection to the same chip works
    other, _ = in_process(emulated, None)
    assert other.temperature() == AMBIENT_K


def test_drop_mid_block_disconnects_on_each_connection():
    with serve(FaultPlan(drop_mid_block=1)) as (server, _):
        chip = open_chip(server)
        with pytest.raises(ChipDisconnectedError):
            chip.read_tile(0)
        chip.close()
        with open_chip(server) as again:  # a new connection: served; its count restarts
            assert again.temperature() == AMBIENT_K
            with pytest.raises(ChipDisconnectedError):
                again.read(0, [1, 2, 3])
        assert [e.fault for e in server.fault_events] == ["drop_mid_block"] * 2
        assert [e.connection for e in server.fault_events] == [1, 2]


def test_drop_mid_block_in_process():
    chip, _ = in_process(make_chip("tiny", seed=SEED), FaultPlan(drop_mid_block=1))
    with pytest.raises(ChipDisconnectedError):
        chip.read_tile(0)


# --- damaged blocks ----------------------------------------------------------------------------------


def test_corrupt_block_passes_undetected():
    """No checksum: same length, flipped bytes — the driver returns the damaged values."""
    plan = FaultPlan(corrupt_block=1, corrupt_bytes=4, seed=9)
    with serve(None) as (clean_server, _), serve(plan) as (faulty_server, _):
        with open_chip(clean_server) as clean, open_chip(faulty_server) as faulty:
            good = clean.read_tile(0)
            bad = faulty.read_tile(0)  # no exception
            assert bad.shape == good.shape and bad.dtype == good.dtype
            good_bytes, bad_bytes = good.view(np.uint8).ravel(), bad.view(np.uint8).ravel()
            differ = np.flatnonzero(good_bytes != bad_bytes)
            assert differ.size == 4  # exactly the flipped bytes, each XOR 0xFF
            np.testing.assert_array_equal(bad_bytes[differ], good_bytes[differ] ^ 0xFF)
            assert 1 <= len(np.unique(differ // 4)) <= 4  # up to 4 wrong conductances
            # the stream is still in step: the next replies are exact (same seed, same commands)
            assert faulty.temperature() == clean.temperature()
            np.testing.assert_array_equal(faulty.read_tile(1), clean.read_tile(1))
        assert faulty_server.fault_events[0].fault == "corrupt_block"


def test_truncate_block_is_a_transport_error():
    with serve(FaultPlan(truncate_block=1)) as (server, _):
        # a 4-byte block cut to 2: the driver reads into the next reply, finds no LF after it
        chip = open_chip(server)
        with pytest.raises(TransportError) as error:
            chip.read(0, [5])
        assert not isinstance(error.value, ChipTimeoutError)
        assert "not terminated by LF" in str(error.value)
        chip.close()
        # a 1024-byte block cut to 512: the driver waits for bytes that never come
        chip = open_chip(server)
        with pytest.raises(ChipTimeoutError):
            chip.read_tile(0)
        chip.close()
        assert [e.fault for e in server.fault_events] == ["truncate_block"] * 2
        assert [e.connection for e in server.fault_events] == [1, 2]
        assert_serves(server)


def test_truncate_block_in_process(never_waits):
    chip, _ = in_process(make_chip("tiny", seed=SEED), FaultPlan(truncate_block=1))
    with pytest.raises(TransportError, match="not terminated by LF"):
        chip.read(0, [5])
    chip, _ = in_process(make_chip("tiny", seed=SEED), FaultPlan(truncate_block=1))
    with pytest.raises(ChipTimeoutError):  # at once: in process nothing more can arrive
        chip.read_tile(0)


# --- injected errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("code, kind", [(-200, ChipError), (101, PulseLimitError)])
def test_error_reply_raises_a_typed_chip_error(code, kind):
    h = handshake()
    with serve(FaultPlan(error_reply=(h + 1, code))) as (server, emulated):
        with open_chip(server) as chip:
            with pytest.raises(kind) as error:
                chip.set_temperature(350.0)
            assert error.value.code == code and error.value.detail == INJECTED_DETAIL
            assert error.value.sent and error.value.command == "TEMP"
            assert emulated.temperature_K == 350.0  # the command itself succeeded
            chip.set_temperature(340.0)  # the queue was drained: the next command is clean
        assert_serves(server)


def test_error_reply_on_a_query_surfaces_at_the_next_check():
    """A query without arguments reads no error queue: the injected error waits there and is
    raised by the next command that checks — blamed on that command."""
    h = handshake()
    emulated = make_chip("tiny", seed=SEED)
    chip, _ = in_process(emulated, FaultPlan(error_reply=(h + 1, -200)))
    assert chip.temperature() == AMBIENT_K  # message h+1: no error check, no exception
    with pytest.raises(ChipError) as error:
        chip.set_temperature(350.0)
    assert error.value.code == -200 and error.value.command == "TEMP"
    assert emulated.temperature_K == 350.0


# --- temperature excursions and resets ---------------------------------------------------------------


def test_temperature_excursion_is_reported_not_raised():
    h = handshake()
    with serve(FaultPlan(temperature_excursion=(h + 1, 420.0))) as (server, emulated):
        with open_chip(server) as chip:
            assert chip.temperature() == AMBIENT_K  # message h+1
            assert chip.temperature() == 420.0  # after h+1 messages: above the 400 K limit
            assert emulated.temperature_K == 420.0
            assert emulated.drift_acceleration(420.0) > 1  # devices drift faster meanwhile
            chip.set_temperature(300.0)  # the host can set it back
            assert chip.temperature() == 300.0
        assert [e.fault for e in server.fault_events] == ["temperature_excursion"]


def test_reset_after_resets_the_chip_and_drops_the_connection():
    h = handshake()
    with serve(FaultPlan(reset_after=h + 6)) as (server, emulated):
        chip = open_chip(server)
        address = live_address(emulated)
        chip.pulse(0, [address], 300.0, 50.0)  # messages h+1, h+2
        chip.set_temperature(350.0)  # h+3, h+4
        chip.set_event_status_enable(32)  # h+5, h+6
        with server.device.lock:
            server.device.push_error(ScpiError(-200, "left in the queue"))
        devices = emulated.devices.snapshot()
        clock = emulated.now()
        with pytest.raises(ChipDisconnectedError):
            chip.temperature()  # message h+7: the reset comes first, the query never runs
        chip.close()
        wire = server.device
        assert emulated.temperature_K == AMBIENT_K
        assert wire.ese == 0 and wire.esr == 0 and len(wire.errors) == 0
        after = emulated.devices.snapshot()  # conductances are non-volatile
        for name in devices:
            np.testing.assert_array_equal(after[name], devices[name], err_msg=name)
        assert emulated.now() == clock
        with open_chip(server) as again:
            assert again.temperature() == AMBIENT_K
            assert again.event_status_enable() == 0
        assert [(e.fault, e.message) for e in server.fault_events] == [("reset_after", h + 7)]


def test_reset_after_in_process():
    h = handshake()
    emulated = make_chip("tiny", seed=SEED)
    chip, _ = in_process(emulated, FaultPlan(reset_after=h + 2))
    chip.set_temperature(350.0)
    with pytest.raises(ChipDisconnectedError):
        chip.temperature()
    assert emulated.temperature_K == AMBIENT_K


# --- device faults ------------------------------------------------------------------------------------


def test_stuck_fraction_adds_stuck_devices_binomially():
    fraction = 0.05
    base = make_chip("small", seed=SEED)
    chip = make_chip("small", seed=SEED)
    plan = FaultPlan(stuck_fraction=fraction, seed=3)
    plan.apply_to_chip(chip)
    was = base.devices.stuck
    now = chip.devices.stuck
    assert np.all(now[was != NOT_STUCK] == was[was != NOT_STUCK])  # old stuck devices stay
    candidates = int(np.count_nonzero(was == NOT_STUCK))
    new = int(np.count_nonzero((was == NOT_STUCK) & (now != NOT_STUCK)))
    sigma = np.sqrt(candidates * fraction * (1 - fraction))
    assert abs(new - candidates * fraction) < 5 * sigma
    new_set = int(np.count_nonzero((was == NOT_STUCK) & (now == STUCK_SET)))
    assert abs(new_set - new / 2) < 5 * np.sqrt(new / 4)  # the model's SET:RESET split, 1:1
    # deterministic, applied once
    again = make_chip("small", seed=SEED)
    plan.apply_to_chip(again)
    plan.apply_to_chip(again)
    np.testing.assert_array_equal(again.devices.stuck, now)
    with pytest.raises(ValueError, match="already applied"):
        FaultPlan(stuck_fraction=0.1).apply_to_chip(again)


def test_stuck_devices_seen_through_the_driver():
    """A served plan applies its device faults: on a fresh (all-RESET) chip the stuck-SET
    devices read near the crystalline conductance and a RESET pulse does not move them."""
    with serve(FaultPlan(stuck_fraction=0.2, seed=3)) as (server, emulated):
        stuck_set = emulated.devices.stuck[0] == STUCK_SET
        stuck_reset = emulated.devices.stuck[0] == STUCK_RESET
        for stuck in (stuck_set, stuck_reset):  # about 10% each (256 devices: ±5σ = ±9%)
            assert 0.01 < stuck.mean() < 0.2
        with open_chip(server) as chip:
            high = chip.read_tile(0).ravel() > 15.0
            np.testing.assert_array_equal(high, stuck_set)
            chip.pulse(0, np.flatnonzero(high), 500.0, 50.0)  # melt-quench: RESET if alive
            np.testing.assert_array_equal(chip.read_tile(0).ravel() > 15.0, stuck_set)


def test_drift_factor_scales_nu_now_and_after_programming():
    factor = 3.0
    plan = FaultPlan(drift_factor=factor)
    base_chip, fast_chip = make_chip("tiny", seed=SEED), make_chip("tiny", seed=SEED)
    base, _ = in_process(base_chip, None)
    fast, _ = in_process(fast_chip, plan)  # the transport applies the device faults
    np.testing.assert_allclose(fast_chip.devices.nu, factor * base_chip.devices.nu, rtol=1e-5)
    addresses = np.arange(base.config.devices_per_tile)
    for chip in (base, fast):  # the same commands: the same random draws on both chips
        chip.pulse(0, addresses, 300.0, 50.0)
    np.testing.assert_array_equal(fast_chip.devices.g_prog, base_chip.devices.g_prog)
    np.testing.assert_allclose(fast_chip.devices.nu, factor * base_chip.devices.nu, rtol=1e-5)
    # and through the driver: the log-decay of the conductance is three times larger
    decay = []
    for chip in (base, fast):
        chip.advance(20.0)
        first = chip.read_tile(0)
        chip.advance(2e5)
        decay.append(np.median(np.log(first / chip.read_tile(0))))
    assert decay[1] / decay[0] == pytest.approx(factor, rel=0.15)


# --- procedures --------------------------------------------------------------------------------------


TARGETS = np.linspace(3.0, 20.0, 48, dtype=np.float32)
ADDRESSES = np.arange(48)
STEPS = 3  # iterations completed before the fault


def messages_through(events: list[Event], steps: int) -> int:
    """Messages program-and-verify sends after the handshake up to the end of iteration
    ``steps`` (one tile, on a virtual clock): the clock's mode once, then per iteration the
    pulse (2: the command and its error check), the time of the pulse (1), the wait (2:
    advance, error check), the verify read (2) and, if devices converged in it, their final
    and repeat reads (2 each)."""
    iterations = [e.document for e in events if e.kind == "step"][:steps]
    assert [d.iteration for d in iterations] == list(range(1, steps + 1))
    converged = [0] + [d.converged for d in iterations]
    return 1 + sum(7 + (4 if now > before else 0) for before, now in pairwise(converged))


def _program(chip: PcmChip, events: list[Event], max_iterations: int = 30):
    return program_and_verify(
        chip,
        0,
        ADDRESSES,
        TARGETS,
        tolerance_uS=0.3,
        max_iterations=max_iterations,
        listeners=[events.append],
    )


def _baseline(steps: int) -> tuple[EmulatedChip, list[Event]]:
    """The same programming, fault-free, stopped after ``steps`` iterations."""
    emulated = make_chip("tiny", seed=SEED)
    events: list[Event] = []
    chip, _ = in_process(emulated, None)
    _program(chip, events, max_iterations=steps)
    return emulated, events


def test_program_and_verify_traffic_is_what_the_fault_tests_count():
    """``messages_through``, checked on a counting wire at the end of every iteration; the
    iterations the fault tests stop at are of both kinds (devices converged in them or not)."""
    wire = CountingWire(make_chip("tiny", seed=SEED))
    chip = PcmChip(InProcessTransport("emulator", wire))
    counted: list[int] = []

    class Counting(list):
        def append(self, event: Event) -> None:
            super().append(event)
            if event.kind == "step":
                counted.append(wire.executed - handshake())

    events = Counting()
    _program(chip, events, max_iterations=STEPS + 1)
    assert counted == [messages_through(events, k) for k in range(1, STEPS + 2)]
    per_iteration = np.diff([1, *counted]).tolist()
    assert set(per_iteration) == {7, 11}


def test_program_and_verify_with_a_dropped_connection():
    h = handshake()
    reference, reference_events = _baseline(STEPS)
    # everything up to the end of iteration STEPS delivered; the next pulse is not
    plan = FaultPlan(drop_after=h + messages_through(reference_events, STEPS))
    with serve(plan) as (server, emulated):
        events: list[Event] = []
        with open_chip(server) as chip, pytest.raises(ChipDisconnectedError):
            _program(chip, events)
        kinds = [e.kind for e in events]
        assert kinds == ["start"] + ["step"] * STEPS + ["end"]
        assert events[-1].document.status == "failed"
        assert "ChipDisconnectedError" in events[-1].document.error
        # what was measured before the drop was delivered, exactly as without the fault
        for got, want in zip(events[1:-1], reference_events[1 : STEPS + 1], strict=True):
            assert got.document.iteration == want.document.iteration
            np.testing.assert_array_equal(got.document.is_read, want.document.is_read)
            np.testing.assert_array_equal(got.document.conductance_uS, want.document.conductance_uS)
        # the pulse of iteration STEPS+1 arrived after the drop: it never ran
        snapshot, expected = emulated.devices.snapshot(), reference.devices.snapshot()
        for name in snapshot:
            np.testing.assert_array_equal(snapshot[name], expected[name], err_msg=name)
        assert_serves(server)


def test_program_and_verify_with_a_late_reply():
    h = handshake()
    _reference, reference_events = _baseline(STEPS)
    # the error check of iteration STEPS+1's pulse is late: the pulse ran, the host timed out
    late = h + messages_through(reference_events, STEPS) + 2
    plan = FaultPlan(delay_s=LATE_S, delay_from=late)
    with serve(plan) as (server, emulated):
        events: list[Event] = []
        with open_chip(server) as chip, pytest.raises(ChipTimeoutError):
            _program(chip, events)
        assert [(e.fault, e.message) for e in server.fault_events] == [("delay", late)]
        assert [e.kind for e in events] == ["start"] + ["step"] * STEPS + ["end"]
        assert "ChipTimeoutError" in events[-1].document.error
        # unlike a drop, the timed-out pulse did reach the devices: the chip is where a
        # fault-free run is after STEPS+1 iterations, not STEPS
        after_more, _ = _baseline(STEPS + 1)
        after_fewer, _ = _baseline(STEPS)
        snapshot = emulated.devices.snapshot()
        for name, value in after_more.devices.snapshot().items():
            np.testing.assert_array_equal(snapshot[name], value, err_msg=name)
        assert not np.array_equal(snapshot["g_prog"], after_fewer.devices.g_prog)
        assert_serves(server)


# --- command line ----------------------------------------------------------------------------------


def test_cli_serve_with_faults():
    h = handshake()
    with served_emulator("--profile", "tiny", "--faults", f"drop_after={h}") as served:
        resource = served.resource
        assert re.fullmatch(r"TCPIP0::127\.0\.0\.1::\d+::SOCKET", resource)
        with PcmChip.open(resource, timeout_s=2.0) as chip:
            with pytest.raises(ChipDisconnectedError):
                chip.set_temperature(350.0)
        with PcmChip.open(resource, timeout_s=2.0) as chip:  # served again (h messages)
            assert chip.identity.model == "PCM-EMULATOR"
    assert served.process.returncode == 0
    assert f"injecting faults: drop_after={h}" in served.stderr
    assert f"fault drop_after on connection 1, message {h + 1}" in served.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--faults", "bogus=1"], "unknown fault 'bogus'"),
        (["--serial", "--faults", "drop_after=3"], "connection faults need the TCP server"),
    ],
)
def test_cli_refuses_bad_faults(argv, message, capsys):
    from pcm_hil.cli.main import main

    assert main(["emulator", "serve", "--port", "0", *argv]) == 1
    assert message in capsys.readouterr().err
