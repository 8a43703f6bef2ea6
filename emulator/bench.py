"""An emulated probe-station bench: a source-measure unit, a pulse generator and a switch
matrix wired to N discrete PCM devices, each instrument served as a SCPI socket (TCP).

What is wired to what::

    pulse generator ──R_series──┐
                                ├── switch matrix (1 of N closed) ── device k ── ground
    source-measure unit ────────┘

- The devices are one tile of an ``EmulatedChip`` (``tiles=1, rows=1, columns=N``): the same
  physics (``devices.PcmDevices``), the same seeded generator and the same clock and
  equivalent time as the chip emulator. Device ``k`` of the bench is address ``k − 1`` of
  that tile, so a bench and an ``EmulatedChip`` of the same shape and seed hold the very same
  devices.
- A pulse from the generator (``:ARM:SOUR MAN``, ``:OUTP1 ON``, then ``*TRG``) of high level
  V and width w drives I = V / R_series through the routed device and programs it exactly as
  the chip's pulse of that current and width (``SERIES_RESISTANCE_OHM``).
- ``:READ?`` on the source-measure unit, output on, sourcing voltage V, returns
  ``"<V>,<I>"`` with I = G·V, G the device's read (drift, 1/f read noise) — clipped at the
  current compliance. There is no instrument noise: the devices' read noise is orders of
  magnitude above a 2400-class SMU's on these currents.

The switch matrix lives on the SMU (a route command, as on an SMU mainframe with a switch
card): ``:ROUTe:CLOSe (@k)`` connects device k (1…N) to both instruments and disconnects the
one connected before (a 1-of-N multiplexer); ``:ROUTe:OPEN:ALL`` disconnects every device;
``:ROUTe:CLOSe?`` returns the closed channel as ``(@k)`` or ``(@)``. Power-on and ``*RST``
close channel 1, so a one-device bench needs no routing. With no channel closed a pulse
reaches nothing and ``:READ?`` measures an open circuit (0 A).

Time: a virtual clock by default (moves only when told); commands of the SMU, emulator-only
(no real instrument has them): ``:SYSTem:TIME:ADVance <s>`` advances the bench's virtual
clock; ``:SYSTem:TIME:MODE?`` answers ``VIRT`` or ``REAL``; ``:SYSTem:TIME?`` is the clock in
seconds (on a 2400 it is the time stamp since power-on); ``:ROUTe:COUNt?`` is N. With
``real_time=True`` the clock is the wall clock and ``:SYST:TIME:ADV`` is refused (-221).

Every instrument keeps an SCPI error queue (``:SYSTem:ERRor[:NEXT]?``, ``0,"No error"`` when
empty; 32 entries, then -350), ``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?``, ``*ESR?``. Unknown
headers give -113, a channel suffix other than 1 gives -114, values outside a range -222,
settings that conflict (an output that is off, a trigger that is not armed) -221. A rejected
command changes nothing. A query that fails sends no reply (IEEE 488.2): the client times
out or, better, reads the error queue. Units of a program message are separated by ``;``
and each is interpreted from the root of the command tree (no relative headers).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.chip import FIRMWARE_VERSION, ChipConfig, EmulatedChip
from pcm_hil.protocols.errors import ESR_OPERATION_COMPLETE, esr_bit

#: Resistor in series with the pulse generator's output, Ω [choice: 1 kΩ turns volts into
#: milliamps, 1 V → 1000 µA, so the chip's 600 µA safe current is a 0.6 V high level; the
#: device's threshold-switched ON resistance during a programming pulse is neglected
#: against it, so I = V_high / R_series].
SERIES_RESISTANCE_OHM = 1000.0

#: Largest |low level| of the generator, V [choice: at 1 kΩ, 20 µA — half the crystallization
#: threshold, so the level between pulses never disturbs a device; benches use 0 V].
LOW_LEVEL_MAX_V = 0.02

#: Largest |source voltage| of the SMU, V [choice: bench protection — at 1 V a fully
#: crystalline (≈30 µS) device carries ≈30 µA, below the 40 µA crystallization threshold,
#: so no read can disturb a device].
SOURCE_VOLTAGE_MAX_V = 1.0

#: Instrument ranges (2400-class SMU, 81110A-class generator), beyond which a setting is
#: refused with -222 [choice: rounded from the instruments' data sheets].
COMPLIANCE_RANGE_A = (1e-9, 1.05)
CURRENT_RANGE_A = (1e-6, 1.05)
NPLC_RANGE = (0.01, 10.0)
WIDTH_RANGE_S = (1e-9, 1.0)
PERIOD_RANGE_S = (3e-9, 999.0)
EDGE_RANGE_S = (0.5e-9, 0.2)

#: Error codes and messages of the bench instruments (SCPI-1999 standard codes).
BENCH_ERRORS: dict[int, str] = {
    0: "No error",
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}
COMMAND_ERROR = -100
SYNTAX_ERROR = -102
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
SUFFIX_OUT_OF_RANGE = -114
EXECUTION_ERROR = -200
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
ILLEGAL_PARAMETER_VALUE = -224
QUEUE_OVERFLOW = -350
INPUT_BUFFER_OVERRUN = -363

#: Longest program message accepted, bytes; longer ones are discarded with -363.
MAX_MESSAGE_BYTES = 4096


class BenchError(Exception):
    """An SCPI error raised while parsing or executing a command: code and detail."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code},{BENCH_ERRORS[code]}" + (f";{detail}" if detail else ""))


