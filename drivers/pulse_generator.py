"""An 81110A-class pulse generator (Agilent/Keysight 81110A SCPI), one channel per driver.

For programming a PCM device on a probe station: levels, width and edges of the pulse,
``arm_source = "MAN"`` and ``trigger()`` for one pulse. Voltages in V, times in s. Channel
commands carry the channel number (``:VOLT1:HIGH``); ``period_s`` and ``arm_source`` are
shared by both channels. Every setting comes from the generator's command table
(``pcm_hil.protocols.pulse_generator``), the one the emulated bench serves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pcm_hil.drivers.instrument import (
    Instrument,
    InstrumentRangeError,
    InstrumentTransport,
    Property,
)
from pcm_hil.protocols.pulse_generator import PULSE_GENERATOR_COMMANDS

__all__ = ["PulseGenerator"]


class PulseGenerator(Instrument):
    """An 81110A-class pulse generator, driving ``channel`` (1 or 2).

    The high level must stay above the low level: setting one queries the other and a
    setting that would cross it is refused before sending. ``set_levels`` sets both in the
    order that never crosses. ``high_level_max_V``/``low_level_max_V`` bound the levels (the
    output modules' widest window, ±10 V into high impedance; the instrument's own checks,
    read from its error queue, have the last word).
    """

    label = "81110A pulse generator"
    table = PULSE_GENERATOR_COMMANDS
    limit_attributes: ClassVar[dict[str, str]] = {
        "high_level_max_V": "high_level_max_V",
        "low_level_max_V": "low_level_max_V",
        "channels": "channels",
    }

    high_level_max_V: float = 10.0
    low_level_max_V: float = 10.0
    channels: int = 2

    high_level_V = Property("high_level")
    low_level_V = Property("low_level")
    width_s = Property("width")
    period_s = Property("period")
    leading_edge_s = Property("leading_edge")
    trailing_edge_s = Property("trailing_edge")
    output_enabled = Property("output")
    arm_source = Property("arm_source")

    def __init__(
        self,
        resource: str,
        *,
        channel: int = 1,
        visa_library: str | None = None,
        timeout_s: float = 5.0,
        transport: InstrumentTransport | None = None,
    ) -> None:
        if channel not in (1, 2) or isinstance(channel, bool):
            raise ValueError(f"channel must be 1 or 2, not {channel!r}")
        self.channel = channel
        self.suffix = channel
        super().__init__(
            resource, visa_library=visa_library, timeout_s=timeout_s, transport=transport
        )

    @property
    def name(self) -> str:
        return f"{super().name} channel {self.channel}"

    def check_setting(self, name: str, value: Any) -> None:
        """High level above low level: the other level is read from the instrument."""
        if name == "high_level_V":
            low = self.low_level_V
            if not value > low:
                raise InstrumentRangeError(
                    f"{self.name}: high_level_V = {value:g} V refused (not sent): not above"
                    f" the low level {low:g} V",
                    name=name,
                    value=value,
                    allowed=f"> {low:g} V",
                )
        elif name == "low_level_V":
            high = self.high_level_V
            if not value < high:
                raise InstrumentRangeError(
                    f"{self.name}: low_level_V = {value:g} V refused (not sent): not below"
                    f" the high level {high:g} V",
                    name=name,
                    value=value,
                    allowed=f"< {high:g} V",
                )

    def set_levels(self, high_V: float, low_V: float) -> None:
        """Set both levels, in the order that keeps high above low at every step."""
        properties = self.properties()
        high_row = properties["high_level_V"].setting_row
        low_row = properties["low_level_V"].setting_row
        assert high_row is not None and low_row is not None  # both are settings
        self.encode(high_row, {"volts": high_V}, _as="high_level_V")
        self.encode(low_row, {"volts": low_V}, _as="low_level_V")
        if not high_V > low_V:
            raise InstrumentRangeError(
                f"{self.name}: levels {high_V:g} V / {low_V:g} V refused (not sent): the high"
                " level must be above the low level",
                name="high_level_V",
                value=high_V,
                allowed=f"> {low_V:g} V",
            )
        with self.lock:
            if high_V > self.low_level_V:
                self.high_level_V = high_V
                self.low_level_V = low_V
            else:  # below the present low level: lower the low level first
                self.low_level_V = low_V
                self.high_level_V = high_V

    def trigger(self) -> None:
        """``*TRG``: one pulse (burst) with ``arm_source`` MAN. The error check after it is
        also a round trip: when it returns the generator has taken the trigger, so a read on
        another instrument comes after the pulse."""
        self.send("trigger")
