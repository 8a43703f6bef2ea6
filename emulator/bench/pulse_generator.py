"""The emulated 81110A-class pulse generator: the generator's command table
(``pcm_hil.protocols.pulse_generator``) on the SCPI core, channel 1, wired through the series
resistor to the routed device. ``*TRG`` fires one pulse when the arm source is MANual and
the output is on.

Protection (as the 81110A's voltage limits, fixed on): the high level may not exceed the
level of the devices' safe current (``VOLT1:LIM?``, 0.6 V at 600 µA and 1 kΩ) — a higher
setting is refused with -222 and the level is left as it was. At ``*TRG`` the width must lie
within the devices' safe widths (else -222) and below the period (else -221); then the pulse
is applied. Continuous pulsing (``ARM:SOUR IMM``) is not emulated: turning the output on in
IMM, or IMM with the output on, is refused (-221). Edges are kept, not modelled; so is
polarity (a negative high level drives |V|/R_series).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pcm_hil.emulator.bench.devices import LOW_LEVEL_MAX_V, BenchDevices
from pcm_hil.emulator.chip import FIRMWARE_VERSION
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.device import ScpiDevice
from pcm_hil.protocols.errors import DATA_OUT_OF_RANGE, SETTINGS_CONFLICT, ScpiError
from pcm_hil.protocols.pulse_generator import PULSE_GENERATOR_COMMANDS


class PulseGeneratorEmulator(ScpiDevice):
    """An 81110A-class generator, one channel, driving the bench's devices (``dut``)."""

    defaults: ClassVar[dict[str, Any]] = {
        "high_level": 0.1,
        "low_level": 0.0,
        "width": 100e-9,
        "period": 1e-6,
        "leading_edge": 2e-9,
        "trailing_edge": 2e-9,
        "output": False,
        "arm_source": "IMM",
    }

    def __init__(self, dut: BenchDevices) -> None:
        self.dut = dut
        limits = {
            "high_level_max_V": dut.high_level_max_V,
            "low_level_max_V": LOW_LEVEL_MAX_V,
            "channels": 1,
        }
        super().__init__(PULSE_GENERATOR_COMMANDS, limits)
        self.reset_settings()

    @property
    def identity(self) -> Identity:
        return Identity("PCM-HIL", "EMULATED-PULSE-81110", "EMU-PG-0001", FIRMWARE_VERSION)

    def reset_settings(self) -> None:
        super().reset_settings()
        self.triggers = 0

    # --- settings with rules (the rest are plain: ``defaults``) ----------------------------------

    def _do_set_high_level(self, volts: float) -> None:
        if volts <= self.settings["low_level"]:
            raise ScpiError(SETTINGS_CONFLICT, "high level must lie above the low level")
        self.settings["high_level"] = volts

    def _do_set_low_level(self, volts: float) -> None:
        if volts >= self.settings["high_level"]:
            raise ScpiError(SETTINGS_CONFLICT, "low level must lie below the high level")
        self.settings["low_level"] = volts

    def _do_high_level_limit(self) -> float:
        return self.dut.high_level_max_V

    def _do_set_output(self, state: bool) -> None:
        if state and self.settings["arm_source"] == "IMM":
            raise ScpiError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: arm MAN"
            )
        self.settings["output"] = state

    def _do_set_arm_source(self, source: str) -> None:
        if source == "IMM" and self.settings["output"]:
            raise ScpiError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: output on"
            )
        self.settings["arm_source"] = source

    def _do_trigger(self) -> None:
        """One pulse into the routed device, after the checks (module docstring)."""
        s = self.settings
        if s["arm_source"] != "MAN":
            raise ScpiError(SETTINGS_CONFLICT, f"*TRG needs ARM:SOUR MAN (is {s['arm_source']})")
        if not s["output"]:
            raise ScpiError(SETTINGS_CONFLICT, "output off: the pulse would reach nothing")
        low_ns, high_ns = self.dut.width_limits_ns
        width_ns = s["width"] * 1e9
        if not low_ns <= width_ns <= high_ns:
            raise ScpiError(
                DATA_OUT_OF_RANGE,
                f"pulse width {width_ns:g} ns outside the device's safe {low_ns:g}...{high_ns:g} ns",
            )
        if s["width"] >= s["period"]:
            raise ScpiError(SETTINGS_CONFLICT, "pulse width must be below the period")
        current = self.dut.current_uA(s["high_level"])
        if current > self.dut.current_max_uA * (1 + 1e-9):
            raise ScpiError(
                DATA_OUT_OF_RANGE,
                f"pulse current {current:g} uA above the safe {self.dut.current_max_uA:g} uA",
            )
        self.dut.pulse(s["high_level"], s["width"])
        self.triggers += 1

    def _do_trigger_immediate(self) -> None:
        self._do_trigger()
