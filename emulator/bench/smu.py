"""The emulated 2400-class source-measure unit: the SMU's command table
(``pcm_hil.protocols.smu``) on the SCPI core, sourcing a voltage across the routed device and
measuring the current through it; with the bench's switch matrix and clock.

``READ?`` with the output on, sourcing V, returns the elements chosen by ``FORM:ELEM``
(``"<V>,<I>"`` by default) with I = G·V, G the device's read (drift, 1/f read noise), clipped
at the current compliance (and at the range when auto range is off); in compliance V is what
the device then drops. There is no instrument noise: the devices' read noise is orders of
magnitude above a 2400-class SMU's on these currents. Sourcing a current is not emulated
(``SOUR:FUNC CURR`` → -224).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pcm_hil.emulator.bench.devices import SOURCE_VOLTAGE_MAX_V, BenchDevices
from pcm_hil.emulator.chip import FIRMWARE_VERSION
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.device import ScpiDevice
from pcm_hil.protocols.errors import ILLEGAL_PARAMETER_VALUE, SETTINGS_CONFLICT, ScpiError
from pcm_hil.protocols.smu import SMU_COMMANDS


class SourceMeterEmulator(ScpiDevice):
    """A 2400-class SMU wired to the bench's devices (``dut``) through its switch."""

    defaults: ClassVar[dict[str, Any]] = {
        "source_function": "VOLT",
        "source_voltage": 0.0,
        "compliance_current": 105e-6,
        "current_range_auto": True,
        "current_range": 105e-6,
        "nplc": 1.0,
        "output": False,
    }

    def __init__(self, dut: BenchDevices) -> None:
        self.dut = dut
        limits = {"source_voltage_max_V": SOURCE_VOLTAGE_MAX_V, "channels": dut.count}
        super().__init__(SMU_COMMANDS, limits)
        self.reset_settings()

    @property
    def identity(self) -> Identity:
        return Identity("PCM-HIL", "EMULATED-SMU-2400", "EMU-SMU-0001", FIRMWARE_VERSION)

    def reset_settings(self) -> None:
        super().reset_settings()
        self.elements: tuple[str, ...] = ("VOLT", "CURR")
        self.dut.route(1)

    # --- source and measurement settings (the rest are plain: ``defaults``) -----------------

    def _do_set_source_function(self, function: str) -> None:
        if function != "VOLT":
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, "only voltage sourcing is emulated")
        self.settings["source_function"] = function

    def _do_set_sense_function(self, functions: tuple[str, ...]) -> None:
        return None  # the current is always measured; any listed function is accepted

    def _do_sense_function(self) -> str:
        return "CURR:DC"

    def _do_set_current_range(self, amperes: float) -> None:
        self.settings["current_range"] = amperes
        self.settings["current_range_auto"] = False

    def _do_set_elements(self, elements: tuple[str, ...]) -> None:
        self.elements = tuple(e for e in ("VOLT", "CURR") if e in elements)

    def _do_elements(self) -> str:
        return ",".join(self.elements)

    # --- readings ---------------------------------------------------------------------------

    def measurement(self) -> tuple[float, float]:
        """(V, I) across the routed device: I = G·V clipped at the compliance (and at the
        range when auto range is off); in compliance V is what the device then drops."""
        s = self.settings
        if not s["output"]:
            raise ScpiError(SETTINGS_CONFLICT, "output off: turn it on with :OUTP ON")
        g_S = self.dut.conductance_uS() * 1e-6
        voltage = s["source_voltage"]
        current = g_S * voltage
        limit = s["compliance_current"]
        if not s["current_range_auto"]:
            limit = min(limit, s["current_range"])
        if abs(current) > limit:
            current = float(np.copysign(limit, current))
            voltage = current / g_S
        return voltage, current

    def _do_read(self) -> tuple[float, ...]:
        voltage, current = self.measurement()
        values = {"VOLT": voltage, "CURR": current}
        return tuple(values[e] for e in self.elements)

    def _do_measure_current(self) -> float:
        return self.measurement()[1]

    # --- the switch matrix ------------------------------------------------------------------

    def _do_route_close(self, channels: tuple[int, ...]) -> None:
        if len(channels) != 1:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, "channel list (@k): one channel")
        self.dut.route(channels[0])

    def _do_route_closed(self) -> tuple[int, ...]:
        channel = self.dut.channel
        return () if channel is None else (channel,)

    def _do_route_open_all(self) -> None:
        self.dut.route(None)

    def _do_route_count(self) -> int:
        return self.dut.count

    # --- the bench's clock ------------------------------------------------------------------

    def _do_time(self) -> float:
        return self.dut.now()

    def _do_advance(self, seconds: float) -> None:
        if self.dut.clock_mode != "VIRT":
            raise ScpiError(SETTINGS_CONFLICT, "the bench runs on a real-time clock")
        self.dut.advance(seconds)

    def _do_time_mode(self) -> str:
        return self.dut.clock_mode
