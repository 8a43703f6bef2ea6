"""Raw SCPI on the driver (``chip.write``, ``chip.query``, ``chip.query_block``) over every
transport: the same replies as the driver's own methods, the chip's errors as typed
exceptions, and the table's checks on the commands it knows — an out-of-limit pulse sent raw
is refused before it is sent."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.drivers import ChipError, PcmChip, PulseLimitError
from pcm_hil.drivers.transports.recording import RecordingTransport
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.protocols.blocks import encode_array
from pcm_hil.protocols.cassette import read_cassette

from .conftest import SEED
from .test_driver import served  # noqa: F401  (the fixture: the driver over each transport)


def pulse_message(amplitude_uA: float, addresses=(0, 1)) -> bytes:
    """A raw PULS:APPL of the given amplitude on tile 0, 50 ns."""
    n = len(addresses)
    blocks = (
        encode_array(np.asarray(addresses, np.uint32), "<u4"),
        encode_array(np.full(n, amplitude_uA, np.float32), "<f4"),
        encode_array(np.full(n, 50.0, np.float32), "<f4"),
    )
    return b"PULS:APPL 0," + b",".join(blocks)


def test_raw_queries_and_writes_over_each_transport(served):  # noqa: F811
    driver, chip = served
    assert driver.query("*IDN?") == driver.identity.reply()
    assert driver.query("SYST:VERS?;*OPC?") == "1999.0;1"  # two queries, one message
    tile = driver.query_block("READ:TILE? 0", "<f4")
    assert tile.shape == (chip.config.devices_per_tile,) and tile.dtype == np.float32
    # the very values the driver's own read gives: a chip of the same seed, read the same way
    twin = PcmChip(InProcessTransport("emulator", WireInterface(make_chip("tiny", seed=SEED))))
    np.testing.assert_array_equal(tile, twin.read_tile(0).ravel())
    before = chip.devices.g_prog[0].copy()
    driver.write(pulse_message(400.0))  # a pulse the driver's limits allow: sent, applied
    after = chip.devices.g_prog[0]
    healthy = chip.devices.stuck[0, :2] == 0
    assert (after[:2] != before[:2])[healthy].all()  # devices 0 and 1 melt-quenched
    np.testing.assert_array_equal(after[2:], before[2:])  # no other
    assert driver.query("SYST:ERR?") == '0,"No error"'  # an error entry asked for, returned
    # the chip's own errors, typed, from a command the table does not know and a bad query
    with pytest.raises(ChipError, match="-113") as refused:
        driver.write("DIAG:DUMP 1")
    assert refused.value.sent
    with pytest.raises(ChipError, match="-113"):
        driver.query("DIAG:DUMP?")
    assert driver.errors() == []  # each error read and cleared in its round trip


def test_an_out_of_limit_pulse_sent_raw_never_reaches_the_chip(tmp_path):
    """Checked against the chip's limits by the driver: nothing on the wire (the session's
    recording holds no pulse), nothing changed on the chip."""
    chip = make_chip("tiny", seed=2)
    transport = InProcessTransport("emulator", WireInterface(chip))
    cassette = tmp_path / "raw.cassette"
    driver = PcmChip(RecordingTransport.start(transport, cassette))
    state = chip.devices.snapshot()
    with pytest.raises(PulseLimitError, match="not sent") as refused:
        driver.write(pulse_message(5000.0))
    assert not refused.value.sent
    with pytest.raises(PulseLimitError):  # within a message of several units as well
        driver.write(b"*CLS;" + pulse_message(5000.0))
    with pytest.raises(ChipError, match="-222"):  # a tile the chip does not have
        driver.query("READ:TILE? 7")
    driver.close()
    for name, values in chip.devices.snapshot().items():
        np.testing.assert_array_equal(values, state[name], err_msg=name)
    written = b"".join(r.data for r in read_cassette(cassette).records if r.kind == "W")
    assert b"PULS" not in written and b"TILE? 7" not in written  # checked here, not sent
    assert written.startswith(b"*IDN?\n")  # the recording holds the session: its handshake


def test_raw_messages_are_one_message_and_say_what_they_ask(served):  # noqa: F811
    driver, _chip = served
    with pytest.raises(ValueError, match="asks for a reply"):
        driver.write("*IDN?")
    with pytest.raises(ValueError, match="asks for nothing"):
        driver.query("*CLS")
    with pytest.raises(ValueError, match="one program message"):
        driver.write("*CLS\n*RST")
    with pytest.raises(ValueError, match="not a binary block"):
        driver.query_block("*IDN?", "<f4")
    assert driver.query("*OPC?") == "1"  # nothing left unread by the refusals
