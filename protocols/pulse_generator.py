"""The command table of an 81110A-class pulse generator (Agilent/Keysight 81110A SCPI subset).

What a PCM bench needs of it: the levels, width, period and edges of a pulse, the output
switch, and one pulse on ``*TRG`` with the arm source MANual. Channel commands carry the
channel number (``:VOLT1:HIGH``; ``#`` in a header, 1 when absent, at most ``channels``);
the period and the arm source are shared by the channels.

Ranges are the instrument's (rounded from the 81110A data sheet, 330 MHz output modules)
except the levels, bounded by the limits ``high_level_max_V`` and ``low_level_max_V``: a
driver sets them to the modules' ±10 V; the emulated bench to the level of its devices' safe
current through its series resistor (0.6 V) and to ±20 mV (a base level that never disturbs
a device).
"""

from __future__ import annotations

from pcm_hil.protocols.common import common_commands
from pcm_hil.protocols.errors import DATA_OUT_OF_RANGE, SETTINGS_CONFLICT
from pcm_hil.protocols.smu import INSTRUMENT_DIALECT
from pcm_hil.protocols.table import Arg, Command, CommandTable, Reply, setting

LEVELS = "Levels"
TIMING = "Timing"
OUTPUT = "Output and trigger"

#: Pulse width, s [81110A data sheet: 1.5 ns … 999 s at 330 MHz; rounded, and capped at 1 s].
WIDTH_S = (1e-9, 1.0)
#: Pulse period, s [81110A data sheet: 3.03 ns … 999.5 s; rounded to 10 ns … 999 s].
PERIOD_S = (1e-8, 999.0)
#: Leading and trailing transition times, s [81112A module: 0.8 ns … 200 ms].
EDGE_S = (0.8e-9, 0.2)


def _seconds(name: str, doc: str, bounds: tuple[float, float]) -> Arg:
    return Arg(name, "float", doc, unit="s", minimum=bounds[0], maximum=bounds[1], keywords=True)


PULSE_GENERATOR_COMMANDS = CommandTable(
    (
        *common_commands(
            reset_doc="Reset settings to power-on defaults: high level 0.1 V, low level 0 V, "
            "width 100 ns, period 1 µs, edges 2 ns, output off, arm source IMMediate.",
            self_test_doc="Self test: 0 (pass).",
        ),
        *setting(
            "[:SOURce]:VOLTage#[:LEVel][:IMMediate]:HIGH",
            "high_level",
            "The pulse's high level; it must stay above the low level (else -221).",
            Arg(
                "volts",
                "float",
                "High level.",
                unit="V",
                minimum="-high_level_max_V",
                maximum="high_level_max_V",
                keywords=True,
            ),
            spelling=":VOLT#:HIGH",
            group=LEVELS,
            errors=(SETTINGS_CONFLICT,),
            suffix_max="channels",
        ),
        *setting(
            "[:SOURce]:VOLTage#[:LEVel][:IMMediate]:LOW",
            "low_level",
            "The pulse's low (base) level; it must stay below the high level (else -221).",
            Arg(
                "volts",
                "float",
                "Low level.",
                unit="V",
                minimum="-low_level_max_V",
                maximum="low_level_max_V",
                keywords=True,
            ),
            spelling=":VOLT#:LOW",
            group=LEVELS,
            errors=(SETTINGS_CONFLICT,),
            suffix_max="channels",
        ),
        Command(
            "[:SOURce]:VOLTage#:LIMit[:HIGH]?",
            "high_level_limit",
            "Emulator only: the largest high level the bench allows (its devices' safe current "
            "through the series resistor).",
            reply=Reply("float", "Level limit.", unit="V"),
            group=LEVELS,
            spelling=":VOLT#:LIM",
            suffix_max="channels",
        ),
        *setting(
            "[:SOURce]:PULSe:WIDTh#",
            "width",
            "The pulse width.",
            _seconds("seconds", "Width.", WIDTH_S),
            spelling=":PULS:WIDT#",
            group=TIMING,
            suffix_max="channels",
        ),
        *setting(
            "[:SOURce]:PULSe:PERiod#",
            "period",
            "The pulse period (shared by the channels).",
            _seconds("seconds", "Period.", PERIOD_S),
            spelling=":PULS:PER",
            group=TIMING,
            suffix_max="channels",
        ),
        *setting(
            "[:SOURce]:PULSe:TRANsition#[:LEADing]",
            "leading_edge",
            "The leading-edge transition time.",
            _seconds("seconds", "Leading edge.", EDGE_S),
            spelling=":PULS:TRAN#:LEAD",
            group=TIMING,
            suffix_max="channels",
        ),
        *setting(
            "[:SOURce]:PULSe:TRANsition#:TRAiling",
            "trailing_edge",
            "The trailing-edge transition time.",
            _seconds("seconds", "Trailing edge.", EDGE_S),
            spelling=":PULS:TRAN#:TRA",
            group=TIMING,
            suffix_max="channels",
        ),
        *setting(
            "OUTPut#[:STATe]",
            "output",
            "Whether the channel's output is on.",
            Arg("state", "bool", "Output state."),
            spelling=":OUTP#",
            group=OUTPUT,
            errors=(SETTINGS_CONFLICT,),
            suffix_max="channels",
        ),
        *setting(
            "ARM:SOURce",
            "arm_source",
            "What starts pulses: MANual (*TRG or the front panel), IMMediate (free running), "
            "EXTernal (the external input).",
            Arg("source", "enum", "Arm source.", choices=("IMMediate", "MANual", "EXTernal")),
            spelling=":ARM:SOUR",
            group=OUTPUT,
            errors=(SETTINGS_CONFLICT,),
        ),
        Command(
            "*TRG",
            "trigger",
            "One pulse (burst) with the arm source MANual and the output on (else -221); the "
            "width must lie below the period (-221).",
            errors=(SETTINGS_CONFLICT, DATA_OUT_OF_RANGE),
            group=OUTPUT,
        ),
        Command(
            "TRIGger[:IMMediate]",
            "trigger_immediate",
            "The same as *TRG.",
            errors=(SETTINGS_CONFLICT, DATA_OUT_OF_RANGE),
            group=OUTPUT,
            spelling=":TRIG",
        ),
    ),
    name="81110A-class pulse generator",
    dialect=INSTRUMENT_DIALECT,
)
