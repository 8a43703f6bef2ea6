"""The byte link between a host and an instrument: what every transport offers, and the
errors it raises.

The drivers open transports by resource string (``pcm_hil.drivers.transports``); the emulator
offers its own, in process, and registers it under the resource ``emulator``. Both sides
stand on this contract, so neither imports the other.
"""

from __future__ import annotations

from typing import Protocol


class PcmHilError(Exception):
    """Base of every error pcm-hil raises on purpose."""


class ResourceError(PcmHilError, ValueError):
    """A resource string that names no transport we can open, or names it badly."""


class TransportError(PcmHilError):
    """The transport failed: see the subclasses."""


class ChipTimeoutError(TransportError, TimeoutError):
    """No (complete) reply within the timeout."""


class ChipDisconnectedError(TransportError, ConnectionError):
    """The connection to the instrument is gone."""


class ReplayMismatchError(TransportError):
    """A script replayed against a cassette did not do what the recorded one did: it wrote
    another command, or read where nothing had been read (the message says what was expected
    and what came, and where)."""


class Transport(Protocol):
    """Bytes to and from an instrument. ``read(None)`` returns up to and including the next
    LF; ``read(n)`` exactly ``n`` bytes (inside a binary block, where LF is data). Timeouts
    raise ``ChipTimeoutError``, a lost connection ``ChipDisconnectedError``."""

    resource: str

    def write(self, data: bytes) -> None: ...

    def read(self, exact: int | None) -> bytes: ...

    def read_into(self, buffer: memoryview) -> None:
        """Fill ``buffer`` with exactly ``len(buffer)`` bytes."""

    def clear(self) -> None:
        """Forget whatever has arrived and not been read."""

    def close(self) -> None: ...


class CopyInto:
    """``read_into`` by way of ``read``: one copy (transports without a zero-copy path)."""

    def read(self, exact: int | None) -> bytes:
        raise NotImplementedError

    def read_into(self, buffer: memoryview) -> None:
        buffer[:] = self.read(len(buffer))
