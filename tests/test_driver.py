"""One driver test suite, run against every way of serving the emulator:
in-process, TCP through pyvisa-py, pty serial through pyvisa-py and through pyserial."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.drivers import (
    ChipBusyError,
    ChipDisconnectedError,
    ChipError,
    PcmChip,
    ProtocolVersionError,
    PulseLimitError,
    ResourceError,
)
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.emulator.servers.pty import PtyServer
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.protocols import errors
from pcm_hil.protocols.chip import CHIP_BUSY, PULSE_OUTSIDE_LIMITS

from .conftest import SEED

TRANSPORTS = ["in-process", "tcp-socket", "tcp-pyvisa", "pty-pyvisa", "pty-pyserial"]


@pytest.fixture(params=TRANSPORTS)
def served(request):
    """(driver, emulated chip behind it) for each transport."""
    chip = make_chip("tiny", seed=SEED)
    wire = WireInterface(chip)
    kind = request.param
    if kind == "in-process":
        from pcm_hil.emulator.servers.inprocess import InProcessTransport

        driver = PcmChip(InProcessTransport("emulator", wire))
        yield driver, chip
        driver.close()
        return
    server = TcpServer(wire) if kind.startswith("tcp") else PtyServer(wire)
    with server:
        resource = f"serial:{server.path}" if kind == "pty-pyserial" else server.resource
        library = "@py" if kind == "tcp-pyvisa" else None
        driver = PcmChip.open(resource, timeout_s=5, visa_library=library)
        expected = {
            "tcp-socket": "SocketTransport",
            "pty-pyserial": "SerialTransport",
        }.get(kind, "VisaTransport")
        assert type(driver.transport).__name__ == expected
        yield driver, chip
        driver.close()


def test_identity_and_configuration(served):
    driver, chip = served
    assert driver.identity.manufacturer == "PCM-HIL"
    assert driver.identity.serial == chip.config.serial
    c = driver.config
    assert (c.tiles, c.rows, c.columns) == (2, 16, 16)
    assert c.g_max_uS == 25.0
    assert c.pulse_amplitude_max_uA == chip.config.pulse_amplitude_max_uA
    assert (c.pulse_width_min_ns, c.pulse_width_max_ns) == (10.0, 1000.0)
    assert c.read_voltage_V == 0.2
    assert (c.dac_bits, c.adc_bits) == (8, 8)
    assert c.mvm_output_max_uA == pytest.approx(chip.config.mvm_output_max_uA)
    assert c.protocol_version == "1.1"
    assert c.mvm_batch_max == chip.config.mvm_batch_max
    assert driver.scpi_version() == "1999.0"
    assert driver.self_test()


def test_pulse_and_read_match_chip_state(served):
    driver, chip = served
    addresses = np.arange(40)
    untouched = chip.devices.snapshot()  # every device's programmed state before the pulses
    driver.pulse(0, addresses, 550.0, 50.0)  # RESET
    reset = chip.devices.g_prog[0, :40].copy()
    assert np.all(reset < 1.0)
    currents = np.linspace(220, 420, 40)
    driver.pulse(0, addresses, currents, 50.0)
    programmed = chip.devices.g_prog[0, :40]
    assert not np.array_equal(programmed, reset)
    # the pulses reached only the addressed devices: tile 0 from 40 on and all of tile 1 are
    # exactly as before (conductance, programming time, SET count, drift exponent, ...)
    after = chip.devices.snapshot()
    for name, before in untouched.items():
        np.testing.assert_array_equal(after[name][0, 40:], before[0, 40:], err_msg=name)
        np.testing.assert_array_equal(after[name][1], before[1], err_msg=name)
    read = driver.read(0, addresses)
    assert read.dtype == np.float32 and read.shape == (40,)
    # a read right after the pulses (t < t_start on the virtual clock) is the programmed
    # G(t0) drifted back to t_start, (t0/t_start)^ν above it, with read noise of a few percent
    m = chip.config.model
    assert chip.equivalent_time() - chip.devices.t_prog[0, 0] < m.drift_t_start_s
    now = programmed * (m.drift_t_start_s / m.drift_t0_s) ** -chip.devices.nu[0, :40]
    healthy = chip.devices.stuck[0, :40] == 0
    relative = np.abs(read[healthy] / now[healthy] - 1)
    assert np.median(relative) < 0.1
    assert np.median(read[healthy] / programmed[healthy]) > 1.05  # reads sooner than t0 lie above
    # the programming curve falls with current
    assert read[:5].mean() > read[-5:].mean() + 10


def test_read_tile_shape_and_order(served):
    driver, chip = served
    driver.pulse(1, [0], 550.0, 50.0)
    driver.pulse(1, [17], 250.0, 50.0)  # row 1, column 1
    tile = driver.read_tile(1)
    assert tile.shape == (16, 16)
    assert tile[1, 1] == pytest.approx(chip.devices.g_prog[1, 17], rel=0.3)
    assert tile[1, 1] > 5 * tile[0, 0]


def test_drift_on_virtual_clock(served):
    driver, chip = served
    addresses = np.arange(64)
    driver.pulse(0, addresses, 550.0, 50.0)
    driver.pulse(0, addresses, 260.0, 50.0)
    start = driver.time()
    assert driver.clock_mode() == "VIRT"
    driver.advance(20.0)
    g_t0 = chip.devices.drifted(0, addresses, chip.equivalent_time())
    driver.advance(86400.0 - 20.0)
    assert driver.time() == pytest.approx(start + 86400.0)
    g_day = chip.devices.drifted(0, addresses, chip.equivalent_time())
    nu = chip.devices.nu[0, addresses]
    np.testing.assert_allclose(g_day / g_t0, (86400.0 / 20.0) ** -nu, rtol=1e-4)


def test_mvm_forward_and_transposed(served):
    driver, _chip = served
    forward = driver.mvm(0, np.full((3, 16), 0.1))
    assert forward.shape == (3, 16)
    single = driver.mvm(0, np.full(16, 0.1))
    assert single.shape == (16,)
    transposed = driver.mvm(0, np.full((2, 16), 0.1), transposed=True)
    assert transposed.shape == (2, 16)
    with pytest.raises(ValueError):
        driver.mvm(0, np.zeros(15))


def test_temperature(served):
    driver, chip = served
    assert driver.temperature() == 300.0
    driver.set_temperature(350.0)
    assert chip.temperature_K == 350.0
    driver.reset()
    assert driver.temperature() == 300.0
    with pytest.raises(ChipError) as info:
        driver.set_temperature(900.0)
    assert info.value.code == errors.DATA_OUT_OF_RANGE and not info.value.sent


def test_out_of_limit_pulse_never_reaches_the_wire(served):
    driver, chip = served
    before = chip.devices.snapshot()
    for amplitude, width in ((601.0, 50.0), (-1.0, 50.0), (300.0, 5.0), (300.0, 2000.0)):
        with pytest.raises(PulseLimitError) as info:
            driver.pulse(0, [0, 1], amplitude, width)
        assert info.value.code == PULSE_OUTSIDE_LIMITS
        assert info.value.sent is False
    with pytest.raises(ChipError) as info:
        driver.pulse(0, [0, 0], 300.0, 50.0)
    assert info.value.code == errors.DUPLICATE_ADDRESS and not info.value.sent
    with pytest.raises(ChipError) as info:
        driver.pulse(0, [0, 1, 2], [300.0, 310.0], 50.0)
    assert info.value.code == errors.LENGTH_MISMATCH
    with pytest.raises(ChipError) as info:
        driver.read(0, [256])
    assert info.value.code == errors.DATA_OUT_OF_RANGE
    after = chip.devices.snapshot()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert driver.errors() == []


def test_chip_side_errors_become_typed_exceptions(served):
    """Bypass the driver's own checks: the chip refuses, and the driver raises its code."""
    driver, chip = served
    before = chip.devices.snapshot()
    driver._limits = dict(driver._limits, pulse_amplitude_max_uA=10_000.0, tiles=99)
    with pytest.raises(PulseLimitError) as info:
        driver.pulse(0, [3], 900.0, 50.0)
    assert info.value.sent and info.value.code == 101 and "900" in info.value.detail
    with pytest.raises(ChipError) as info:
        driver.read_tile(5)
    assert info.value.sent and info.value.code == -222
    after = chip.devices.snapshot()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    # the driver keeps working and the queue was drained
    assert driver.error_count() == 0
    assert driver.operation_complete()