class ErrorQueue:
    """First in, first out, ``capacity`` entries; when full the last entry becomes -350."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: deque[tuple[int, str]] = deque()

    def push(self, code: int, detail: str = "") -> None:
        if len(self._entries) >= self.capacity:
            self._entries[-1] = (QUEUE_OVERFLOW, BENCH_ERRORS[QUEUE_OVERFLOW])
            return
        text = BENCH_ERRORS[code] + (f";{detail}" if detail else "")
        self._entries.append((code, text))

    def pop(self) -> str:
        """The oldest entry as ``<code>,"<text>"`` (quotes doubled), or ``0,"No error"``."""
        code, text = self._entries.popleft() if self._entries else (0, BENCH_ERRORS[0])
        return f'{code},"{text.replace(chr(34), chr(34) * 2)}"'

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# --- the devices behind the switch matrix ----------------------------------------------------


class BenchDevices:
    """N PCM devices on a 1-of-N switch matrix, shared by the instruments (thread-safe).

    The physics and the clock are an ``EmulatedChip`` of one tile of ``1 × N`` devices.
    Channel k (1…N) is the chip's address k − 1; ``channel`` is the closed one (None: open).
    """

    def __init__(
        self,
        devices: int = 16,
        seed: int = 0,
        *,
        real_time: bool = False,
        model: PcmModel = DEFAULT_MODEL,
        series_resistance_ohm: float = SERIES_RESISTANCE_OHM,
        rng: np.random.Generator | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError("a bench needs at least one device")
        config = ChipConfig(
            tiles=1, rows=1, columns=devices, real_time=real_time, model=model, serial="EMU-BENCH"
        )
        self.chip = EmulatedChip(config, rng if rng is not None else np.random.default_rng(seed))
        self.count = devices
        self.series_resistance_ohm = float(series_resistance_ohm)
        self.lock = threading.RLock()
        self.channel: int | None = 1
        self.pulses_applied = 0

    # the device limits the bench protects, from the chip's configuration
    @property
    def current_max_uA(self) -> float:
        return self.chip.config.pulse_amplitude_max_uA

    @property
    def width_limits_ns(self) -> tuple[float, float]:
        c = self.chip.config
        return c.pulse_width_min_ns, c.pulse_width_max_ns

    @property
    def high_level_max_V(self) -> float:
        """The generator's high-level limit that keeps the current within the safe limit."""
        return self.current_max_uA * 1e-6 * self.series_resistance_ohm

    def current_uA(self, level_V: float) -> float:
        """Current through a device at generator level ``level_V``, µA."""
        return abs(level_V) / self.series_resistance_ohm * 1e6

    def route(self, channel: int | None) -> None:
        with self.lock:
            self.channel = channel

    def pulse(self, level_V: float, width_s: float) -> None:
        """One programming pulse into the routed device (none routed: it goes nowhere)."""
        with self.lock:
            if self.channel is None:
                return
            address = np.array([self.channel - 1])
            self.chip.pulse(0, address, self.current_uA(level_V), width_s * 1e9)
            self.pulses_applied += 1

    def conductance_uS(self) -> float:
        """One read of the routed device, µS (0 with the switch open)."""
        with self.lock:
            if self.channel is None:
                return 0.0
            return float(self.chip.read_devices(0, np.array([self.channel - 1]))[0])

    def now(self) -> float:
        with self.lock:
            return self.chip.now()

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.chip.advance(seconds)

    @property
    def clock_mode(self) -> str:
        return "VIRT" if self.chip.clock.mode.upper().startswith("VIRT") else "REAL"


