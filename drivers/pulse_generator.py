"""An 81110A-class pulse generator (Agilent/Keysight 81110A SCPI), one channel per driver.

For programming a PCM device on a probe station: levels, width and edges of the pulse,
``arm_source = "MAN"`` and ``trigger()`` for one pulse. Voltages in V, times in s. Channel
commands carry the channel number (``:VOLT1:HIGH``); ``period_s`` and ``arm_source`` are
shared by both channels.
"""

from __future__ import annotations

from typing import Any

from pcm_hil.drivers.instrument import (
    Instrument,
    InstrumentRangeError,
    InstrumentTransport,
    Property,
    boolean,
    in_range,
    one_of,
)

__all__ = ["PulseGenerator"]

#: The level window the driver allows, V (the output modules' widest, into high impedance;
#: the instrument's own checks, read from its error queue, have the last word).
LEVEL_V = (-10.0, 10.0)
#: The transition times the driver allows, s (the same: the widest window of the modules).
EDGE_S = (0.8e-9, 0.2)


class PulseGenerator(Instrument):
    """An 81110A-class pulse generator, driving ``channel`` (1 or 2).

    The high level must stay above the low level: setting one queries the other and a
    setting that would cross it is refused before sending. ``set_levels`` sets both in the
    order that never crosses.
    """

    label = "81110A pulse generator"

    high_level_V = Property(
        ":VOLT{ch}:HIGH?",
        ":VOLT{ch}:HIGH {}",
        "The pulse's high level, V (above the low level).",
        in_range(*LEVEL_V),
        unit="V",
    )
    low_level_V = Property(
        ":VOLT{ch}:LOW?",
        ":VOLT{ch}:LOW {}",
        "The pulse's low (base) level, V (below the high level).",
        in_range(*LEVEL_V),
        unit="V",
    )
    width_s = Property(
        ":PULS:WIDT{ch}?",
        ":PULS:WIDT{ch} {}",
        "The pulse width, s.",
        in_range(1e-9, 1.0),
        unit="s",
    )
    period_s = Property(
        ":PULS:PER?",
        ":PULS:PER {}",
        "The pulse period (both channels), s.",
        in_range(1e-8, 1e3),
        unit="s",
    )
    leading_edge_s = Property(
        ":PULS:TRAN{ch}:LEAD?",
        ":PULS:TRAN{ch}:LEAD {}",
        "The leading-edge transition time, s.",
        in_range(*EDGE_S),
        unit="s",
    )
    trailing_edge_s = Property(
        ":PULS:TRAN{ch}:TRA?",
        ":PULS:TRAN{ch}:TRA {}",
        "The trailing-edge transition time, s.",
        in_range(*EDGE_S),
        unit="s",
    )
    output_enabled = Property(
        ":OUTP{ch}?",
        ":OUTP{ch} {}",
        "Whether the channel's output is on.",
        boolean,
    )
    arm_source = Property(
        ":ARM:SOUR?",
        ":ARM:SOUR {}",
        "What starts pulses: MAN (trigger() or the front panel), IMM (free running), "
        "EXT (the external input).",
        one_of("MAN", "IMM", "EXT"),
    )

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
        super().__init__(
            resource, visa_library=visa_library, timeout_s=timeout_s, transport=transport
        )

    @property
    def name(self) -> str:
        return f"{super().name} channel {self.channel}"

    def command_fields(self) -> dict[str, Any]:
        return {"ch": self.channel}

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
        properties["high_level_V"].validate(self, high_V)
        properties["low_level_V"].validate(self, low_V)
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
        with self.lock:
            self.write("*TRG")
            self.check_errors(command="*TRG")
