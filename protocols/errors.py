"""Error codes of the chip protocol and the chip's error queue.

Negative codes are the SCPI-1999 standard codes (SCPI Vol. 1, ch. 21); positive codes are
this chip's device-specific codes. A code and its message live in one table, ``ERRORS``; every
error the chip reports, and every exception the driver raises for it, looks its message up
there. An error entry on the wire is ``<code>,"<message>[;<detail>]"``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: code -> standard message. Order is the order of the written specification.
ERRORS: dict[int, str] = {
    0: "No error",
    # Command errors (-100 … -199): the message could not be parsed.
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -160: "Block data error",
    -161: "Invalid block data",
    -168: "Block data not allowed",
    # Execution errors (-200 … -299): parsed, but cannot be carried out.
    -200: "Execution error",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    # Device-specific errors (-300 … -399).
    -350: "Queue overflow",
    -363: "Input buffer overrun",
    # Device-specific codes of the PCM test chip (positive).
    101: "Pulse outside safe limits",
    102: "Array length mismatch",
    103: "Duplicate address in one command",
    104: "Virtual clock not available",
    105: "Chip busy",
}

#: Error codes used by name in the code; each is a key of ERRORS.
COMMAND_ERROR = -100
INVALID_CHARACTER = -101
SYNTAX_ERROR = -102
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
BLOCK_DATA_ERROR = -160
INVALID_BLOCK_DATA = -161
BLOCK_NOT_ALLOWED = -168
EXECUTION_ERROR = -200
DATA_OUT_OF_RANGE = -222
TOO_MUCH_DATA = -223
ILLEGAL_PARAMETER_VALUE = -224
QUEUE_OVERFLOW = -350
INPUT_BUFFER_OVERRUN = -363
PULSE_OUTSIDE_LIMITS = 101
LENGTH_MISMATCH = 102
DUPLICATE_ADDRESS = 103
VIRTUAL_CLOCK_UNAVAILABLE = 104
CHIP_BUSY = 105

#: Event-status-register bit set by each class of error (IEEE 488.2 §11.5.1).
ESR_OPERATION_COMPLETE = 0x01
ESR_QUERY_ERROR = 0x04
ESR_DEVICE_ERROR = 0x08
ESR_EXECUTION_ERROR = 0x10
ESR_COMMAND_ERROR = 0x20


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

    ``detail`` says what exactly was wrong (which argument, which value, which limit).
    """

    def __init__(self, code: int, detail: str = "") -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code}")
        self.code = code
        self.message = ERRORS[code]
        self.detail = detail
        super().__init__(self.entry)

    @property
    def entry(self) -> str:
        """The error as it appears on the queue: message and detail, ``;``-separated."""
        return f"{self.message};{self.detail}" if self.detail else self.message


@dataclass(frozen=True)
class ErrorEntry:
    """One entry of the error queue."""

    code: int
    text: str

    def format(self) -> bytes:
        """The entry as a ``SYSTem:ERRor?`` reply: ``<code>,"<text>"`` (quotes doubled)."""
        quoted = self.text.replace('"', '""')
        return f'{self.code},"{quoted}"'.encode("ascii", "replace")


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
    """The chip's SCPI error queue: first in, first out, bounded.

    When the queue is full, the newest entry is replaced by -350 "Queue overflow" and further
    errors are dropped until an entry is read (SCPI-1999 Vol. 2, 21.8).
    """

    def __init__(self, capacity: int = 32) -> None:
        if capacity < 2:
            raise ValueError("error queue capacity must be at least 2")
        self.capacity = capacity
        self._entries: deque[ErrorEntry] = deque()

    def push(self, code: int, detail: str = "") -> None:
        """Add an error; on overflow the last slot holds -350."""
        if len(self._entries) >= self.capacity:
            if self._entries[-1].code != QUEUE_OVERFLOW:
                self._entries[-1] = ErrorEntry(QUEUE_OVERFLOW, ERRORS[QUEUE_OVERFLOW])
            return
        text = f"{ERRORS[code]};{detail}" if detail else ERRORS[code]
        self._entries.append(ErrorEntry(code, text))

    def pop(self) -> ErrorEntry:
        """The oldest entry, or ``0,"No error"`` when empty."""
        if self._entries:
            return self._entries.popleft()
        return ErrorEntry(0, ERRORS[0])

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