def test_status_registers(served):
    driver, _chip = served
    driver.set_event_status_enable(0x3C)
    assert driver.event_status_enable() == 0x3C
    driver.set_operation_complete()
    assert driver.event_status() & 0x01
    assert driver.event_status() == 0  # read and cleared
    driver.clear_status()
    assert driver.status_byte() == 0
    driver.wait_to_continue()


def test_close_is_idempotent(served):
    driver, _chip = served
    driver.close()
    driver.close()
    with pytest.raises(Exception) as info:
        driver.time()
    assert "closed" in str(info.value)


def test_same_seed_same_replies_across_transports(tcp_server):
    """The TCP-served chip and an in-process chip with the same seed answer identically."""
    with (
        PcmChip.open(f"emulator?profile=tiny&seed={SEED}") as local,
        PcmChip.open(tcp_server.resource, timeout_s=5) as remote,
    ):
        for chip in (local, remote):
            chip.pulse(0, np.arange(100), 550.0, 50.0)
            chip.pulse(0, np.arange(100), np.linspace(200, 400, 100), 50.0)
            chip.advance(1000.0)
        np.testing.assert_array_equal(local.read_tile(0), remote.read_tile(0))
        np.testing.assert_array_equal(
            local.mvm(0, np.full(16, 0.05)), remote.mvm(0, np.full(16, 0.05))
        )


