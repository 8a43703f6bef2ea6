"""Messages to commands and back: parsing, argument checks, encoding, reply codecs.

Both sides use this module, for every instrument: an instrument (emulated) parses program
messages and formats replies; a driver encodes program messages — running the very same
argument checks before anything is sent — and parses replies. Framing is ``framing.py``.

Units within a message are separated by ``;`` and each is interpreted from the root of the
command tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pcm_hil.protocols.blocks import (
    IncompleteBlock,
    block_header,
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
    HEADER_SUFFIX_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    INVALID_CHARACTER,
    MISSING_PARAMETER,
    PARAMETER_NOT_ALLOWED,
    SYNTAX_ERROR,
    ErrorEntry,
    ScpiError,
    parse_error_entry,
)
from pcm_hil.protocols.table import Arg, Command, CommandTable, Dialect, Limits, Reply, resolve

_UNIT_SPECIAL = re.compile(rb"[;#\"']")
_HEADER = re.compile(rb"[A-Za-z0-9:*?_\[\]]+")
_INT = re.compile(rb"[+-]?\d+")
_NRF = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_CHANNELS = re.compile(rb"\(\s*@\s*([\d\s,:]*)\)")
_WHITESPACE = b" \t\r"
_KEYWORDS = {b"MIN": 0, b"MINIMUM": 0, b"MAX": 1, b"MAXIMUM": 1}
_PLAIN = Dialect()


def printable(raw: bytes, limit: int = 40) -> str:
    """ASCII-safe excerpt of client bytes for an error detail."""
    text = raw[:limit].decode("ascii", "replace")
    text = "".join(c if 32 <= ord(c) < 127 and c != '"' else "?" for c in text)
    return text + ("..." if len(raw) > limit else "")


# --- program messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCommand:
    """A command with its checked argument values (ints, floats, str, tuples, numpy arrays)."""

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
            raise ScpiError(INVALID_CHARACTER, f"at {printable(message[pos:])!r}")
        pos = match.end()
        command, _suffixes = table.resolve_header(match.group().decode("ascii"), limits)
        if pos < end and message[pos] not in b" \t;":
            raise ScpiError(INVALID_CHARACTER, f"after header at {printable(message[pos:])!r}")
        raw_args, pos = _split_args(message, pos)
        yield ParsedCommand(command, _convert_args(command, raw_args, limits))
        if pos < end:  # at ';'
            pos += 1


def unit_arguments(unit: bytes, table: CommandTable) -> tuple[Command, dict[str, Any]] | None:
    """One program message unit's command and its arguments as sent — blocks as arrays of
    their dtype, other arguments as their text — without checking them against any limit
    (to show how two units differ); None if it is not a unit of ``table``."""
    pos = _skip_space(unit, 0)
    match = _HEADER.match(unit, pos)
    if match is None:
        return None
    try:
        command, _suffixes = table.resolve_header(match.group().decode("ascii"), None)
        raw, _end = _split_args(unit, match.end())
    except (ScpiError, IncompleteBlock):
        return None
    values: dict[str, Any] = {}
    for arg, token in zip(command.args, raw, strict=False):
        if arg.kind == "block" and isinstance(token, tuple):
            try:
                values[arg.name] = decode_array(token[0], arg.dtype)
            except ScpiError:
                values[arg.name] = bytes(token[0])
        else:
            values[arg.name] = token if isinstance(token, bytes) else bytes(token[0])
    return command, values


def _skip_space(message: bytes, pos: int) -> int:
    while pos < len(message) and message[pos] in _WHITESPACE:
        pos += 1
    return pos


def _split_args(message: bytes, pos: int) -> tuple[list[bytes | tuple[bytes | memoryview]], int]:
    """Split the arguments of one unit; blocks come back as a 1-tuple holding their data.
    Commas inside quotes and inside a channel list's parentheses do not split.

    Returns the arguments and the position of the ``;`` ending the unit (or the end).
    """
    args: list[bytes | tuple[bytes | memoryview]] = []
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
            data: bytes | memoryview
            try:
                data_start, length = parse_header(message, pos)
                if length < 0:  # '#0': to the end of the message
                    data, pos = decode_block(message, pos)
                else:  # a view of the message, not a copy: a block can be megabytes
                    pos = data_start + length
                    if pos > end:
                        raise IncompleteBlock(pos)
                    data = memoryview(message)[data_start:pos]
            except IncompleteBlock as error:
                raise ScpiError(SYNTAX_ERROR, "block shorter than its header says") from error
            args.append((data,))
            pos = _skip_space(message, pos)
        else:
            start = pos
            while pos < end and message[pos] not in b",;":
                char = message[pos]
                if char in b"\"'(":
                    close = message.find(b")" if char == 0x28 else bytes([char]), pos + 1)
                    pos = end if close < 0 else close + 1
                else:
                    pos += 1
            args.append(message[start:pos].strip(_WHITESPACE))
        if pos >= end or message[pos] == 0x3B:
            return args, pos
        if message[pos] != 0x2C:
            raise ScpiError(SYNTAX_ERROR, f"expected ',' or ';' at {printable(message[pos:])!r}")
        pos += 1


def _convert_args(
    command: Command, raw: list[bytes | tuple[bytes | memoryview]], limits: Limits
) -> dict[str, Any]:
    args = command.args
    repeat = bool(args) and args[-1].repeat
    if len(raw) > len(args) and not repeat:
        raise ScpiError(
            PARAMETER_NOT_ALLOWED,
            f"{command.short_form} takes {len(args)} argument(s), got {len(raw)}",
        )
    if len(raw) < len(args):
        raise ScpiError(MISSING_PARAMETER, f"{command.short_form} needs {args[len(raw)].name}")
    values: dict[str, Any] = {}
    for index, arg in enumerate(args):
        if arg.repeat:
            values[arg.name] = tuple(_value(arg, token, limits) for token in raw[index:])
        else:
            values[arg.name] = _value(arg, raw[index], limits)
    check_values(command, values, limits)
    return values


def _value(arg: Arg, token: bytes | tuple[bytes | memoryview], limits: Limits) -> Any:
    if arg.kind == "block":
        if not isinstance(token, tuple):
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be a binary block")
        return decode_array(token[0], arg.dtype)
    if isinstance(token, tuple):
        raise ScpiError(BLOCK_NOT_ALLOWED, f"{arg.name} must not be a block")
    return _scalar(arg, token, limits)


def _scalar(arg: Arg, token: bytes, limits: Limits) -> Any:
    if not token:
        raise ScpiError(MISSING_PARAMETER, f"{arg.name} is empty")
    kind = arg.kind
    if kind == "int":
        if _INT.fullmatch(token) is None:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={printable(token)!r} is not an integer")
        return int(token)
    if kind == "float":
        if arg.keywords and token.upper() in _KEYWORDS:
            bound = arg.bounds(limits)[_KEYWORDS[token.upper()]]
            if bound is not None:
                return bound
        if _NRF.fullmatch(token) is None:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={printable(token)!r} is not a number")
        return float(token)
    if kind == "bool":
        word = token.upper()
        if word in (b"1", b"ON"):
            return True
        if word in (b"0", b"OFF"):
            return False
        raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={printable(token)!r} is not ON/OFF/1/0")
    if kind == "string":
        if len(token) < 2 or token[:1] not in (b'"', b"'") or token[-1:] != token[:1]:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be a quoted string")
        quote = token[:1]
        text = token[1:-1].replace(quote + quote, quote).decode("ascii", "replace")
        return _string_choice(arg, text)
    if kind == "channels":
        match = _CHANNELS.fullmatch(token)
        if match is None:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be a channel list (@1,2:4)")
        return _channel_list(arg, match.group(1).decode("ascii"))
    return _enum_choice(arg, token.decode("ascii", "replace"))


def _enum_choice(arg: Arg, text: str) -> str:
    word = text.strip().upper()
    for choice in arg.choices:
        if word in (choice.upper(), short_mnemonic(choice)):
            return short_mnemonic(choice)
    raise ScpiError(
        ILLEGAL_PARAMETER_VALUE, f"{arg.name}={printable(text.encode())!r} not one of {arg.choices}"
    )


def _string_choice(arg: Arg, text: str) -> str:
    if not arg.choices:
        return text
    for choice in arg.choices:
        if text.strip().upper() == choice.upper():
            return choice
    raise ScpiError(
        ILLEGAL_PARAMETER_VALUE, f"{arg.name}={printable(text.encode())!r} not one of {arg.choices}"
    )


def _channel_list(arg: Arg, text: str) -> tuple[int, ...]:
    channels: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, colon, last = part.partition(":")
        if not first.strip().isdigit() or (colon and not last.strip().isdigit()):
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}: {part!r} is not a channel or range")
        low, high = int(first), int(last) if colon else int(first)
        if high < low or high - low > 4096:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{arg.name}: bad channel range {part!r}")
        channels.extend(range(low, high + 1))
    return tuple(channels)


def short_mnemonic(mnemonic: str) -> str:
    """The short form of a mnemonic (its capitals): ``VIRTual`` → ``VIRT``."""
    short = "".join(c for c in mnemonic if not c.islower())
    return short or mnemonic.upper()


def check_values(command: Command, values: Mapping[str, Any], limits: Limits) -> None:
    """Check every argument against its type, range and length rules; raise ScpiError."""
    counts: dict[str, int] = {}
    scope = dict(limits)  # bounds may name limits and earlier arguments
    for arg in command.args:
        value = values[arg.name]
        if arg.kind == "block":
            _check_block(arg, value, counts, scope)
            continue
        for item in value if arg.repeat else (value,):
            for number in item if arg.kind == "channels" else (item,):
                _check_scalar(arg, number, scope)
        if arg.kind in ("int", "float") and not arg.repeat:
            scope[arg.name] = value


def _check_scalar(arg: Arg, value: Any, scope: dict[str, Any]) -> None:
    if arg.kind == "float" and not np.isfinite(value):
        raise ScpiError(DATA_OUT_OF_RANGE, f"{arg.name} is not finite")
    if arg.kind in ("int", "channels") and not -(2**63) <= value < 2**63:
        raise ScpiError(DATA_OUT_OF_RANGE, f"{arg.name} does not fit in 64 bits")
    if arg.kind in ("int", "float", "channels"):
        arg.check_range(value, scope)


def _check_block(
    arg: Arg, array: np.ndarray, counts: dict[str, int], scope: dict[str, Any]
) -> None:
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


def encode_command(
    command: Command,
    values: Mapping[str, Any],
    limits: Limits,
    *,
    suffix: int | None = None,
    dialect: Dialect = _PLAIN,
    terminator: bytes = b"",
) -> bytes:
    """The program message unit for ``command``, then ``terminator`` (by default none), after
    every check the instrument itself would make: a value of the wrong type or out of range
    raises ScpiError and nothing is encoded. ``suffix`` goes where the spelling has ``#``."""
    if suffix is not None and command.has_suffix:
        top = resolve(command.suffix_max, limits) or 1
        if isinstance(suffix, bool) or not 1 <= suffix <= top:
            raise ScpiError(HEADER_SUFFIX_OUT_OF_RANGE, f"suffix {suffix} outside 1...{top:g}")
    prepared = prepare_values(command, values, limits)
    pieces: list[bytes | memoryview] = [command.send_form(suffix).encode()]
    for n, arg in enumerate(command.args):
        pieces.append(b"," if n else b" ")
        value = prepared[arg.name]
        if arg.kind == "block":  # header and data as pieces: the one join copies the data once
            data = np.ascontiguousarray(value, dtype=np.dtype(arg.dtype)).reshape(-1)
            pieces += block_header(data.nbytes), data.view(np.uint8).data
        elif arg.repeat:
            pieces.append(b",".join(_text(arg, item, dialect) for item in value))
        else:
            pieces.append(_text(arg, value, dialect))
    pieces.append(terminator)
    return b"".join(pieces)


