"""Typed exceptions of the drivers. Chip errors carry the protocol's code and message.

The transport errors (``ResourceError``, ``TransportError``, ``ChipTimeoutError``,
``ChipDisconnectedError``) and the base ``PcmHilError`` belong to the byte-link contract
(``pcm_hil.protocols.transport``) and are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcm_hil.protocols.chip import CHIP_BUSY, COMMANDS, PULSE_OUTSIDE_LIMITS
from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    PcmHilError,
    ResourceError,
    TransportError,
)

if TYPE_CHECKING:
    from pcm_hil.protocols.errors import ErrorEntry

__all__ = [
    "ChipBusyError",
    "ChipDisconnectedError",
    "ChipError",
    "ChipTimeoutError",
    "PcmHilError",
    "ProtocolVersionError",
    "PulseLimitError",
    "ResourceError",
    "TransportError",
    "chip_error",
]


class ProtocolVersionError(PcmHilError):
    """The chip speaks a protocol major version this driver does not."""


class ChipError(PcmHilError):
    """An error with a protocol code: reported by the chip (``sent=True``) or found by the
    driver's own check of the command table before sending (``sent=False``)."""

    #: Set by the driver when it drains the error queue after the entry it raises: the
    #: entries that followed (absent where it raised without draining: nothing was sent, or
    #: the chip answered *IDN? with an error).
    further: list[ErrorEntry]

    def __init__(
        self, code: int, detail: str = "", *, command: str = "", sent: bool = True
    ) -> None:
        self.code = code
        self.message = COMMANDS.errors.get(code, "Unknown error")
        self.detail = detail
        self.command = command
        self.sent = sent
        where = f" [{command}]" if command else ""
        tail = f": {detail}" if detail else ""
        origin = "" if sent else " (refused by the driver, not sent)"
        super().__init__(f"{code} {self.message}{tail}{where}{origin}")


class PulseLimitError(ChipError):
    """A pulse outside the chip's safe limits (code 101)."""


class ChipBusyError(ChipError):
    """Another client controls the chip (code 105)."""


_BY_CODE: dict[int, type[ChipError]] = {
    PULSE_OUTSIDE_LIMITS: PulseLimitError,
    CHIP_BUSY: ChipBusyError,
}


def chip_error(code: int, detail: str = "", *, command: str = "", sent: bool = True) -> ChipError:
    """The ChipError subclass for a code."""
    return _BY_CODE.get(code, ChipError)(code, detail, command=command, sent=sent)