def test_second_client_refused_while_first_connected(tcp_server):
    with PcmChip.open(tcp_server.resource, timeout_s=5) as first:
        with pytest.raises(ChipBusyError) as info:
            PcmChip.open(tcp_server.resource, timeout_s=5)
        assert info.value.code == CHIP_BUSY
        assert first.operation_complete()
    with PcmChip.open(tcp_server.resource, timeout_s=5) as again:
        assert again.operation_complete()


@pytest.mark.parametrize("library", [None, "@py"])
def test_disconnect_raises_typed_error(tiny_chip, library):
    server = TcpServer(WireInterface(tiny_chip)).start()
    driver = PcmChip.open(server.resource, timeout_s=2, visa_library=library)
    server.stop()
    with pytest.raises(ChipDisconnectedError):
        for _ in range(3):
            driver.time()
    driver.close()


def test_incompatible_major_version_refused(monkeypatch):
    monkeypatch.setattr("pcm_hil.emulator.chip.PROTOCOL_VERSION", "2.0")  # what it reports
    with pytest.raises(ProtocolVersionError, match=r"speaks protocol 2\.0"):
        PcmChip.open("emulator?profile=tiny")


def test_bad_resource_strings():
    with pytest.raises(ResourceError):
        PcmChip.open("nonsense")
    with pytest.raises(ResourceError):
        PcmChip.open("emulator?colour=blue")
    with pytest.raises(ResourceError):
        PcmChip.open("serial:/dev/null?baud=fast")


def test_hermes_profile_runs():
    """The profile shaped like the 64-core chip: 64 tiles of 256×256 devices."""
    with PcmChip.open("emulator?profile=hermes&seed=2") as chip:
        assert (chip.config.tiles, chip.config.rows, chip.config.columns) == (64, 256, 256)
        addresses = np.arange(0, 65536, 7)
        chip.pulse(63, addresses, 550.0, 50.0)
        chip.pulse(63, addresses, 300.0, 50.0)
        tile = chip.read_tile(63).ravel()
        assert tile.shape == (65536,)
        assert np.median(tile[addresses]) > 5 * np.median(np.delete(tile, addresses))
        out = chip.mvm(63, np.full((4, 256), 0.1))
        assert out.shape == (4, 256)


def test_an_address_beyond_32_bits_is_refused_not_wrapped():
    """The addresses travel as 32-bit integers: 2**32 + 5 must be refused, not become 5."""
    emulated = make_chip("tiny", seed=SEED)
    state = emulated.devices.snapshot()
    with PcmChip(InProcessTransport("emulator", WireInterface(emulated))) as driver:
        with pytest.raises(ChipError) as refused:
            driver.pulse(0, [2**32 + 5], 300.0, 50.0)  # device 5 would melt-quench to ~15 µS
        assert refused.value.code == errors.DATA_OUT_OF_RANGE and not refused.value.sent
        with pytest.raises(ChipError):
            driver.read(0, np.array([2**40]))
    for name, values in emulated.devices.snapshot().items():
        np.testing.assert_array_equal(values, state[name], err_msg=name)
