"""A plain pyvisa client — not the project's driver — talks to the served emulator."""

from __future__ import annotations

import numpy as np
import pyvisa


def test_plain_pyvisa_client(tcp_server, tiny_chip):
    manager = pyvisa.ResourceManager("@py")
    instrument = manager.open_resource(
        tcp_server.resource, read_termination="\n", write_termination="\n", timeout=5000
    )
    try:
        assert instrument.query("*IDN?") == "PCM-HIL,PCM-EMULATOR,EMU-0001,0.1.0"
        values = instrument.query_binary_values(
            "READ:TILE? 0", datatype="f", is_big_endian=False, container=np.array
        )
        assert values.shape == (256,)
        programmed = tiny_chip.devices.g_prog[0]
        healthy = tiny_chip.devices.stuck[0] == 0
        assert np.median(np.abs(values[healthy] / programmed[healthy] - 1)) < 0.5
        instrument.write("NOT:A:COMMand")
        assert instrument.query("SYST:ERR?") == '-113,"Undefined header;NOT:A:COMMand"'
        assert instrument.query("SYST:ERR?") == '0,"No error"'
        instrument.write_binary_values("READ:DEV? 0,", [1, 2, 3], datatype="I", is_big_endian=False)
        three = instrument.read_binary_values(datatype="f", is_big_endian=False, container=np.array)
        assert three.shape == (3,) and np.all(three >= tiny_chip.config.model.g_floor_uS)
        assert instrument.query("SYST:ERR?") == '0,"No error"'
    finally:
        instrument.close()
