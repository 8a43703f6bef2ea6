"""The PCM test chip's command table: one row per command, in the order of the specification.

Units on the wire are ASCII: uS (microsiemens), uA (microamperes), ns, s, V, K.
Addresses are flat device indices within a tile, ``row * columns + column`` (row-major).
"""

from __future__ import annotations

from dataclasses import replace

from pcm_hil.protocols.errors import (
    DATA_OUT_OF_RANGE,
    DUPLICATE_ADDRESS,
    LENGTH_MISMATCH,
    PULSE_OUTSIDE_LIMITS,
    VIRTUAL_CLOCK_UNAVAILABLE,
)
from pcm_hil.protocols.table import Arg, Command, CommandTable, Length, Reply

#: Protocol version, MAJOR.MINOR. A driver refuses a chip whose MAJOR differs from its own;
#: MINOR grows when commands are added without changing existing ones.
PROTOCOL_VERSION = "1.0"

#: The SCPI version the command syntax follows (reply of SYSTem:VERSion?).
SCPI_VERSION = "1999.0"

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
        # --- IEEE 488.2 common commands -------------------------------------------------
        Command(
            "*IDN?",
            "identify",
            "Identity: manufacturer, model, serial number, firmware version.",
            reply=Reply(
                "text",
                "Four comma-separated fields: MANUFACTURER,MODEL,SERIAL,FIRMWARE.",
                fields=("manufacturer", "model", "serial", "firmware"),
            ),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*RST",
            "reset",
            "Reset settings to power-on defaults: temperature setpoint to ambient, event-status "
            "enable to 0. Device conductances are non-volatile and are not changed; the clock "
            "keeps running.",
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*CLS",
            "clear_status",
            "Clear the error queue and the event status register.",
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*OPC",
            "operation_complete",
            "Set the operation-complete bit (bit 0) of the event status register once all "
            "pending operations are done (commands execute in order, so at once).",
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*OPC?",
            "operation_complete_query",
            "Answer 1 once all pending operations are done.",
            reply=Reply("int", "Always 1."),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*WAI",
            "wait_to_continue",
            "Wait until all pending operations are done (commands execute in order: no-op).",
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*ESR?",
            "event_status_query",
            "Read and clear the event status register: bit 0 operation complete, 2 query "
            "error, 3 device-specific error, 4 execution error, 5 command error.",
            reply=Reply("int", "Register value 0…255."),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*ESE",
            "event_status_enable",
            "Set the event status enable mask (which ESR bits set the ESB bit of *STB?).",
            args=(Arg("mask", "int", "Enable mask.", minimum=0, maximum=255),),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*ESE?",
            "event_status_enable_query",
            "The event status enable mask.",
            reply=Reply("int", "Mask 0…255."),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*STB?",
            "status_byte_query",
            "Status byte: bit 2 (4) error queue not empty, bit 5 (32) event status summary "
            "(ESR AND ESE non-zero). Reading it clears nothing.",
            reply=Reply("int", "Status byte 0…255."),
            group="IEEE 488.2 common commands",
        ),
        Command(
            "*TST?",
            "self_test_query",
            "Self test: 0 when the chip's configuration and state are consistent.",
            reply=Reply("int", "0 pass, 1 fail."),
            group="IEEE 488.2 common commands",
        ),
        # --- System ---------------------------------------------------------------------
        Command(
            "SYSTem:ERRor[:NEXT]?",
            "error_next",
            'Remove and return the oldest error-queue entry; 0,"No error" when empty.',
            reply=Reply("error", 'An entry <code>,"<message>[;<detail>]".'),
            group="System",
        ),
        Command(
            "SYSTem:ERRor:COUNt?",
            "error_count",
            "Number of entries in the error queue.",
            reply=Reply("int", "Entry count 0…32."),
            group="System",
        ),
        Command(
            "SYSTem:VERSion?",
            "scpi_version",
            "The SCPI version the syntax follows.",
            reply=Reply("text", "YYYY.V, e.g. 1999.0."),
            group="System",
        ),
        Command(
            "SYSTem:PROTocol?",
            "protocol_version",
            "The version of this protocol, MAJOR.MINOR.",
            reply=Reply("text", "e.g. 1.0."),
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
            reply=Reply("float", "g_max.", unit="uS"),
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
            reply=Reply("float", "Read voltage.", unit="V"),
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
                    length=Length(multiple_of="row_count"),
                ),
            ),
            reply=Reply(
                "block", "n × column_count column currents, row-major.", unit="uA", dtype="<f4"
            ),
            errors=(DATA_OUT_OF_RANGE, LENGTH_MISMATCH),
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
                    length=Length(multiple_of="column_count"),
                ),
            ),
            reply=Reply("block", "n × row_count row currents, row-major.", unit="uA", dtype="<f4"),
            errors=(DATA_OUT_OF_RANGE, LENGTH_MISMATCH),
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
            errors=(DATA_OUT_OF_RANGE, VIRTUAL_CLOCK_UNAVAILABLE),
            group="Clock",
        ),
    )
)
