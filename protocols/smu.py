"""The command table of a 2400-class source-measure unit (Keithley 2400 SCPI subset).

What a PCM bench needs of it: source a voltage, read the current through the device, a
current compliance, an integration time, the output switch — and the switch matrix that picks
one of N devices, which lives on the SMU (``ROUTe``, as on an SMU mainframe with a switch
card). The rows marked *emulator only* exist on the emulated bench (``pcm-hil emulator bench``)
and on no real 2400: the bench's virtual clock and its channel count.

Ranges are the instrument's (rounded from the 2400 data sheet) except the source voltage,
bounded by the limit ``source_voltage_max_V``: a driver sets it to the instrument's 210 V (or
lower, to guard a fragile device); the emulated bench to 1 V, a bench protection (at 1 V a
fully crystalline device carries ≈30 µA, below the crystallization threshold).
"""

from __future__ import annotations

from pcm_hil.protocols.common import common_commands
from pcm_hil.protocols.errors import ILLEGAL_PARAMETER_VALUE, SETTINGS_CONFLICT
from pcm_hil.protocols.table import (
    Arg,
    Command,
    CommandTable,
    Dialect,
    Reply,
    number_12g,
    number_nr3,
    setting,
)

#: How a 2400 writes: settings with 12 significant digits and ON/OFF, replies in NR3.
INSTRUMENT_DIALECT = Dialect(
    number=number_12g, reply_number=number_nr3, true_false=("ON", "OFF"), quote="'"
)

SOURCE = "Source"
SENSE = "Measurement"
OUTPUT = "Output and reading"
ROUTE = "Switch matrix"
CLOCK = "Clock (emulator only)"