# --- SCPI command matching ---------------------------------------------------------------------

_NODE = re.compile(r"(\[?):([A-Za-z]+)(#?)\]?")


def _compile(pattern: str) -> re.Pattern[str]:
    """A header pattern like ``[:SOURce]:VOLTage#[:LEVel]:HIGH`` as a regex: each node in its
    short (the capitals) or long form, ``[...]`` optional, ``#`` a numeric suffix (captured).
    A common command (``*IDN``) matches itself."""
    if pattern.startswith("*"):
        return re.compile(re.escape(pattern), re.IGNORECASE)
    parts = []
    for optional, mnemonic, suffix in _NODE.findall(pattern):
        short = "".join(c for c in mnemonic if c.isupper())
        long = mnemonic.upper()
        node = ":" + (f"(?:{long}|{short})" if long != short else long)
        node += r"(\d*)" if suffix else ""
        parts.append(f"(?:{node})?" if optional else node)
    return re.compile("".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    """One row of an instrument's command table: a header pattern and its set and query
    handlers (``set(args)`` with the parameter texts; ``query()`` returns the reply text)."""

    pattern: str
    set: Callable[[list[str]], None] | None = None
    query: Callable[[], str] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.pattern)


def _split(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside quotes and parentheses."""
    parts, current, quote, depth = [], [], "", 0
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _one(args: list[str]) -> str:
    if not args:
        raise BenchError(MISSING_PARAMETER)
    if len(args) > 1:
        raise BenchError(PARAMETER_NOT_ALLOWED, f"one value expected, got {len(args)}")
    return args[0]


def number(args: list[str], name: str, low: float, high: float, unit: str) -> float:
    """One numeric parameter in [low, high] (MINimum / MAXimum accepted), else -104 / -222."""
    text = _one(args).strip()
    upper = text.upper()
    if upper in ("MIN", "MINIMUM"):
        return low
    if upper in ("MAX", "MAXIMUM"):
        return high
    try:
        value = float(text)
    except ValueError:
        raise BenchError(DATA_TYPE_ERROR, f"{name} must be a number, not {text[:20]!r}") from None
    if not np.isfinite(value) or not low <= value <= high:
        raise BenchError(
            DATA_OUT_OF_RANGE, f"{name} {value:g} {unit} outside {low:g}...{high:g} {unit}"
        )
    return value


def boolean(args: list[str], name: str) -> bool:
    text = _one(args).strip().upper()
    if text in ("ON", "1"):
        return True
    if text in ("OFF", "0"):
        return False
    raise BenchError(ILLEGAL_PARAMETER_VALUE, f"{name} takes ON|OFF|1|0, not {text[:20]!r}")


def choice(args: list[str], name: str, options: dict[str, str]) -> str:
    """One keyword among ``options`` (accepted spelling → canonical value), else -224."""
    text = _one(args).strip().upper()
    if text not in options:
        raise BenchError(ILLEGAL_PARAMETER_VALUE, f"{name} takes {'|'.join(options)}")
    return options[text]


def _fmt(value: float) -> str:
    return f"{value:+.6E}"


# --- the SCPI instrument base --------------------------------------------------------------------


class LineFramer:
    """Splits a connection's bytes into LF-terminated messages (a CR before LF is dropped);
    a message longer than ``MAX_MESSAGE_BYTES`` is discarded (reported as -363)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overrun = False

    def feed(self, data: bytes) -> list[bytes | BenchError]:
        self._buffer += data
        out: list[bytes | BenchError] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._overrun:
                self._overrun = False
                continue
            out.append(line)
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            self._buffer.clear()
            if not self._overrun:
                self._overrun = True
                out.append(BenchError(INPUT_BUFFER_OVERRUN, "message too long"))
        return out


class ScpiInstrument:
    """An SCPI instrument in software: a command table, an error queue, the status bytes.

    ``new_framer`` / ``feed`` are what ``InstrumentServer`` serves. Subclasses set
    ``model`` and ``serial``, fill ``commands()`` and ``reset()``.
    """

    manufacturer = "PCM-HIL"
    model = "BENCH-INSTRUMENT"
    serial = "EMU-0000"

    def __init__(self, dut: BenchDevices) -> None:
        self.dut = dut
        self.lock = threading.RLock()
        self.errors = ErrorQueue()
        self.esr = 0
        self.messages = 0
        common = [
            Command("*IDN", query=self._idn),
            Command("*RST", set=self._no_args(self.reset)),
            Command("*CLS", set=self._no_args(self.clear_status)),
            Command("*OPC", set=self._no_args(self._opc), query=lambda: "1"),
            Command("*WAI", set=self._no_args(lambda: None)),
            Command("*ESR", query=self._esr),
            Command("*TST", query=lambda: "0"),
            Command(":SYSTem:ERRor[:NEXT]", query=self.errors.pop),
            Command(":SYSTem:ERRor:COUNt", query=lambda: str(len(self.errors))),
            Command(":SYSTem:VERSion", query=lambda: "1999.0"),
        ]
        self._table = [(c, c.regex) for c in common + self.commands()]
        self.reset()

    # --- to fill in ----------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        return []

    def reset(self) -> None:
        """*RST: settings to their power-on values."""

    # --- the wire ------------------------------------------------------------------------------

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.manufacturer, self.model, self.serial, FIRMWARE_VERSION)

    def new_framer(self) -> LineFramer:
        return LineFramer()

    def feed(self, framer: LineFramer, data: bytes) -> bytes:
        """Process the bytes a connection received; return the replies to send (maybe b"")."""
        out = []
        for item in framer.feed(data):
            if isinstance(item, BenchError):
                self._push(item)
            else:
                reply = self.execute(item.decode("ascii", "replace"))
                if reply is not None:
                    out.append(reply.encode("ascii", "replace") + b"\n")
        return b"".join(out)

    def execute(self, message: str) -> str | None:
        """One program message (units separated by ``;``); the response message or None."""
        replies = []
        with self.lock:
            self.messages += 1
            for unit in _split(message, ";"):
                unit = unit.strip()
                if not unit:
                    continue
                try:
                    reply = self._unit(unit)
                except BenchError as error:
                    self._push(error)
                    continue
                except Exception as error:  # a handler bug must not kill the connection
                    self._push(BenchError(EXECUTION_ERROR, f"{type(error).__name__}: {error}"))
                    continue
                if reply is not None:
                    replies.append(reply)
        return ";".join(replies) if replies else None

    def _unit(self, unit: str) -> str | None:
        header, _, rest = unit.partition(" ")
        if "\t" in header:
            header, _, more = header.partition("\t")
            rest = f"{more} {rest}".strip()
        is_query = header.endswith("?")
        header = header[:-1] if is_query else header
        if not header.startswith((":", "*")):
            header = ":" + header
        for command, regex in self._table:
            match = regex.fullmatch(header)
            if match is None:
                continue
            for suffix in match.groups():
                if suffix not in (None, "", "1"):
                    raise BenchError(SUFFIX_OUT_OF_RANGE, f"{header}: only channel 1 is fitted")
            args = [a.strip() for a in _split(rest, ",")] if rest.strip() else []
            if is_query:
                if command.query is None:
                    break
                if args:
                    raise BenchError(PARAMETER_NOT_ALLOWED, f"{header}? takes no parameter")
                return command.query()
            if command.set is None:
                break
            command.set(args)
            return None
        raise BenchError(UNDEFINED_HEADER, unit[:40].replace('"', "'"))

    def _push(self, error: BenchError) -> None:
        self.errors.push(error.code, error.detail)
        self.esr |= esr_bit(error.code)

    @staticmethod
    def _no_args(function: Callable[[], None]) -> Callable[[list[str]], None]:
        def handler(args: list[str]) -> None:
            if args:
                raise BenchError(PARAMETER_NOT_ALLOWED)
            function()

        return handler

    def _idn(self) -> str:
        return ",".join(self.identity)

    def clear_status(self) -> None:
        """*CLS: empty the error queue and the event status register."""
        self.errors.clear()
        self.esr = 0

    def _opc(self) -> None:
        self.esr |= ESR_OPERATION_COMPLETE

    def _esr(self) -> str:
        value, self.esr = self.esr, 0
        return str(value)


