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

from pcm_hil.emulator.bench.devices import LOW_LEVEL_MAX_V, BenchDevices
from pcm_hil.emulator.chip import FIRMWARE_VERSION
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.device import ScpiDevice
from pcm_hil.protocols.errors import DATA_OUT_OF_RANGE, SETTINGS_CONFLICT, ScpiError
from pcm_hil.protocols.pulse_generator import PULSE_GENERATOR_COMMANDS


class PulseGeneratorEmulator(ScpiDevice):
    """An 81110A-class generator, one channel, driving the bench's devices (``dut``)."""

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
        self.high_V = 0.1
        self.low_V = 0.0
        self.width_s = 100e-9
        self.period_s = 1e-6
        self.leading_s = 2e-9
        self.trailing_s = 2e-9
        self.output_on = False
        self.arm_source = "IMM"
        self.triggers = 0

    # --- levels ---------------------------------------------------------------------------------

    def _do_set_high_level(self, volts: float) -> None:
        if volts <= self.low_V:
            raise ScpiError(SETTINGS_CONFLICT, "high level must lie above the low level")
        self.high_V = volts

    def _do_high_level(self) -> float:
        return self.high_V

    def _do_set_low_level(self, volts: float) -> None:
        if volts >= self.high_V:
            raise ScpiError(SETTINGS_CONFLICT, "low level must lie below the high level")
        self.low_V = volts

    def _do_low_level(self) -> float:
        return self.low_V

    def _do_high_level_limit(self) -> float:
        return self.dut.high_level_max_V

    # --- timing ---------------------------------------------------------------------------------

    def _do_set_width(self, seconds: float) -> None:
        self.width_s = seconds

    def _do_width(self) -> float:
        return self.width_s

    def _do_set_period(self, seconds: float) -> None:
        self.period_s = seconds

    def _do_period(self) -> float:
        return self.period_s

    def _do_set_leading_edge(self, seconds: float) -> None:
        self.leading_s = seconds

    def _do_leading_edge(self) -> float:
        return self.leading_s

    def _do_set_trailing_edge(self, seconds: float) -> None:
        self.trailing_s = seconds

    def _do_trailing_edge(self) -> float:
        return self.trailing_s

    # --- output and trigger -----------------------------------------------------------------------

    def _do_set_output(self, state: bool) -> None:
        if state and self.arm_source == "IMM":
            raise ScpiError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: arm MAN"
            )
        self.output_on = state

    def _do_output(self) -> bool:
        return self.output_on

    def _do_set_arm_source(self, source: str) -> None:
        if source == "IMM" and self.output_on:
            raise ScpiError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: output on"
            )
        self.arm_source = source

    def _do_arm_source(self) -> str:
        return self.arm_source

    def _do_trigger(self) -> None:
        """One pulse into the routed device, after the checks (module docstring)."""
        if self.arm_source != "MAN":
            raise ScpiError(SETTINGS_CONFLICT, f"*TRG needs ARM:SOUR MAN (is {self.arm_source})")
        if not self.output_on:
            raise ScpiError(SETTINGS_CONFLICT, "output off: the pulse would reach nothing")
        low_ns, high_ns = self.dut.width_limits_ns
        width_ns = self.width_s * 1e9
        if not low_ns <= width_ns <= high_ns:
            raise ScpiError(
                DATA_OUT_OF_RANGE,
                f"pulse width {width_ns:g} ns outside the device's safe {low_ns:g}...{high_ns:g} ns",
            )
        if self.width_s >= self.period_s:
            raise ScpiError(SETTINGS_CONFLICT, "pulse width must be below the period")
        current = self.dut.current_uA(self.high_V)
        if current > self.dut.current_max_uA * (1 + 1e-9):
            raise ScpiError(
                DATA_OUT_OF_RANGE,
                f"pulse current {current:g} uA above the safe {self.dut.current_max_uA:g} uA",
            )
        self.dut.pulse(self.high_V, self.width_s)
        self.triggers += 1

    def _do_trigger_immediate(self) -> None:
        self._do_trigger()
