"""SCPI error codes, the error queue and the event-status bits: one implementation for every
instrument.

Negative codes are the SCPI-1999 standard codes (SCPI Vol. 2, ch. 21), ``STANDARD_ERRORS``;
positive codes are an instrument's own, declared by its command table
(``CommandTable(device_errors=...)``). A table's ``errors`` maps every code it can report to
its message; the error queue and every exception a driver raises for a code look the message
up there. An error entry on the wire is ``<code>,"<message>[;<detail>]"``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

#: The SCPI standard codes an instrument of this package can report, with their messages.
STANDARD_ERRORS: dict[int, str] = {
    0: "No error",
    # Command errors (-100 … -199): the message could not be parsed.
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -160: "Block data error",
    -161: "Invalid block data",
    -168: "Block data not allowed",
    # Execution errors (-200 … -299): parsed, but cannot be carried out.
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -225: "Out of memory",
    # Device-specific errors (-300 … -399).
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}

#: Standard codes used by name in the code; each is a key of STANDARD_ERRORS.
NO_ERROR = 0
COMMAND_ERROR = -100
INVALID_CHARACTER = -101
SYNTAX_ERROR = -102
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
HEADER_SUFFIX_OUT_OF_RANGE = -114
BLOCK_DATA_ERROR = -160
INVALID_BLOCK_DATA = -161
BLOCK_NOT_ALLOWED = -168
EXECUTION_ERROR = -200
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
TOO_MUCH_DATA = -223
ILLEGAL_PARAMETER_VALUE = -224
OUT_OF_MEMORY = -225
QUEUE_OVERFLOW = -350
INPUT_BUFFER_OVERRUN = -363

#: Device-specific codes of the block-argument rules of the core (``table.Length`` and
#: ``table.Arg.unique``); a table whose arguments use those rules declares them with their
#: messages in its ``device_errors`` (the chip does: 102, 103, 106).
LENGTH_MISMATCH = 102
DUPLICATE_ADDRESS = 103
BATCH_TOO_LARGE = 106

#: Event-status-register bit set by each class of error (IEEE 488.2 §11.5.1).
ESR_OPERATION_COMPLETE = 0x01
ESR_QUERY_ERROR = 0x04
ESR_DEVICE_ERROR = 0x08
ESR_EXECUTION_ERROR = 0x10
ESR_COMMAND_ERROR = 0x20

#: Status-byte bits (IEEE 488.2 §11.2): error queue not empty, event status summary.
STB_ERROR_AVAILABLE = 0x04
STB_EVENT_SUMMARY = 0x20


def esr_bit(code: int) -> int:
    """The event-status-register bit an error of this code sets."""
    if -199 <= code <= -100:
        return ESR_COMMAND_ERROR
    if -299 <= code <= -200:
        return ESR_EXECUTION_ERROR
    if -499 <= code <= -400:
        return ESR_QUERY_ERROR
    if code == 0:
        return 0
    return ESR_DEVICE_ERROR


class ScpiError(Exception):
    """An error with a protocol code, raised while parsing or executing a command.

    ``detail`` says what exactly was wrong (which argument, which value, which limit). The
    message of the code is the instrument's (``CommandTable.errors``).
    """

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code};{detail}" if detail else str(code))


@dataclass(frozen=True)
class ErrorEntry:
    """One entry of the error queue."""

    code: int
    text: str

    @property
    def detail(self) -> str:
        """What follows the message, after ``;`` (empty if nothing)."""
        return self.text.partition(";")[2]

    def format(self) -> bytes:
        """The entry as a ``SYSTem:ERRor?`` reply: ``<code>,"<text>"`` (quotes doubled)."""
        quoted = self.text.replace('"', '""')
        return f'{self.code},"{quoted}"'.encode("ascii", "replace")


def entry(messages: Mapping[int, str], code: int, detail: str = "") -> ErrorEntry:
    """The queue entry for ``code`` with its message from ``messages``, and ``detail``."""
    try:
        message = messages[code]
    except KeyError:
        raise ValueError(f"error code {code} is not in this instrument's table") from None
    return ErrorEntry(code, f"{message};{detail}" if detail else message)


def parse_error_entry(reply: str) -> ErrorEntry:
    """Parse a ``SYSTem:ERRor?`` reply ``<code>,"<text>"`` into an entry."""
    code_text, sep, rest = reply.strip().partition(",")
    if not sep:
        raise ValueError(f"not an error-queue entry: {reply!r}")
    text = rest.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1].replace('""', '"')
    return ErrorEntry(int(code_text), text)


class ErrorQueue:
    """An instrument's SCPI error queue: first in, first out, bounded; messages from
    ``messages`` (the instrument's table).

    When the queue is full, the newest entry is replaced by -350 "Queue overflow" and further
    errors are dropped until an entry is read (SCPI-1999 Vol. 2, 21.8).
    """

    def __init__(self, messages: Mapping[int, str], capacity: int = 32) -> None:
        if capacity < 2:
            raise ValueError("error queue capacity must be at least 2")
        self.messages = messages
        self.capacity = capacity
        self._entries: deque[ErrorEntry] = deque()

    def push(self, code: int, detail: str = "") -> None:
        """Add an error; on overflow the last slot holds -350."""
        new = entry(self.messages, code, detail)  # an unknown code is a bug: raise at once
        if len(self._entries) >= self.capacity:
            if self._entries[-1].code != QUEUE_OVERFLOW:
                self._entries[-1] = entry(self.messages, QUEUE_OVERFLOW)
            return
        self._entries.append(new)

    def pop(self) -> ErrorEntry:
        """The oldest entry, or ``0,"No error"`` when empty."""
        if self._entries:
            return self._entries.popleft()
        return entry(self.messages, NO_ERROR)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
