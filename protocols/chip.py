"""The PCM test chip's command table: one row per command, in the order of the specification;
its own error codes; and ``ChipInfo``, what a chip reports of itself, field by field.

Units on the wire are ASCII: uS (microsiemens), uA (microamperes), ns, s, V, K.
Addresses are flat device indices within a tile, ``row * columns + column`` (row-major).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pcm_hil.protocols.common import Identity, common_commands
from pcm_hil.protocols.errors import (
    BATCH_TOO_LARGE,
    DATA_OUT_OF_RANGE,
    DUPLICATE_ADDRESS,
    EXECUTION_ERROR,
    LENGTH_MISMATCH,
    OUT_OF_MEMORY,
)
from pcm_hil.protocols.table import Arg, Command, CommandTable, Length, Reply

#: The chip's own error codes (positive, device-specific), with their messages.
PULSE_OUTSIDE_LIMITS = 101
VIRTUAL_CLOCK_UNAVAILABLE = 104
CHIP_BUSY = 105
CHIP_ERRORS: dict[int, str] = {
    PULSE_OUTSIDE_LIMITS: "Pulse outside safe limits",
    LENGTH_MISMATCH: "Array length mismatch",
    DUPLICATE_ADDRESS: "Duplicate address in one command",
    VIRTUAL_CLOCK_UNAVAILABLE: "Virtual clock not available",
    CHIP_BUSY: "Chip busy",
    BATCH_TOO_LARGE: "Batch too large",
}

#: Protocol version, MAJOR.MINOR. A driver refuses a chip whose MAJOR differs from its own;
#: MINOR grows when commands are added without changing existing ones.
PROTOCOL_VERSION = "1.1"

TILE = Arg("tile", "int", "Tile index.", minimum=0, maximum="tiles-1")
ADDRESSES = Arg(
    "addresses",
    "block",
    "Device addresses within the tile, row * columns + column.",
    dtype="<u4",
    minimum=0,
    maximum="devices_per_tile-1",
)

#: A window of a tile: the rows row_start … row_start+row_count−1 and likewise columns.
WINDOW = (
    Arg("row_start", "int", "First row of the window.", minimum=0, maximum="rows-1"),
    Arg("row_count", "int", "Rows in the window.", minimum=1, maximum="rows-row_start"),
    Arg("column_start", "int", "First column of the window.", minimum=0, maximum="columns-1"),
    Arg("column_count", "int", "Columns in the window.", minimum=1, maximum="columns-column_start"),
)

PULSED_ADDRESSES = replace(ADDRESSES, unique=True)

COMMANDS = CommandTable(
    (
        *common_commands(
            reset_doc="Reset settings to power-on defaults: temperature setpoint to ambient, "
            "event-status enable to 0. Device conductances are non-volatile and are not "
            "changed; the clock keeps running.",
            self_test_doc="Self test: 0 when the chip's configuration and state are consistent.",
        ),
        Command(
            "SYSTem:PROTocol?",
            "protocol_version",
            "The version of this protocol, MAJOR.MINOR.",
            reply=Reply("text", "e.g. 1.0.", fields=("protocol_version",)),
            group="System",
        ),
        # --- Chip configuration -------------------------------------------------------------
        Command(
            "CHIP:GEOMetry?",
            "geometry",
            "Array geometry.",
            reply=Reply("ints", "tiles,rows,columns.", fields=("tiles", "rows", "columns")),
            group="Chip configuration",
        ),
        Command(
            "CHIP:GMAX?",
            "g_max",
            "The largest reliably programmed conductance, the top of the weight range.",
            reply=Reply("float", "g_max.", unit="uS", fields=("g_max_uS",)),
            group="Chip configuration",
        ),
        Command(
            "CHIP:LIMits?",
            "pulse_limits",
            "Safe pulse limits. Pulses outside them are refused with error 101 and never applied.",
            reply=Reply(
                "floats",
                "amplitude_max (uA), width_min (ns), width_max (ns).",
                fields=("pulse_amplitude_max_uA", "pulse_width_min_ns", "pulse_width_max_ns"),
            ),
            group="Chip configuration",
        ),
        Command(
            "CHIP:TEMPerature:LIMits?",
            "temperature_limits",
            "Range of the temperature setpoint.",
            reply=Reply(
                "floats",
                "minimum (K), maximum (K).",
                fields=("temperature_min_K", "temperature_max_K"),
            ),
            group="Chip configuration",
        ),
        Command(
            "READ:VOLTage?",
            "read_voltage",
            "The read voltage applied to a device for a conductance read; also the full-scale "
            "input of the MVM DAC.",
            reply=Reply("float", "Read voltage.", unit="V", fields=("read_voltage_V",)),
            group="Chip configuration",
        ),
        Command(
            "MVM:RESolution?",
            "mvm_resolution",
            "Resolution of the MVM input DAC and output ADC.",
            reply=Reply("ints", "dac_bits,adc_bits.", fields=("dac_bits", "adc_bits")),
            group="Chip configuration",
        ),
        Command(
            "MVM:RANGe?",
            "mvm_range",
            "Full-scale ranges of the MVM: inputs are clipped to ±input_max before the DAC, "
            "outputs to ±output_max before the ADC.",
            reply=Reply(
                "floats",
                "input_max (V), output_max (uA).",
                fields=("mvm_input_max_V", "mvm_output_max_uA"),
            ),
            group="Chip configuration",
        ),
        Command(
            "MVM:BATCh?",
            "mvm_batch",
            "Most input vectors one MVM command takes (a larger batch is refused with 106); "
            "a driver splits a larger batch into commands of at most this many. Since "
            "protocol 1.1.",
            reply=Reply("int", "Vectors per command.", fields=("mvm_batch_max",)),
            group="Chip configuration",
        ),
        # --- Programming ----------------------------------------------------------------------
        Command(
            "PULSe:APPLy",
            "pulse",
            "Apply one programming pulse to each listed device, all in one command. The pulse's "
            "current amplitude decides its effect: at or above the device's melting threshold "
            "it melt-quenches (RESET side of the programming curve); between the "
            "crystallization and melting thresholds it partially crystallizes (partial SET); "
            "below that it changes nothing. The whole command is checked before any pulse is "
            "applied: on any error no device is pulsed.",
            args=(
                TILE,
                PULSED_ADDRESSES,
                Arg(
                    "amplitudes",
                    "block",
                    "Pulse current amplitude per device.",
                    unit="uA",
                    dtype="<f4",
                    minimum=0,
                    maximum="pulse_amplitude_max_uA",
                    length=Length(same_as="addresses", broadcast=True),
                    range_error=PULSE_OUTSIDE_LIMITS,
                ),
                Arg(
                    "widths",
                    "block",
                    "Pulse width per device.",
                    unit="ns",
                    dtype="<f4",
                    minimum="pulse_width_min_ns",
                    maximum="pulse_width_max_ns",
                    length=Length(same_as="addresses", broadcast=True),
                    range_error=PULSE_OUTSIDE_LIMITS,
                ),
            ),
            errors=(DATA_OUT_OF_RANGE, PULSE_OUTSIDE_LIMITS, LENGTH_MISMATCH, DUPLICATE_ADDRESS),
            group="Programming",
        ),
        # --- Reading --------------------------------------------------------------------------
        Command(
            "READ:TILE?",
            "read_tile",
            "Read every device of a tile at the read voltage.",
            args=(TILE,),
            reply=Reply("block", "rows × columns conductances, row-major.", unit="uS", dtype="<f4"),
            errors=(DATA_OUT_OF_RANGE,),
            group="Reading",
        ),
        Command(
            "READ:DEVices?",
            "read_devices",
            "Read the listed devices of a tile at the read voltage.",
            args=(TILE, ADDRESSES),
            reply=Reply("block", "One conductance per address, in order.", unit="uS", dtype="<f4"),
            errors=(DATA_OUT_OF_RANGE,),
            group="Reading",
        ),
        # --- Analog matrix-vector multiply ----------------------------------------------------
        Command(
            "MVM:FORWard?",
            "mvm_forward",
            "Analog matrix-vector multiply, forward, on a window of a tile: each input vector "
            "drives the window's rows as voltages (other rows at 0 V) and each of the window's "
            "columns gives its current I_j = sum_i G_ij V_i, read through the ADC. Inputs are "
            "clipped to ±input_max and quantized by the DAC; outputs are clipped to "
            "±output_max and quantized by the ADC.",
            args=(
                TILE,
                *WINDOW,
                Arg(
                    "inputs",
                    "block",
                    "Batch of input vectors, n × row_count, row-major.",
                    unit="V",
                    dtype="<f4",
                    length=Length(multiple_of="row_count", most_multiples="mvm_batch_max"),
                ),
            ),
            reply=Reply(
                "block", "n × column_count column currents, row-major.", unit="uA", dtype="<f4"
            ),
            errors=(DATA_OUT_OF_RANGE, LENGTH_MISMATCH, BATCH_TOO_LARGE, OUT_OF_MEMORY),
            group="Analog matrix-vector multiply",
        ),
        Command(
            "MVM:TRANsposed?",
            "mvm_transposed",
            "Analog matrix-vector multiply, transposed, on a window of a tile: inputs drive "
            "the window's columns, each of its rows gives I_i = sum_j G_ij V_j. Same DAC and "
            "ADC as MVM:FORWard?.",
            args=(
                TILE,
                *WINDOW,
                Arg(
                    "inputs",
                    "block",
                    "Batch of input vectors, n × column_count, row-major.",
                    unit="V",
                    dtype="<f4",
                    length=Length(multiple_of="column_count", most_multiples="mvm_batch_max"),
                ),
            ),
            reply=Reply("block", "n × row_count row currents, row-major.", unit="uA", dtype="<f4"),
            errors=(DATA_OUT_OF_RANGE, LENGTH_MISMATCH, BATCH_TOO_LARGE, OUT_OF_MEMORY),
            group="Analog matrix-vector multiply",
        ),
        # --- Temperature ---------------------------------------------------------------------
        Command(
            "TEMPerature?",
            "temperature",
            "Chip temperature.",
            reply=Reply("float", "Temperature.", unit="K"),
            group="Temperature",
        ),
        Command(
            "TEMPerature",
            "set_temperature",
            "Set the chip's temperature setpoint (the stage heater on a real setup).",
            args=(
                Arg(
                    "kelvin",
                    "float",
                    "Setpoint.",
                    unit="K",
                    minimum="temperature_min_K",
                    maximum="temperature_max_K",
                ),
            ),
            errors=(DATA_OUT_OF_RANGE,),
            group="Temperature",
        ),
        # --- Clock ------------------------------------------------------------------------------
        Command(
            "CLOCk:TIME?",
            "clock_time",
            "Seconds since the chip's clock started. Programming times and drift are counted "
            "on this clock.",
            reply=Reply("float", "Time.", unit="s"),
            group="Clock",
        ),
        Command(
            "CLOCk:MODE?",
            "clock_mode",
            "VIRTUAL: time moves only by CLOCk:ADVance (emulator); REAL: wall-clock time.",
            reply=Reply("enum", "VIRT or REAL.", choices=("VIRTual", "REAL")),
            group="Clock",
        ),
        Command(
            "CLOCk:ADVance",
            "clock_advance",
            "Advance a virtual clock; devices drift through the interval at the current "
            "temperature. Refused with 104 on a real-time clock.",
            args=(
                Arg(
                    "seconds",
                    "float",
                    "Interval.",
                    unit="s",
                    minimum=0,
                    maximum=1e10,
                ),
            ),
            errors=(DATA_OUT_OF_RANGE, VIRTUAL_CLOCK_UNAVAILABLE, EXECUTION_ERROR),
            group="Clock",
        ),
    ),
    name="PCM test chip",
    device_errors=CHIP_ERRORS,
)

#: The queries whose replies, field by field, make up what a chip reports of itself.
CONFIGURATION = (
    "protocol_version",
    "geometry",
    "g_max",
    "pulse_limits",
    "temperature_limits",
    "read_voltage",
    "mvm_resolution",
    "mvm_range",
    "mvm_batch",
)

#: Configuration queries added after protocol 1.0, by the version that added them: a driver
#: does not ask an older chip (the fields stay None).
ADDED_IN = {"mvm_batch": (1, 1)}


@dataclass(frozen=True, kw_only=True)
class ChipInfo:
    """What a chip reports of itself: its identity and the fields of the configuration
    queries (``CONFIGURATION``), each named as its reply row names it. The driver fills it
    from the chip's replies; the emulator answers those queries from it; a bench target (one
    tile of discrete devices, no MVM, no temperature stage) leaves those fields None."""

    identity: Identity
    protocol_version: str
    tiles: int
    rows: int
    columns: int
    g_max_uS: float
    pulse_amplitude_max_uA: float
    pulse_width_min_ns: float
    pulse_width_max_ns: float
    temperature_min_K: float | None = None
    temperature_max_K: float | None = None
    read_voltage_V: float
    dac_bits: int | None = None
    adc_bits: int | None = None
    mvm_input_max_V: float | None = None
    mvm_output_max_uA: float | None = None
    mvm_batch_max: int | None = None

    @property
    def devices_per_tile(self) -> int:
        return self.rows * self.columns

    def limits(self) -> dict[str, float]:
        """The limits the command table's ranges name: every numeric field, and
        ``devices_per_tile``."""
        values: dict[str, float] = {"devices_per_tile": self.devices_per_tile}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[field.name] = value
        return values

    @classmethod
    def from_replies(cls, identity: Identity, replies: Mapping[str, Any]) -> ChipInfo:
        """From the parsed reply of each configuration query (by handler name), matched to
        the fields by the reply rows' field names."""
        values: dict[str, Any] = {}
        for handler in CONFIGURATION:
            if handler not in replies:  # a query the chip's protocol version lacks
                continue
            reply = COMMANDS.by_handler(handler).reply
            value = replies[handler]
            items = value if reply.kind in ("ints", "floats") else (value,)
            values.update(zip(reply.fields, items, strict=True))
        return cls(identity=identity, **values)

    def answer(self, handler: str) -> Any:
        """The reply of configuration query ``handler``, from the fields its row names."""
        reply = COMMANDS.by_handler(handler).reply
        values = tuple(getattr(self, name) for name in reply.fields)
        return values if reply.kind in ("ints", "floats") else values[0]
