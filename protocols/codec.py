"""Bytes to commands and back: message framing, parsing, argument checks, reply codecs.

Both sides use this module: the chip (emulator) frames and parses program messages and
formats replies; the driver encodes program messages (running the very same argument checks
before anything is sent) and frames and parses replies.

Framing: a message ends at LF (``\\n``; a CR just before it is ignored) that is not inside a
definite-length block. Units within a message are separated by ``;`` and each is interpreted
from the root of the command tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcm_hil.protocols.blocks import (
    MAX_BLOCK_BYTES,
    IncompleteBlock,
    decode_array,
    decode_block,
    encode_array,
    parse_header,
)
from pcm_hil.protocols.errors import (
    BLOCK_NOT_ALLOWED,
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    DUPLICATE_ADDRESS,
    ILLEGAL_PARAMETER_VALUE,
    INPUT_BUFFER_OVERRUN,
    INVALID_CHARACTER,
    MISSING_PARAMETER,
    PARAMETER_NOT_ALLOWED,
    SYNTAX_ERROR,
    TOO_MUCH_DATA,
    UNDEFINED_HEADER,
    ErrorEntry,
    ScpiError,
    parse_error_entry,
)
from pcm_hil.protocols.table import Arg, Command, CommandTable, Limits, Reply, resolve

#: Longest run of non-block bytes accepted in one message (headers, numbers, separators).
MAX_TEXT_BYTES = 4096

_SPECIAL = re.compile(rb"[\n#\"']")
_UNIT_SPECIAL = re.compile(rb"[;#\"']")
_HEADER = re.compile(rb"[A-Za-z0-9:*?_\[\]]+")
_INT = re.compile(rb"[+-]?\d+")
_NRF = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WHITESPACE = b" \t\r"


def _printable(raw: bytes, limit: int = 40) -> str:
    """ASCII-safe excerpt of client bytes for an error detail."""
    text = raw[:limit].decode("ascii", "replace")
    text = "".join(c if 32 <= ord(c) < 127 and c != '"' else "?" for c in text)
    return text + ("..." if len(raw) > limit else "")


class MessageFramer:
    """Splits a byte stream into messages, skipping over block data.

    ``feed`` returns, in order, each complete message (without its terminator) and each
    framing error (a ``ScpiError``: oversized text -363, bad block header -161, oversized
    block -223), after which the rest of that message is discarded up to the next LF.
    """

    def __init__(self, max_text: int = MAX_TEXT_BYTES, max_block: int = MAX_BLOCK_BYTES) -> None:
        self.max_text = max_text
        self.max_block = max_block
        self.reset()

    def reset(self) -> None:
        """Forget any partial message (a new connection, or a device clear)."""
        self._buf = bytearray()
        self._scan = 0
        self._block_end: int | None = None
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False

    @property
    def pending(self) -> bool:
        """True while part of a message is buffered."""
        return bool(self._buf)

    def bytes_needed(self) -> int | None:
        """Bytes still missing from the block being received, or None outside a block."""
        if self._block_end is None:
            return None
        return max(self._block_end - len(self._buf), 0)

    def feed(self, data: bytes) -> list[bytes | ScpiError]:
        self._buf += data
        out: list[bytes | ScpiError] = []
        buf = self._buf
        while True:
            if self._discarding:
                newline = buf.find(b"\n", self._scan)
                if newline < 0:
                    buf.clear()
                    self._scan = 0
                    return out
                self._start_next(newline + 1)
                continue
            if self._block_end is not None:
                if len(buf) < self._block_end:
                    return out
                self._scan = self._last_block_end = self._block_end
                self._block_end = None
            match = _SPECIAL.search(buf, self._scan)
            if match is None:
                self._scan = len(buf)
                if self._scan - self._block_bytes > self.max_text:
                    out.append(self._overrun())
                    continue
                return out
            pos = match.start()
            match = None  # a live match pins the bytearray and blocks resizing it
            if pos - self._block_bytes > self.max_text:
                out.append(self._overrun())
                continue
            char = buf[pos]
            if char == 0x0A:  # LF ends the message
                end = pos
                if end > self._last_block_end and end > 0 and buf[end - 1] == 0x0D:
                    end -= 1
                out.append(_copy_out(buf, end))
                self._start_next(pos + 1)
            elif char == 0x23:  # '#': a block if a digit follows
                if pos + 1 >= len(buf):
                    self._scan = pos
                    return out
                if not 0x30 <= buf[pos + 1] <= 0x39:
                    self._scan = pos + 1
                    continue
                try:
                    data_start, length = self._header(pos)
                except IncompleteBlock:
                    self._scan = pos
                    return out
                except ScpiError as error:
                    out.append(error)
                    self._discarding = True
                    self._scan = pos
                    continue
                if length < 0:  # '#0': the data runs to the next LF
                    self._scan = data_start
                    newline = buf.find(b"\n", data_start)
                    if (len(buf) if newline < 0 else newline) - data_start > self.max_block:
                        out.append(
                            ScpiError(TOO_MUCH_DATA, f"indefinite block exceeds {self.max_block}")
                        )
                        self._discarding = True
                        continue
                    if newline < 0:
                        return out
                    out.append(_copy_out(buf, newline))
                    self._start_next(newline + 1)
                else:
                    self._block_end = data_start + length
                    self._block_bytes += data_start + length - pos
            else:  # a quote: skip the string, which cannot span an LF
                close = buf.find(bytes([char]), pos + 1)
                newline = buf.find(b"\n", pos + 1)
                if close >= 0 and (newline < 0 or close < newline):
                    self._scan = close + 1
                elif newline >= 0:
                    self._scan = newline
                elif len(buf) - self._block_bytes > self.max_text:
                    out.append(self._overrun())
                else:
                    self._scan = pos
                    return out

    def _header(self, pos: int) -> tuple[int, int]:
        return _parse_header_limited(self._buf, pos, self.max_block)

    def _overrun(self) -> ScpiError:
        self._discarding = True
        return ScpiError(INPUT_BUFFER_OVERRUN, f"message text longer than {self.max_text} bytes")

    def _start_next(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._scan = 0
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False


def _copy_out(buf: bytearray, end: int) -> bytes:
    """``bytes(buf[:end])`` in one copy: the slice would be a second, short-lived buffer as
    large as the message, and for block replies that churns fresh pages on every read."""
    with memoryview(buf) as view:
        return bytes(view[:end])


def _parse_header_limited(buf: bytes | bytearray, pos: int, max_block: int) -> tuple[int, int]:
    data_start, length = parse_header(buf, pos)
    if length > max_block:
        raise ScpiError(TOO_MUCH_DATA, f"block of {length} bytes exceeds {max_block}")
    return data_start, length


# --- program messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCommand:
    """A command with its checked argument values (ints, floats, str, numpy arrays)."""

    command: Command
    values: dict[str, Any]


def parse_message(message: bytes, table: CommandTable, limits: Limits) -> Iterator[ParsedCommand]:
    """Parse a program message unit by unit.

    Yields each unit as soon as it is parsed and checked, so that the caller can execute it
    before the next is parsed. Raises ``ScpiError`` at the first bad unit; per SCPI, the rest
    of the message is then discarded.
    """
    pos, end = 0, len(message)
    while True:
        pos = _skip_space(message, pos)
        if pos >= end:
            return
        match = _HEADER.match(message, pos)
        if match is None:
            raise ScpiError(INVALID_CHARACTER, f"at {_printable(message[pos:])!r}")
        header = match.group().decode("ascii")
        pos = match.end()
        command = table.lookup(header)
        if command is None:
            raise ScpiError(UNDEFINED_HEADER, _printable(match.group()))
        if pos < end and message[pos] not in b" \t;":
            raise ScpiError(INVALID_CHARACTER, f"after header at {_printable(message[pos:])!r}")
        raw_args, pos = _split_args(message, pos)
        values = _convert_args(command, raw_args, limits)
        yield ParsedCommand(command, values)
        if pos < end:  # at ';'
            pos += 1


def _skip_space(message: bytes, pos: int) -> int:
    while pos < len(message) and message[pos] in _WHITESPACE:
        pos += 1
    return pos


def _split_args(message: bytes, pos: int) -> tuple[list[bytes | tuple[bytes]], int]:
    """Split the arguments of one unit; blocks come back as a 1-tuple holding their data.

    Returns the arguments and the position of the ``;`` ending the unit (or the end).
    """
    args: list[bytes | tuple[bytes]] = []
    end = len(message)
    pos = _skip_space(message, pos)
    if pos >= end or message[pos] == 0x3B:
        return args, pos
    while True:
        pos = _skip_space(message, pos)
        if (
            pos < end
            and message[pos] == 0x23
            and pos + 1 < end
            and 0x30 <= message[pos + 1] <= 0x39
        ):
            try:
                data, pos = decode_block(message, pos)
            except IncompleteBlock as error:
                raise ScpiError(SYNTAX_ERROR, "block shorter than its header says") from error
            args.append((data,))
            pos = _skip_space(message, pos)
        else:
            start = pos
            while pos < end and message[pos] not in b",;":
                if message[pos] in b"\"'":
                    close = message.find(message[pos : pos + 1], pos + 1)
                    pos = end if close < 0 else close + 1
                else:
                    pos += 1
            args.append(message[start:pos].strip(_WHITESPACE))
        if pos >= end or message[pos] == 0x3B:
            return args, pos
        if message[pos] != 0x2C:
            raise ScpiError(SYNTAX_ERROR, f"expected ',' or ';' at {_printable(message[pos:])!r}")
        pos += 1


def _convert_args(
    command: Command, raw: list[bytes | tuple[bytes]], limits: Limits
) -> dict[str, Any]:
    if len(raw) > len(command.args):
        raise ScpiError(
            PARAMETER_NOT_ALLOWED,
            f"{command.short_form} takes {len(command.args)} argument(s), got {len(raw)}",
        )
    if len(raw) < len(command.args):
        missing = command.args[len(raw)]
        raise ScpiError(MISSING_PARAMETER, f"{command.short_form} needs {missing.name}")
    values: dict[str, Any] = {}
    for arg, token in zip(command.args, raw, strict=True):
        if arg.kind == "block":
            if not isinstance(token, tuple):
                raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be a binary block")
            values[arg.name] = decode_array(token[0], arg.dtype)
        else:
            if isinstance(token, tuple):
                raise ScpiError(BLOCK_NOT_ALLOWED, f"{arg.name} must not be a block")
            values[arg.name] = _scalar(arg, token)
    check_values(command, values, limits)
    return values


def _scalar(arg: Arg, token: bytes) -> int | float | bool | str:
    if not token:
        raise ScpiError(MISSING_PARAMETER, f"{arg.name} is empty")
    if arg.kind == "int":
        if _INT.fullmatch(token) is None:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={_printable(token)!r} is not an integer")
        return int(token)
    if arg.kind == "float":
        if _NRF.fullmatch(token) is None:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={_printable(token)!r} is not a number")
        return float(token)
    if arg.kind == "bool":
        word = token.upper()
        if word in (b"1", b"ON"):
            return True
        if word in (b"0", b"OFF"):
            return False
        raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={_printable(token)!r} is not ON/OFF/1/0")
    for choice in arg.choices:  # enum
        if token.upper() in (choice.upper().encode(), _short(choice).encode()):
            return _short(choice)
    raise ScpiError(
        ILLEGAL_PARAMETER_VALUE, f"{arg.name}={_printable(token)!r} not one of {arg.choices}"
    )


def _short(mnemonic: str) -> str:
    short = "".join(c for c in mnemonic if not c.islower())
    return short or mnemonic.upper()


def check_values(command: Command, values: Mapping[str, Any], limits: Limits) -> None:
    """Check every argument against its type, range and length rules; raise ScpiError."""
    counts: dict[str, int] = {}
    scope = dict(limits)  # bounds may name chip limits and earlier arguments
    for arg in command.args:
        value = values[arg.name]
        if arg.kind != "block":
            if arg.kind == "float" and not np.isfinite(value):
                raise ScpiError(DATA_OUT_OF_RANGE, f"{arg.name} is not finite")
            if arg.kind == "int" and not -(2**63) <= value < 2**63:
                raise ScpiError(DATA_OUT_OF_RANGE, f"{arg.name} does not fit in 64 bits")
            if arg.kind in ("int", "float"):
                arg.check_range(value, scope)
                scope[arg.name] = value
            continue
        array = value
        counts[arg.name] = array.size
        arg.check_length(array.size, counts, scope)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ScpiError(DATA_OUT_OF_RANGE, f"{arg.name} holds NaN or infinity")
        low, high = resolve(arg.minimum, scope), resolve(arg.maximum, scope)
        if array.size and (low is not None or high is not None):
            lowest, highest = array.min(), array.max()
            if (low is not None and lowest < low) or (high is not None and highest > high):
                bad = lowest if low is not None and lowest < low else highest
                raise ScpiError(
                    arg.range_error,
                    f"{arg.name} holds {bad:g}{arg.unit_suffix}, outside {arg.range_text(scope)}",
                )
        if arg.unique and array.size > 1 and _has_duplicates(array):
            raise ScpiError(DUPLICATE_ADDRESS, f"a value appears twice in {arg.name}")


def _has_duplicates(array: np.ndarray) -> bool:
    """True if a value repeats; O(n) for sorted arrays and for small non-negative integers."""
    if (array[1:] > array[:-1]).all():
        return False
    if array.dtype.kind in "iu" and array.min() >= 0 and array.max() < 4 * array.size + 65536:
        return bool(np.bincount(array).max() > 1)
    return np.unique(array).size != array.size


# --- the driver's side: encode program messages, decode responses ----------------------------


def encode_command(command: Command, values: Mapping[str, Any], limits: Limits) -> bytes:
    """The program message unit for ``command`` (no terminator), after every check the chip
    itself would make: an out-of-range value raises ScpiError and nothing is encoded."""
    prepared: dict[str, Any] = {}
    for arg in command.args:
        if arg.name not in values:
            raise ScpiError(MISSING_PARAMETER, f"{command.short_form} needs {arg.name}")
        value = values[arg.name]
        if arg.kind == "block":
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be numeric")
            if np.dtype(arg.dtype).kind in "iu" and array.dtype.kind == "f":
                if array.size and not np.array_equal(array, np.round(array)):
                    raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must hold integers")
            if np.dtype(arg.dtype).kind in "iu" and array.size and array.min() < 0:
                raise ScpiError(arg.range_error, f"{arg.name} holds a negative value")
            prepared[arg.name] = np.ascontiguousarray(array.ravel(), dtype=np.dtype(arg.dtype))
        elif arg.kind == "int":
            if isinstance(value, (bool, np.bool_)) or int(value) != value:
                raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not an integer")
            prepared[arg.name] = int(value)
        elif arg.kind == "float":
            prepared[arg.name] = float(value)
        elif arg.kind == "bool":
            prepared[arg.name] = bool(value)
        else:
            prepared[arg.name] = _scalar(arg, str(value).encode())
    unknown = set(values) - {arg.name for arg in command.args}
    if unknown:
        raise ScpiError(PARAMETER_NOT_ALLOWED, f"{command.short_form} has no {sorted(unknown)}")
    check_values(command, prepared, limits)
    parts = []
    for arg in command.args:
        value = prepared[arg.name]
        if arg.kind == "block":
            parts.append(encode_array(value, arg.dtype))
        elif arg.kind == "bool":
            parts.append(b"1" if value else b"0")
        elif arg.kind == "float":
            parts.append(repr(value).encode())
        else:
            parts.append(str(value).encode())
    head = command.short_form.encode()
    return head + (b" " + b",".join(parts) if parts else b"")


def format_reply(reply: Reply, value: Any) -> bytes:
    """One response message unit for a query's result."""
    kind = reply.kind
    if kind == "int":
        return str(int(value)).encode()
    if kind == "float":
        return repr(float(value)).encode()
    if kind == "text":
        return str(value).encode("ascii", "replace")
    if kind == "enum":
        return _short(value).encode()
    if kind == "ints":
        return b",".join(str(int(v)).encode() for v in value)
    if kind == "floats":
        return b",".join(repr(float(v)).encode() for v in value)
    if kind == "error":
        return value.format()
    if kind == "block":
        return encode_array(value, reply.dtype)
    raise ValueError(f"reply kind {kind} has no format")