def prepare_values(command: Command, values: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """``values`` as the command's argument types (blocks as contiguous arrays of their
    dtype), after every check the instrument makes; ScpiError if one fails."""
    prepared: dict[str, Any] = {}
    for arg in command.args:
        if arg.name not in values:
            raise ScpiError(MISSING_PARAMETER, f"{command.short_form} needs {arg.name}")
        value = values[arg.name]
        if arg.repeat:
            items = (value,) if isinstance(value, (str, bytes)) or np.isscalar(value) else value
            prepared[arg.name] = tuple(_prepare(arg, item) for item in items)
            if not prepared[arg.name]:
                raise ScpiError(MISSING_PARAMETER, f"{command.short_form} needs {arg.name}")
        else:
            prepared[arg.name] = _prepare(arg, value)
    unknown = set(values) - {arg.name for arg in command.args}
    if unknown:
        raise ScpiError(PARAMETER_NOT_ALLOWED, f"{command.short_form} has no {sorted(unknown)}")
    check_values(command, prepared, limits)
    return prepared


def _prepare(arg: Arg, value: Any) -> Any:
    """``value`` as the argument's type, or ScpiError (-104, -224) if it is not one."""
    kind = arg.kind
    if kind == "block":
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must be numeric")
        if np.dtype(arg.dtype).kind in "iu" and array.dtype.kind == "f":
            if array.size and not np.array_equal(array, np.round(array)):
                raise ScpiError(DATA_TYPE_ERROR, f"{arg.name} must hold integers")
        if np.dtype(arg.dtype).kind in "iu" and array.size:
            # before the cast, which would wrap: 2**32 + 5 must not become address 5
            limits = np.iinfo(np.dtype(arg.dtype))
            lowest, highest = array.min(), array.max()
            if lowest < limits.min or highest > limits.max:
                bad = lowest if lowest < limits.min else highest
                raise ScpiError(
                    arg.range_error, f"{arg.name} holds {bad}, outside {np.dtype(arg.dtype).name}"
                )
        return np.ascontiguousarray(array.ravel(), dtype=np.dtype(arg.dtype))
    if kind in ("int", "float"):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not a number")
        if kind == "float":
            return float(value)
        if int(value) != value:
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not an integer")
        return int(value)
    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().upper() in ("ON", "OFF", "1", "0"):
            return value.strip().upper() in ("ON", "1")
        raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not True/False (ON/OFF)")
    if kind == "channels":
        channels = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
        if not channels or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in channels
        ):
            raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not a channel list")
        return tuple(int(c) for c in channels)
    if not isinstance(value, str):
        raise ScpiError(DATA_TYPE_ERROR, f"{arg.name}={value!r} is not a string")
    return _string_choice(arg, value) if kind == "string" else _enum_choice(arg, value)


