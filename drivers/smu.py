"""A 2400-class source-measure unit (Keithley 2400 SCPI): source a voltage, read the current.

For reading a PCM device on a probe station: ``configure_current_read(0.2, 1e-4, 1)``, then
``output_enabled = True`` and ``measure()`` → (volts, amps). Voltages in V, currents in A.
Every setting comes from the SMU's command table (``pcm_hil.protocols.smu``), the one the
emulated bench serves.
"""

from __future__ import annotations

from typing import ClassVar

from pcm_hil.drivers.instrument import Instrument, InstrumentReplyError, Property
from pcm_hil.protocols.smu import SMU_COMMANDS

__all__ = ["SourceMeter"]


class SourceMeter(Instrument):
    """A 2400-class SMU. ``voltage_limit_V`` bounds ``source_voltage_V`` (±210 V, the 2400's
    range): a subclass for a smaller model, or an instance guarding a fragile device, may
    lower it (``smu.voltage_limit_V = 2.0``) and larger levels are refused before sending.
    ``switch_channels`` bounds ``route`` (the switch matrix's channel count)."""

    label = "2400 SMU"
    table = SMU_COMMANDS
    limit_attributes: ClassVar[dict[str, str]] = {
        "source_voltage_max_V": "voltage_limit_V",
        "channels": "switch_channels",
    }

    #: The largest source voltage magnitude the driver sends, V.
    voltage_limit_V: float = 210.0
    #: Channels of the switch matrix on the SMU (1: no switch).
    switch_channels: int = 1

    source_function = Property("source_function")
    source_voltage_V = Property("source_voltage")
    compliance_current_A = Property("compliance_current")
    current_range_auto = Property("current_range_auto")
    current_range_A = Property("current_range")
    nplc = Property("nplc")
    output_enabled = Property("output")

    def configure_current_read(self, voltage_V: float, compliance_A: float, nplc: float) -> None:
        """Set up a current read at a fixed voltage: source voltage, sense current (auto
        range) with ``compliance_A`` and ``nplc``, readings as "volts,amps". The output is
        left as it is. Every value is checked before anything is sent; each command is
        followed by an error check, and the compliance is set before the level."""
        with self.lock:
            properties = self.properties()
            table = self.table
            commands = [
                properties["source_function"].command(self, "VOLT"),
                self.encode(table.by_handler("set_sense_function"), {"functions": "CURR"}),
                properties["compliance_current_A"].command(self, compliance_A),
                properties["current_range_auto"].command(self, True),
                properties["nplc"].command(self, nplc),
                self.encode(table.by_handler("set_elements"), {"elements": ("VOLT", "CURR")}),
                properties["source_voltage_V"].command(self, voltage_V),
            ]
            for command in commands:
                self.write(command)
                self.check_errors(command=command)

    def measure(self) -> tuple[float, float]:
        """One reading (``:READ?``): (volts, amps). Needs ``configure_current_read`` (the
        "VOLT,CURR" elements) and the output on."""
        values = self.ask("read")
        if len(values) != 2:
            raise InstrumentReplyError(
                f"{self.name}: reply {values!r} to :READ? is not 'volts,amps'"
                " (were the elements set to VOLT,CURR?)"
            )
        volts, amps = values
        return volts, amps

    def route(self, channel: int) -> None:
        """Close switch channel ``channel`` (1…``switch_channels``), opening the one closed
        before; checked before sending, then the error queue."""
        self.send("route_close", channels=(channel,))

    def disconnect_all(self) -> None:
        """Open every switch channel: pulses then reach nothing, a reading measures an open
        circuit."""
        self.send("route_open_all")
