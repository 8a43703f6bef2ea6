"""A 2400-class source-measure unit (Keithley 2400 SCPI): source a voltage, read the current.

For reading a PCM device on a probe station: ``configure_current_read(0.2, 1e-4, 1)``, then
``output_enabled = True`` and ``measure()`` → (volts, amps). Voltages in V, currents in A.
"""

from __future__ import annotations

from typing import ClassVar

from pcm_hil.drivers.instrument import (
    Instrument,
    InstrumentReplyError,
    Property,
    boolean,
    in_range,
    limit,
    one_of,
)

__all__ = ["SourceMeter"]


class SourceMeter(Instrument):
    """A 2400-class SMU. ``voltage_limit_V`` bounds ``source_voltage_V`` (±210 V, the 2400's
    range): a subclass for a smaller model, or an instance guarding a fragile device, may
    lower it (``smu.voltage_limit_V = 2.0``) and larger levels are refused before sending."""

    label = "2400 SMU"

    #: The largest source voltage magnitude the driver sends, V.
    voltage_limit_V: ClassVar[float] = 210.0

    source_function = Property(
        ":SOUR:FUNC?",
        ":SOUR:FUNC {}",
        "What the SMU sources: VOLT (voltage) or CURR (current).",
        one_of("VOLT", "CURR"),
    )
    source_voltage_V = Property(
        ":SOUR:VOLT:LEV?",
        ":SOUR:VOLT:LEV {}",
        "The source voltage level, V (within ±voltage_limit_V).",
        in_range(-limit("voltage_limit_V"), limit("voltage_limit_V")),
        unit="V",
    )
    compliance_current_A = Property(
        ":SENS:CURR:PROT?",
        ":SENS:CURR:PROT {}",
        "The current compliance (limit) while sourcing voltage, A.",
        in_range(1e-9, 1.05),
        unit="A",
    )
    current_range_auto = Property(
        ":SENS:CURR:RANG:AUTO?",
        ":SENS:CURR:RANG:AUTO {}",
        "Whether the current measurement range follows the reading.",
        boolean,
    )
    nplc = Property(
        ":SENS:CURR:NPLC?",
        ":SENS:CURR:NPLC {}",
        "The current measurement's integration time, in power-line cycles.",
        in_range(0.01, 10),
    )
    output_enabled = Property(
        ":OUTP?",
        ":OUTP {}",
        "Whether the output is on (sourcing).",
        boolean,
    )

    def configure_current_read(self, voltage_V: float, compliance_A: float, nplc: float) -> None:
        """Set up a current read at a fixed voltage: source voltage, sense current (auto
        range) with ``compliance_A`` and ``nplc``, readings as "volts,amps". The output is
        left as it is. Every value is checked before anything is sent; each command is
        followed by an error check, and the compliance is set before the level."""
        with self.lock:
            properties = self.properties()
            commands = [
                properties["source_function"].command(self, "VOLT"),
                ":SENS:FUNC 'CURR'",
                properties["compliance_current_A"].command(self, compliance_A),
                properties["current_range_auto"].command(self, True),
                properties["nplc"].command(self, nplc),
                ":FORM:ELEM VOLT,CURR",
                properties["source_voltage_V"].command(self, voltage_V),
            ]
            for command in commands:
                self.write(command)
                self.check_errors(command=command)

    def measure(self) -> tuple[float, float]:
        """One reading (``:READ?``): (volts, amps). Needs ``configure_current_read`` (the
        "VOLT,CURR" elements) and the output on."""
        reply = self.query(":READ?")
        fields = reply.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            volts, amps = (float(field) for field in fields)
        except ValueError:
            raise InstrumentReplyError(
                f"{self.name}: reply {reply!r} to :READ? is not 'volts,amps'"
                " (were the elements set to VOLT,CURR?)"
            ) from None
        return volts, amps