SMU_COMMANDS = CommandTable(
    (
        *common_commands(
            reset_doc="Reset settings to power-on defaults: source 0 V, compliance 105 µA, auto "
            "range, 1 PLC, elements VOLT,CURR, output off, switch channel 1 closed.",
            self_test_doc="Self test: 0 (pass).",
        ),
        *setting(
            "SOURce:FUNCtion[:MODE]",
            "source_function",
            "What the SMU sources: a voltage or a current.",
            Arg("function", "enum", "Source function.", choices=("VOLTage", "CURRent")),
            spelling=":SOUR:FUNC",
            group=SOURCE,
            errors=(ILLEGAL_PARAMETER_VALUE,),
        ),
        *setting(
            "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
            "source_voltage",
            "The source voltage level.",
            Arg(
                "volts",
                "float",
                "Source voltage.",
                unit="V",
                minimum="-source_voltage_max_V",
                maximum="source_voltage_max_V",
                keywords=True,
            ),
            spelling=":SOUR:VOLT:LEV",
            group=SOURCE,
        ),
        Command(
            "[:SENSe]:FUNCtion[:ON]",
            "set_sense_function",
            "What the SMU measures: one or more quoted function names.",
            args=(
                Arg(
                    "functions",
                    "string",
                    "Measurement function.",
                    choices=(
                        "CURR",
                        "CURR:DC",
                        "CURRENT",
                        "CURRENT:DC",
                        "VOLT",
                        "VOLT:DC",
                        "VOLTAGE",
                        "VOLTAGE:DC",
                    ),
                    repeat=True,
                ),
            ),
            group=SENSE,
            spelling=":SENS:FUNC",
        ),
        Command(
            "[:SENSe]:FUNCtion[:ON]?",
            "sense_function",
            "The measurement function.",
            reply=Reply("string", 'Quoted function name, e.g. "CURR:DC".'),
            group=SENSE,
            spelling=":SENS:FUNC",
        ),
        *setting(
            "[:SENSe]:CURRent[:DC]:PROTection[:LEVel]",
            "compliance_current",
            "The current compliance (limit) while sourcing a voltage.",
            Arg(
                "amperes",
                "float",
                "Compliance.",
                unit="A",
                minimum=1e-9,
                maximum=1.05,
                keywords=True,
            ),
            spelling=":SENS:CURR:PROT",
            group=SENSE,
        ),
        *setting(
            "[:SENSe]:CURRent[:DC]:RANGe:AUTO",
            "current_range_auto",
            "Whether the current measurement range follows the reading.",
            Arg("state", "bool", "Auto range."),
            spelling=":SENS:CURR:RANG:AUTO",
            group=SENSE,
        ),
        *setting(
            "[:SENSe]:CURRent[:DC]:RANGe[:UPPer]",
            "current_range",
            "The current measurement range (setting it turns auto range off).",
            Arg("amperes", "float", "Range.", unit="A", minimum=1e-6, maximum=1.05, keywords=True),
            spelling=":SENS:CURR:RANG",
            group=SENSE,
        ),
        *setting(
            "[:SENSe]:CURRent[:DC]:NPLCycles",
            "nplc",
            "The current measurement's integration time, in power-line cycles.",
            Arg(
                "cycles",
                "float",
                "Integration time.",
                unit="PLC",
                minimum=0.01,
                maximum=10,
                keywords=True,
            ),
            spelling=":SENS:CURR:NPLC",
            group=SENSE,
        ),
        Command(
            "FORMat:ELEMents[:SENSe]",
            "set_elements",
            "What a reading holds, in this order: voltage and/or current.",
            args=(
                Arg("elements", "enum", "Element.", choices=("VOLTage", "CURRent"), repeat=True),
            ),
            group=OUTPUT,
            spelling=":FORM:ELEM",
        ),
        Command(
            "FORMat:ELEMents[:SENSe]?",
            "elements",
            "The elements of a reading.",
            reply=Reply("text", "Comma-separated: VOLT,CURR."),
            group=OUTPUT,
            spelling=":FORM:ELEM",
        ),
        *setting(
            "OUTPut#[:STATe]",
            "output",
            "Whether the output is on (sourcing).",
            Arg("state", "bool", "Output state."),
            spelling=":OUTP",
            group=OUTPUT,
        ),
        Command(
            "READ?",
            "read",
            "One reading through the routed device: the elements chosen by FORM:ELEM. Needs "
            "the output on (else -221). In compliance the current is the compliance and the "
            "voltage what the device then drops.",
            reply=Reply(
                "floats", "Volts and/or amperes, as FORM:ELEM says.", fields=("volts", "amperes")
            ),
            errors=(SETTINGS_CONFLICT,),
            group=OUTPUT,
            spelling=":READ",
        ),
        Command(
            "MEASure[:CURRent][:DC]?",
            "measure_current",
            "One current reading through the routed device (output on, else -221).",
            reply=Reply("float", "Current.", unit="A"),
            errors=(SETTINGS_CONFLICT,),
            group=OUTPUT,
            spelling=":MEAS:CURR",
        ),
        Command(
            "ROUTe:CLOSe",
            "route_close",
            "Connect one device (channel 1…N) to both instruments and disconnect the one "
            "connected before (a 1-of-N multiplexer).",
            args=(
                Arg("channels", "channels", "The channel, (@k).", minimum=1, maximum="channels"),
            ),
            errors=(ILLEGAL_PARAMETER_VALUE,),
            group=ROUTE,
            spelling=":ROUT:CLOS",
        ),
        Command(
            "ROUTe:CLOSe?",
            "route_closed",
            "The closed channel.",
            reply=Reply("channels", "(@k), or (@) with none closed."),
            group=ROUTE,
            spelling=":ROUT:CLOS",
        ),
        Command(
            "ROUTe:OPEN:ALL",
            "route_open_all",
            "Disconnect every device (pulses reach nothing; a reading measures an open circuit).",
            group=ROUTE,
            spelling=":ROUT:OPEN:ALL",
        ),
        Command(
            "ROUTe:COUNt?",
            "route_count",
            "Emulator only: the number of switch channels N.",
            reply=Reply("int", "N."),
            group=ROUTE,
            spelling=":ROUT:COUN",
        ),
        Command(
            "SYSTem:TIME?",
            "time",
            "Seconds on the bench's clock (on a 2400, the time stamp since power-on).",
            reply=Reply("float", "Time.", unit="s"),
            group=CLOCK,
            spelling=":SYST:TIME",
        ),
        Command(
            "SYSTem:TIME:ADVance",
            "advance",
            "Emulator only: advance the bench's virtual clock; refused (-221) in real time.",
            args=(Arg("seconds", "float", "Interval.", unit="s", minimum=0, maximum=1e12),),
            errors=(SETTINGS_CONFLICT,),
            group=CLOCK,
            spelling=":SYST:TIME:ADV",
        ),
        Command(
            "SYSTem:TIME:MODE?",
            "time_mode",
            "Emulator only: VIRTual (time moves by SYST:TIME:ADV) or REAL.",
            reply=Reply("enum", "VIRT or REAL.", choices=("VIRTual", "REAL")),
            group=CLOCK,
            spelling=":SYST:TIME:MODE",
        ),
    ),
    name="2400-class source-measure unit",
    dialect=INSTRUMENT_DIALECT,
)