def _text(arg: Arg, value: Any, dialect: Dialect) -> bytes:
    kind = arg.kind
    if kind == "bool":
        return dialect.true_false[0 if value else 1].encode()
    if kind == "float":
        return dialect.number(value).encode()
    if kind == "string":
        quote = dialect.quote
        return f"{quote}{value.replace(quote, quote * 2)}{quote}".encode("ascii", "replace")
    if kind == "channels":
        return format_channels(value).encode()
    return str(value).encode()


def format_channels(channels: tuple[int, ...]) -> str:
    """A channel list as SCPI writes it: ``(@1,3)``, ``(@)`` for none."""
    return "(@" + ",".join(str(c) for c in channels) + ")"


def format_reply(reply: Reply, value: Any, dialect: Dialect = _PLAIN) -> bytes:
    """One response message unit for a query's result."""
    kind = reply.kind
    if kind == "int":
        return str(int(value)).encode()
    if kind == "float":
        return dialect.reply_number(value).encode()
    if kind == "bool":
        return b"1" if value else b"0"
    if kind == "text":
        return str(value).encode("ascii", "replace")
    if kind == "string":
        return ('"' + str(value).replace('"', '""') + '"').encode("ascii", "replace")
    if kind == "enum":
        return short_mnemonic(value).encode()
    if kind == "ints":
        return b",".join(str(int(v)).encode() for v in value)
    if kind == "floats":
        return b",".join(dialect.reply_number(v).encode() for v in value)
    if kind == "channels":
        return format_channels(tuple(value)).encode()
    if kind == "error":
        return value.format()
    if kind == "block":
        return encode_array(value, reply.dtype)
    raise ValueError(f"reply kind {kind} has no format")


def parse_reply(reply: Reply, unit: bytes) -> Any:
    """Decode one response message unit according to the query's reply row; ValueError if
    it is not of that kind."""
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
    if kind == "bool":
        word = text.upper()
        if word in ("1", "ON", "0", "OFF"):
            return word in ("1", "ON")
        return bool(float(text))  # "+1.000E+00"
    if kind == "text":
        return text
    if kind == "string":
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1].replace(text[0] * 2, text[0])
        return text
    if kind == "enum":
        word = text.strip("\"'").upper()
        for choice in reply.choices:
            if word in (choice.upper(), short_mnemonic(choice)):
                return short_mnemonic(choice)
        if reply.choices:
            raise ValueError(f"{text!r} is not one of {reply.choices}")
        return text
    if kind == "ints":
        return tuple(int(v) for v in text.split(","))
    if kind == "floats":
        return tuple(float(v) for v in text.split(","))
    if kind == "channels":
        match = _CHANNELS.fullmatch(text.encode())
        if match is None:
            raise ValueError(f"{text!r} is not a channel list")
        return tuple(int(c) for c in match.group(1).decode().replace(" ", "").split(",") if c)
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
