"""Raw SCPI on a chip: ``chip.write(command)``, ``chip.query(command)`` and
``chip.query_block(command, dtype)`` — for what the driver has no method for (a firmware debug
command, a setting newer than this pcm-hil).

A raw message is still one program message, and still checked before it is sent: every unit
whose header the chip's command table knows is parsed and checked against the chip's limits
exactly as the driver's own methods are — an out-of-limit pulse raises ``PulseLimitError`` and
nothing is sent; a unit the table does not know goes as it is (the chip checks it and answers
with an error code if it is wrong). After the message the driver reads the chip's error queue,
in the same round trip, and raises the typed ``ChipError`` of its code, as for every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike

from pcm_hil.drivers.errors import chip_error
from pcm_hil.protocols.blocks import decode_array, parse_header
from pcm_hil.protocols.chip import COMMANDS
from pcm_hil.protocols.codec import is_error_entry, parse_message, parse_reply, split_units
from pcm_hil.protocols.errors import UNDEFINED_HEADER, ScpiError
from pcm_hil.protocols.framing import MessageFramer

if TYPE_CHECKING:
    from pcm_hil.protocols.errors import ErrorEntry
    from pcm_hil.protocols.table import Limits
    from pcm_hil.protocols.transport import Transport

_ERROR_QUERY = COMMANDS.by_handler("error_next").short_form.encode()
_ERROR_REPLY = COMMANDS.by_handler("error_next").reply
_MARKER = COMMANDS.by_handler("operation_complete_query").short_form.encode()  # *OPC?


class RawAccess:
    """The raw-SCPI methods of ``PcmChip`` (see the module). What they use of the driver:"""

    transport: Transport
    _limits: Limits
    _closed: bool

    def _read_message(self) -> bytes:
        raise NotImplementedError

    def _raise(self, entry: ErrorEntry, command: str) -> None:
        raise NotImplementedError

    def write(self, command: str | bytes) -> None:
        """Send one program message that asks nothing (no ``…?`` unit); raise the chip's error
        if it reports one."""
        message, asks = _checked(self, command)
        if asks:
            raise ValueError(f"{_shown(message)} asks for a reply: use query() or query_block()")
        self.transport.write(message + b"\n" + _ERROR_QUERY + b"\n")
        self._check_errors(_shown(message))

    def query(self, command: str | bytes) -> str:
        """Send one program message with at least one query; its response message as text
        (several queries: their replies ``;``-separated, as the chip sent them)."""
        reply = self._raw_reply(command)
        return reply.decode("ascii", "replace")

    def query_block(self, command: str | bytes, dtype: DTypeLike) -> np.ndarray:
        """Send a query whose reply is one binary block; the block as a 1-D array of ``dtype``
        (little-endian unless the dtype says otherwise)."""
        reply = self._raw_reply(command)
        if not reply.startswith(b"#"):
            raise ValueError(f"{_shown(command)} answered {reply[:40]!r}, not a binary block")
        start, length = parse_header(reply)
        stop = len(reply) if length < 0 else start + length
        wanted = np.dtype(dtype)
        if wanted.byteorder in ("=", "|"):  # native or none said: the wire's little-endian
            wanted = wanted.newbyteorder("<")
        return decode_array(reply[start:stop], wanted.str).copy()

    def _raw_reply(self, command: str | bytes) -> bytes:
        """Send a query message, then ``*OPC?`` and the error query: the stream holds its
        response message (none if its first unit failed), ``1``, and the error entry — told
        apart by their order, whatever the response says."""
        message, asks = _checked(self, command)
        if not asks:
            raise ValueError(f"{_shown(message)} asks for nothing: use write()")
        self.transport.write(message + b"\n" + _MARKER + b"\n" + _ERROR_QUERY + b"\n")
        first, second = self._read_message(), self._read_message()
        if is_error_entry(second) is not None:  # "1", then the error entry: no response
            reply = None
            entry = parse_reply(_ERROR_REPLY, second)
        else:  # the response, "1", the error entry
            reply = first
            entry = parse_reply(_ERROR_REPLY, self._read_message())
        if entry.code != 0:
            self._raise(entry, _shown(message))
        if reply is None:
            raise ValueError(f"{_shown(message)} got no response and no error")
        return reply

    def _check_errors(self, shown: str) -> None:
        entry = parse_reply(_ERROR_REPLY, self._read_message())
        if entry.code != 0:
            self._raise(entry, shown)


def _checked(chip: RawAccess, command: str | bytes) -> tuple[bytes, bool]:
    """The message to send (one program message, its terminator stripped) and whether it
    asks; every unit the command table knows checked against the chip's limits first."""
    if chip._closed:
        from pcm_hil.drivers.errors import TransportError

        raise TransportError("the driver is closed")
    given = command.encode("ascii") if isinstance(command, str) else bytes(command)
    # the message as given, or without its terminator (LF or CR LF): whichever frames as
    # exactly itself — a final binary block may end in byte 0x0A, which is data, not an end
    message = b""
    for candidate in (given, given.removesuffix(b"\n").removesuffix(b"\r")):
        pieces = MessageFramer(max_text=1 << 20, max_block=1 << 30).feed(candidate + b"\n")
        if pieces == [candidate] and candidate.strip():
            message = candidate
            break
    if not message:
        raise ValueError(f"{_shown(given)}: send one program message (no line feed inside)")
    asks = False
    for unit in split_units(message):
        header = unit.strip().split(None, 1)[0] if unit.strip() else b""
        asks |= header.endswith(b"?")
        try:
            for _parsed in parse_message(unit, COMMANDS, chip._limits):
                pass
        except ScpiError as error:
            if error.code == UNDEFINED_HEADER:
                continue  # not in the table: the chip checks it
            raise chip_error(
                error.code, error.detail, command=header.decode("ascii", "replace"), sent=False
            ) from None
    return message, asks


def _shown(command: str | bytes) -> str:
    from pcm_hil.protocols.cassette import describe

    return describe(command.encode("ascii") if isinstance(command, str) else bytes(command), 60)
