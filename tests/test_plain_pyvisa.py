"""A plain pyvisa client — not the project's drivers — talks to every emulated instrument
served by the one TCP server: the chip, the source-measure unit and the pulse generator. The
same checks pass on all three: one SCPI core behind them."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import pyvisa

from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.bench import EmulatedBench
from pcm_hil.emulator.servers.tcp import TcpServer


@contextmanager
def plain_client(resource: str):
    manager = pyvisa.ResourceManager("@py")
    instrument = manager.open_resource(
        resource, read_termination="\n", write_termination="\n", timeout=5000
    )
    try:
        yield instrument
    finally:
        instrument.close()


def served(name: str):
    """(device, its TcpServer) for ``name``, a setting (command, value, query) and a value
    out of its range."""
    if name == "chip":
        device = WireInterface(make_chip("tiny", seed=1))
        return device, ("TEMP", "350", "TEMP?"), "TEMP 900"
    bench = EmulatedBench(devices=4, seed=1)
    if name == "smu":
        return bench.smu, (":SENS:CURR:NPLC", "2", ":SENS:CURR:NPLC?"), ":SENS:CURR:NPLC 50"
    return bench.pulse_generator, (":PULS:WIDT1", "2e-07", ":PULS:WIDT1?"), ":PULS:WIDT 5"


@pytest.mark.parametrize("name", ["chip", "smu", "pulse"])
def test_the_same_plain_pyvisa_checks_pass_on_every_instrument(name):
    device, (setting, value, query), out_of_range = served(name)
    with TcpServer(device) as server, plain_client(server.resource) as instrument:
        identity = instrument.query("*IDN?").split(",")
        assert len(identity) == 4 and identity[0] == "PCM-HIL"
        instrument.write("*CLS")
        assert instrument.query("SYST:ERR?") == '0,"No error"'
        # a setting and its query, in short and long forms, leading colon or not
        instrument.write(f"{setting} {value}")
        assert float(instrument.query(query)) == pytest.approx(float(value))
        assert instrument.query("SYST:ERR:COUN?") == "0"
        # an unknown header, a value out of range: queued in order, the status bits set
        instrument.write("NOT:A:COMMand")
        instrument.write(out_of_range)
        assert instrument.query("*STB?") == "4"  # error queue not empty
        assert instrument.query("SYSTem:ERRor:COUNt?") == "2"
        assert instrument.query("SYST:ERR?") == '-113,"Undefined header;NOT:A:COMMand"'
        assert instrument.query(":SYSTEM:ERROR:NEXT?").startswith('-222,"Data out of range;')
        assert instrument.query("SYST:ERR?") == '0,"No error"'
        assert int(instrument.query("*ESR?")) == 0x20 | 0x10  # command and execution error
        assert instrument.query("*ESR?") == "0"  # read and cleared
        # the rejected setting changed nothing; several queries in one message
        reply = instrument.query(f"{query};*OPC?")
        assert reply.split(";")[1] == "1"
        assert float(reply.split(";")[0]) == pytest.approx(float(value))
        instrument.write("*ESE 32;*OPC")
        assert instrument.query("*ESE?") == "32" and instrument.query("*ESR?") == "1"
        assert instrument.query("SYST:VERS?") == "1999.0"
        assert instrument.query("*TST?") == "0"


def test_plain_pyvisa_reads_and_writes_chip_blocks(tcp_server, tiny_chip):
    with plain_client(tcp_server.resource) as instrument:
        assert instrument.query("*IDN?") == "PCM-HIL,PCM-EMULATOR,EMU-0001,0.1.0"
        values = instrument.query_binary_values(
            "READ:TILE? 0", datatype="f", is_big_endian=False, container=np.array
        )
        assert values.shape == (256,)
        # the devices' noise-free conductance now (drifted since programming), and the read
        # noise's relative std: the residuals in units of it are a standard normal's, whose
        # median |z| is 0.674 (± 0.15 here: 3 standard errors, 0.5/(√n·2φ(0.674)), n ≈ 250)
        devices = tiny_chip.devices
        t_now = tiny_chip.equivalent_time()
        now = devices.drifted(0, np.arange(256), t_now)
        m = devices.model
        elapsed = np.maximum(t_now - devices.t_prog[0], m.read_noise_t_min_s)
        sigma = devices.q_s[0] * np.sqrt(np.log(elapsed / (2 * m.read_noise_t_read_s)))
        kept = (devices.stuck[0] == 0) & (now > 3 * devices.model.g_floor_uS)
        assert kept.sum() > 200
        z = (values[kept] / now[kept] - 1) / sigma[kept]
        assert abs(np.median(np.abs(z)) - 0.674) < 0.15
        instrument.write_binary_values("READ:DEV? 0,", [1, 2, 3], datatype="I", is_big_endian=False)
        three = instrument.read_binary_values(datatype="f", is_big_endian=False, container=np.array)
        assert three.shape == (3,) and np.all(three >= tiny_chip.config.model.g_floor_uS)
        assert instrument.query("SYST:ERR?") == '0,"No error"'


def test_channel_suffixes_on_the_pulse_generator():
    """A suffix on a node that takes one: 1 (or absent) is the channel, 2 is out of range on
    the emulated one-channel generator (-114); a suffix where none is allowed is -113."""
    bench = EmulatedBench(devices=2)
    with TcpServer(bench.pulse_generator) as server, plain_client(server.resource) as pg:
        pg.write(":VOLT1:HIGH 0.3;:VOLTAGE:LOW 0.01")
        assert float(pg.query(":VOLT:HIGH?")) == pytest.approx(0.3)
        assert float(pg.query("SOUR:VOLT1:LEV:IMM:LOW?")) == pytest.approx(0.01)
        pg.write(":VOLT2:HIGH 0.2")
        assert pg.query("SYST:ERR?").startswith('-114,"Header suffix out of range')
        pg.write(":ARM1:SOUR MAN")
        assert pg.query("SYST:ERR?").startswith('-113,"Undefined header')
        pg.write(":PULS:WIDT MAX")  # keywords name the bounds
        assert float(pg.query(":PULS:WIDT?")) == pytest.approx(1.0)
        assert pg.query("SYST:ERR?") == '0,"No error"'