# --- the source-measure unit ---------------------------------------------------------------------


class SourceMeterEmulator(ScpiInstrument):
    """A 2400-class source-measure unit sourcing voltage and measuring current through the
    routed device, with the bench's switch matrix and clock commands (module docstring).

    Sourcing current is not emulated (``:SOUR:FUNC CURR`` → -224)."""

    model = "EMULATED-SMU-2400"
    serial = "EMU-SMU-0001"

    def commands(self) -> list[Command]:
        return [
            Command(":SOURce:FUNCtion[:MODE]", self._set_function, lambda: self.source_function),
            Command(
                "[:SOURce]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                self._set_voltage,
                lambda: _fmt(self.voltage_V),
            ),
            Command("[:SENSe]:FUNCtion[:ON]", self._set_sense, lambda: '"CURR:DC"'),
            Command(
                "[:SENSe]:CURRent[:DC]:PROTection[:LEVel]",
                self._set_compliance,
                lambda: _fmt(self.compliance_A),
            ),
            Command(
                "[:SENSe]:CURRent[:DC]:RANGe:AUTO",
                self._set_auto,
                lambda: "1" if self.range_auto else "0",
            ),
            Command(
                "[:SENSe]:CURRent[:DC]:RANGe[:UPPer]",
                self._set_range,
                lambda: _fmt(self.range_A),
            ),
            Command("[:SENSe]:CURRent[:DC]:NPLCycles", self._set_nplc, lambda: _fmt(self.nplc)),
            Command(
                ":FORMat:ELEMents[:SENSe]", self._set_elements, lambda: ",".join(self.elements)
            ),
            Command(":OUTPut#[:STATe]", self._set_output, lambda: "1" if self.output_on else "0"),
            Command(":READ", query=self._read),
            Command(":MEASure[:CURRent[:DC]]", query=self._measure),
            Command(":ROUTe:CLOSe", self._close, self._closed),
            Command(":ROUTe:OPEN:ALL", set=self._no_args(lambda: self.dut.route(None))),
            Command(":ROUTe:COUNt", query=lambda: str(self.dut.count)),
            Command(":SYSTem:TIME", query=lambda: _fmt(self.dut.now())),
            Command(":SYSTem:TIME:ADVance", set=self._advance),
            Command(":SYSTem:TIME:MODE", query=lambda: self.dut.clock_mode),
        ]

    def reset(self) -> None:
        self.source_function = "VOLT"
        self.voltage_V = 0.0
        self.compliance_A = 105e-6
        self.range_auto = True
        self.range_A = 105e-6
        self.nplc = 1.0
        self.elements = ["VOLT", "CURR"]
        self.output_on = False
        self.dut.route(1)

    def _set_function(self, args: list[str]) -> None:
        value = choice(
            args,
            "source function",
            {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"},
        )
        if value != "VOLT":
            raise BenchError(ILLEGAL_PARAMETER_VALUE, "only voltage sourcing is emulated")
        self.source_function = value

    def _set_voltage(self, args: list[str]) -> None:
        self.voltage_V = number(
            args, "source voltage", -SOURCE_VOLTAGE_MAX_V, SOURCE_VOLTAGE_MAX_V, "V"
        )

    def _set_sense(self, args: list[str]) -> None:
        if not args:
            raise BenchError(MISSING_PARAMETER)
        for arg in args:
            name = arg.strip().strip("'\"").upper()
            if name not in ("CURR", "CURRENT", "CURR:DC", "CURRENT:DC", "VOLT", "VOLT:DC"):
                raise BenchError(ILLEGAL_PARAMETER_VALUE, f"sense function {name[:20]!r}")

    def _set_compliance(self, args: list[str]) -> None:
        self.compliance_A = number(args, "current compliance", *COMPLIANCE_RANGE_A, "A")

    def _set_auto(self, args: list[str]) -> None:
        self.range_auto = boolean(args, "auto range")

    def _set_range(self, args: list[str]) -> None:
        self.range_A = number(args, "current range", *CURRENT_RANGE_A, "A")
        self.range_auto = False

    def _set_nplc(self, args: list[str]) -> None:
        self.nplc = number(args, "NPLC", *NPLC_RANGE, "PLC")

    def _set_elements(self, args: list[str]) -> None:
        known = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR"}
        names = [a.strip().upper() for a in args]
        if not names:
            raise BenchError(MISSING_PARAMETER)
        if any(n not in known for n in names):
            raise BenchError(ILLEGAL_PARAMETER_VALUE, "elements: VOLT and/or CURR")
        chosen = {known[n] for n in names}
        self.elements = [e for e in ("VOLT", "CURR") if e in chosen]

    def _set_output(self, args: list[str]) -> None:
        self.output_on = boolean(args, "output")

    def _close(self, args: list[str]) -> None:
        text = _one(args).replace(" ", "")
        match = re.fullmatch(r"\(@(\d+)\)", text)
        if match is None:
            raise BenchError(ILLEGAL_PARAMETER_VALUE, "channel list (@k), one channel")
        channel = int(match.group(1))
        if not 1 <= channel <= self.dut.count:
            raise BenchError(DATA_OUT_OF_RANGE, f"channel {channel} outside 1...{self.dut.count}")
        self.dut.route(channel)

    def _closed(self) -> str:
        channel = self.dut.channel
        return "(@)" if channel is None else f"(@{channel})"

    def _advance(self, args: list[str]) -> None:
        seconds = number(args, "time step", 0.0, 1e12, "s")
        if self.dut.clock_mode != "VIRT":
            raise BenchError(SETTINGS_CONFLICT, "the bench runs on a real-time clock")
        self.dut.advance(seconds)

    def measurement(self) -> tuple[float, float]:
        """(V, I) across the routed device: I = G·V clipped at the compliance (and at the
        range when auto range is off); in compliance V is what the device then drops."""
        if not self.output_on:
            raise BenchError(SETTINGS_CONFLICT, "output off: turn it on with :OUTP ON")
        g_S = self.dut.conductance_uS() * 1e-6
        voltage = self.voltage_V
        current = g_S * voltage
        limit = self.compliance_A if self.range_auto else min(self.compliance_A, self.range_A)
        if abs(current) > limit:
            current = float(np.copysign(limit, current))
            voltage = current / g_S
        return voltage, current

    def _read(self) -> str:
        voltage, current = self.measurement()
        values = {"VOLT": voltage, "CURR": current}
        return ",".join(_fmt(values[e]) for e in self.elements)

    def _measure(self) -> str:
        return _fmt(self.measurement()[1])


# --- the pulse generator -------------------------------------------------------------------------


class PulseGeneratorEmulator(ScpiInstrument):
    """An 81110A-class pulse generator, channel 1, wired through ``R_series`` to the routed
    device. ``*TRG`` fires one pulse when the arm source is MANual and the output is on.

    Protection (as the 81110A's voltage limits, fixed on): the high level may not exceed the
    level of the device's safe current (``:VOLT1:LIM:HIGH?``, 0.6 V at 600 µA and 1 kΩ) —
    a higher setting is refused with -222 and the level is left as it was. At ``*TRG`` the
    width must lie within the device's safe widths (else -222) and below the period (else
    -221); then the pulse is applied. Continuous pulsing (``:ARM:SOUR IMM``) is not
    emulated: turning the output on in IMM, or IMM with the output on, is refused (-221);
    so is ``*TRG`` unless armed MANual with the output on. Edges are kept, not modelled; so is
    polarity (a negative high level drives |V|/R_series).
    """

    model = "EMULATED-PULSE-81110"
    serial = "EMU-PG-0001"

    def commands(self) -> list[Command]:
        return [
            Command(
                "[:SOURce]:VOLTage#[:LEVel][:IMMediate]:HIGH",
                self._set_high,
                lambda: _fmt(self.high_V),
            ),
            Command(
                "[:SOURce]:VOLTage#[:LEVel][:IMMediate]:LOW",
                self._set_low,
                lambda: _fmt(self.low_V),
            ),
            Command(
                "[:SOURce]:VOLTage#:LIMit[:HIGH]", query=lambda: _fmt(self.dut.high_level_max_V)
            ),
            Command("[:SOURce]:PULSe:WIDTh#", self._set_width, lambda: _fmt(self.width_s)),
            Command("[:SOURce]:PULSe:PERiod#", self._set_period, lambda: _fmt(self.period_s)),
            Command(
                "[:SOURce]:PULSe:TRANsition#[:LEADing]",
                self._set_leading,
                lambda: _fmt(self.leading_s),
            ),
            Command(
                "[:SOURce]:PULSe:TRANsition#:TRAiling",
                self._set_trailing,
                lambda: _fmt(self.trailing_s),
            ),
            Command(":OUTPut#[:STATe]", self._set_output, lambda: "1" if self.output_on else "0"),
            Command(":ARM:SOURce", self._set_arm, lambda: self.arm_source),
            Command("*TRG", set=self._no_args(self.trigger)),
            Command(":TRIGger[:IMMediate]", set=self._no_args(self.trigger)),
        ]

    def reset(self) -> None:
        self.high_V = 0.1
        self.low_V = 0.0
        self.width_s = 100e-9
        self.period_s = 1e-6
        self.leading_s = 2e-9
        self.trailing_s = 2e-9
        self.output_on = False
        self.arm_source = "IMM"
        self.triggers = 0

    def _set_high(self, args: list[str]) -> None:
        limit = self.dut.high_level_max_V
        value = number(args, "high level", -limit, limit, "V")
        if value <= self.low_V:
            raise BenchError(SETTINGS_CONFLICT, "high level must lie above the low level")
        self.high_V = value

    def _set_low(self, args: list[str]) -> None:
        value = number(args, "low level", -LOW_LEVEL_MAX_V, LOW_LEVEL_MAX_V, "V")
        if value >= self.high_V:
            raise BenchError(SETTINGS_CONFLICT, "low level must lie below the high level")
        self.low_V = value

    def _set_width(self, args: list[str]) -> None:
        self.width_s = number(args, "pulse width", *WIDTH_RANGE_S, "s")

    def _set_period(self, args: list[str]) -> None:
        self.period_s = number(args, "pulse period", *PERIOD_RANGE_S, "s")

    def _set_leading(self, args: list[str]) -> None:
        self.leading_s = number(args, "leading edge", *EDGE_RANGE_S, "s")

    def _set_trailing(self, args: list[str]) -> None:
        self.trailing_s = number(args, "trailing edge", *EDGE_RANGE_S, "s")

    def _set_output(self, args: list[str]) -> None:
        on = boolean(args, "output")
        if on and self.arm_source == "IMM":
            raise BenchError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: arm MAN"
            )
        self.output_on = on

    def _set_arm(self, args: list[str]) -> None:
        options = {
            "IMM": "IMM",
            "IMMEDIATE": "IMM",
            "MAN": "MAN",
            "MANUAL": "MAN",
            "EXT": "EXT",
            "EXTERNAL": "EXT",
            "EXT1": "EXT",
            "EXTERNAL1": "EXT",
        }
        value = choice(args, "arm source", options)
        if value == "IMM" and self.output_on:
            raise BenchError(
                SETTINGS_CONFLICT, "continuous pulsing (ARM:SOUR IMM) is not emulated: output on"
            )
        self.arm_source = value

    def trigger(self) -> None:
        """*TRG: one pulse into the routed device, after the checks (class docstring)."""
        if self.arm_source != "MAN":
            raise BenchError(SETTINGS_CONFLICT, f"*TRG needs ARM:SOUR MAN (is {self.arm_source})")
        if not self.output_on:
            raise BenchError(SETTINGS_CONFLICT, "output off: the pulse would reach nothing")
        low_ns, high_ns = self.dut.width_limits_ns
        width_ns = self.width_s * 1e9
        if not low_ns <= width_ns <= high_ns:
            raise BenchError(
                DATA_OUT_OF_RANGE,
                f"pulse width {width_ns:g} ns outside the device's safe {low_ns:g}...{high_ns:g} ns",
            )
        if self.width_s >= self.period_s:
            raise BenchError(SETTINGS_CONFLICT, "pulse width must be below the period")
        current = self.dut.current_uA(self.high_V)
        if current > self.dut.current_max_uA * (1 + 1e-9):
            raise BenchError(
                DATA_OUT_OF_RANGE,
                f"pulse current {current:g} uA above the safe {self.dut.current_max_uA:g} uA",
            )
        self.dut.pulse(self.high_V, self.width_s)
        self.triggers += 1