def parse_reply(reply: Reply, unit: bytes) -> Any:
    """Decode one response message unit according to the query's reply row."""
    kind = reply.kind
    if kind == "block":
        data_start, length = parse_header(unit)
        if length < 0 or data_start + length > len(unit):  # '#0' form, or short: the slow path
            data, _end = decode_block(unit)
            return decode_array(data, reply.dtype).copy()
        with memoryview(unit) as view:  # one copy, straight from the message
            return decode_array(view[data_start : data_start + length], reply.dtype).copy()
    text = unit.decode("ascii").strip()
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind in ("text", "enum"):
        return text
    if kind == "ints":
        return tuple(int(v) for v in text.split(","))
    if kind == "floats":
        return tuple(float(v) for v in text.split(","))
    if kind == "error":
        return parse_error_entry(text)
    raise ValueError(f"reply kind {kind} has no parser")


def split_units(message: bytes) -> list[bytes]:
    """Split a response message into its ``;``-separated units, skipping block data."""
    units, start, pos = [], 0, 0
    while True:
        match = _UNIT_SPECIAL.search(message, pos)
        if match is None:
            units.append(message[start:])
            return units
        pos = match.start()
        char = message[pos]
        if char == 0x3B:
            units.append(message[start:pos])
            start = pos = pos + 1
        elif char == 0x23:
            if pos + 1 < len(message) and 0x30 <= message[pos + 1] <= 0x39:
                data_start, length = parse_header(message, pos)
                pos = len(message) if length < 0 else data_start + length
                if pos > len(message):
                    raise IncompleteBlock(pos)
            else:
                pos += 1
        else:
            close = message.find(message[pos : pos + 1], pos + 1)
            pos = len(message) if close < 0 else close + 1


def is_error_entry(unit: bytes) -> ErrorEntry | None:
    """The error entry a unit holds, if it looks like ``<code>,"<text>"``; else None."""
    text = unit.strip()
    if not text.endswith(b'"') or b',"' not in text:
        return None
    try:
        return parse_error_entry(text.decode("ascii", "replace"))
    except ValueError:
        return None
