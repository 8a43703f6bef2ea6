"""What one connection may cost an instrument: the sizes and timeouts every server enforces.

An instrument served by this package (``ScpiDevice`` behind the TCP, pty or in-process server)
holds, per connection, at most one program message being received and one response message
unit being sent. ``ServingLimits`` bounds both, so that no sequence of bytes a client sends
raises the server's memory by more than a fixed amount, and says how long a connection may
hold an exclusive instrument without making progress. SPEC.md renders these values.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcm_hil.protocols.blocks import MAX_BLOCK_BYTES
from pcm_hil.protocols.framing import MAX_TEXT_BYTES

MiB = 1 << 20


@dataclass(frozen=True)
class ServingLimits:
    """Per-connection limits of a served instrument (sizes in bytes, times in s)."""

    max_text_bytes: int = MAX_TEXT_BYTES
    """Non-block bytes of one program message (headers, numbers, separators); more: -363 and
    the rest of the message, up to its LF, is discarded."""
    max_message_bytes: int = 17 * MiB
    """Block bytes of one program message, all its blocks together (at most
    ``MAX_BLOCK_BYTES``); a block header that would go beyond: -223, and the block's
    announced bytes are skipped unstored, then the rest of the message up to its LF. Big
    enough for an MVM batch whose reply is ``max_reply_bytes``."""
    max_reply_bytes: int = 16 * MiB
    """One response message unit (one query's reply, block header included); more: the
    query is refused with 106 "Reply too large" and nothing is sent."""
    max_connections: int = 64
    """Connections open at once, served or waiting for an exclusive instrument; more are
    closed at once (an exclusive instrument first sends its busy line)."""
    partial_timeout_s: float = 5.0
    """A connection holding part of a message (a line without its LF, a block not yet
    complete) that receives nothing more for this long is closed, and the partial message
    discarded: an exclusive instrument is then free for the next client."""
    idle_timeout_s: float | None = None
    """A connection between messages that sends nothing for this long is closed; None: it
    may stay open (a drift measurement holds the chip for days between reads)."""
    send_stall_timeout_s: float = 60.0
    """A client that reads nothing of a reply for this long is dropped; one that keeps
    reading, however slowly, gets every byte."""

    def __post_init__(self) -> None:
        if self.max_message_bytes > MAX_BLOCK_BYTES:
            raise ValueError(f"max_message_bytes is at most {MAX_BLOCK_BYTES}")
        for name in ("max_text_bytes", "max_message_bytes", "max_reply_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("partial_timeout_s", "send_stall_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # also refuses nan
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")


#: The limits an instrument is served with unless told otherwise.
DEFAULT_LIMITS = ServingLimits()