# --- the bench and its servers ---------------------------------------------------------------------


class EmulatedBench:
    """N devices, an SMU with the switch matrix and a pulse generator, all wired together."""

    def __init__(
        self,
        devices: int = 16,
        seed: int = 0,
        *,
        real_time: bool = False,
        model: PcmModel = DEFAULT_MODEL,
        series_resistance_ohm: float = SERIES_RESISTANCE_OHM,
    ) -> None:
        self.seed = seed
        self.dut = BenchDevices(
            devices,
            seed,
            real_time=real_time,
            model=model,
            series_resistance_ohm=series_resistance_ohm,
        )
        self.smu = SourceMeterEmulator(self.dut)
        self.pulse_generator = PulseGeneratorEmulator(self.dut)

    @property
    def chip(self) -> EmulatedChip:
        """The emulated chip holding the bench's devices (tile 0, address = channel − 1)."""
        return self.dut.chip

    def serve(self, host: str = "127.0.0.1", smu_port: int = 0, pulse_port: int = 0) -> BenchServer:
        """Both instruments on TCP sockets (not started: use as a context manager or start())."""
        return BenchServer(self, host, smu_port, pulse_port)


class InstrumentServer:
    """One instrument on a TCP socket, ``TCPIP0::host::port::SOCKET``: LF-terminated SCPI
    text. Several clients may be connected; their messages run one at a time.

    Each socket gets ``TCP_NODELAY`` and, after every receive, ``TCP_QUICKACK`` (Linux):
    drivers send a setting and then ``:SYST:ERR?`` as two small writes, and a client without
    TCP_NODELAY (pyvisa-py's default) holds the second until the first is acknowledged — a
    delayed acknowledgement would cost ~40 ms per setting.
    """

    def __init__(self, instrument: ScpiInstrument, host: str = "127.0.0.1", port: int = 0):
        self.instrument = instrument
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self.connections = 0

    @property
    def resource(self) -> str:
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    def start(self) -> InstrumentServer:
        self._thread = threading.Thread(target=self._accept, name="bench-accept", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._clients_lock:
                self._clients.add(connection)
                self.connections += 1
            threading.Thread(
                target=self._serve, args=(connection,), name="bench-client", daemon=True
            ).start()

    def _serve(self, connection: socket.socket) -> None:
        framer = self.instrument.new_framer()
        quick_ack = getattr(socket, "TCP_QUICKACK", None)
        try:
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if quick_ack is not None:
                    connection.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)
                reply = self.instrument.feed(framer, data)
                if reply:
                    connection.sendall(reply)
        except OSError:
            pass  # the client went away; a partial message dies with its framer
        finally:
            with self._clients_lock:
                self._clients.discard(connection)
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> InstrumentServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BenchServer:
    """The SMU and the pulse generator of a bench, each a ``TCPIP0::host::port::SOCKET``."""

    def __init__(self, bench: EmulatedBench, host: str, smu_port: int, pulse_port: int) -> None:
        self.bench = bench
        self.smu = InstrumentServer(bench.smu, host=host, port=smu_port)
        try:
            self.pulse = InstrumentServer(bench.pulse_generator, host=host, port=pulse_port)
        except BaseException:
            self.smu.stop()
            raise

    @property
    def resources(self) -> dict[str, str]:
        return {"SMU": self.smu.resource, "PULSE": self.pulse.resource}

    @property
    def bench_resource(self) -> str:
        """``SMU_RESOURCE,PULSE_RESOURCE``: what ``--bench`` and ``BenchTarget.open`` take."""
        return f"{self.smu.resource},{self.pulse.resource}"

    def start(self) -> BenchServer:
        self.smu.start()
        self.pulse.start()
        return self

    def stop(self) -> None:
        self.smu.stop()
        self.pulse.stop()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(
    devices: int = 16,
    seed: int = 0,
    host: str = "127.0.0.1",
    smu_port: int = 5100,
    pulse_port: int = 5101,
    *,
    real_time: bool = False,
    out=None,
    err=None,
) -> None:
    """``pcm-hil emulator bench``: serve a bench until Ctrl-C or SIGTERM. Prints one line per
    instrument on ``out``: ``SMU <resource>`` then ``PULSE <resource>``."""
    import sys

    out = out or sys.stdout
    err = err or sys.stderr
    bench = EmulatedBench(devices, seed, real_time=real_time)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with bench.serve(host, smu_port, pulse_port) as server:
        for name, resource in server.resources.items():
            print(f"{name} {resource}", file=out, flush=True)
        print(
            f"serving an emulated bench ({devices} devices on a 1-of-{devices} switch, seed "
            f"{seed}, {SERIES_RESISTANCE_OHM:g} Ω series resistor, "
            f"{'real-time' if real_time else 'virtual'} clock); Ctrl-C stops",
            file=err,
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
