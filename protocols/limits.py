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
    """One response message unit (one query's reply, its block header not counted); more:
    the query is refused with -225 "Out of memory" and nothing of it is sent. The chip's
    MVM batch (``MVM:BATCh?``) is capped so that a full batch's reply fits."""
    max_connections: int = 64
    """Connections open at once, served or waiting for an exclusive instrument; more are
    closed at once (an exclusive instrument first sends its busy line)."""
    partial_timeout_s: float = 5.0
    """A connection holding part of a message (a line without its LF, a block not yet
    complete) that receives nothing more for this long is closed, and the partial message
    discarded: an exclusive instrument is then free for the next client."""
    partial_min_rate_Bps: float = 65536.0
    """And a partial message must keep coming at this rate on average: one held longer than
    ``partial_timeout_s`` + (its bytes so far) / this rate is dropped the same way, so a
    trickle of a byte now and then cannot hold the chip."""
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
        for name in (
            "partial_timeout_s",
            "partial_min_rate_Bps",
            "send_stall_timeout_s",
            "idle_timeout_s",
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:  # also refuses nan
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")


#: The limits an instrument is served with unless told otherwise.
DEFAULT_LIMITS = ServingLimits()


class PartialWatch:
    """When a connection's partial message is to be dropped (``ServingLimits``): too long
    without a byte, or too long for the bytes it has brought. Times are arguments (s, from
    any monotonic clock); a server tells it what it heard and asks it when it waits."""

    def __init__(self, limits: ServingLimits, now: float) -> None:
        self.limits = limits
        self.last_heard = now
        self.since: float | None = None  # when the partial message began
        self.bytes = 0  # bytes received since then

    def heard(self, now: float, received: int, pending: bool) -> None:
        """``received`` bytes arrived at ``now``; ``pending``: a partial message is left."""
        self.last_heard = now
        if not pending:
            self.since, self.bytes = None, 0
        elif self.since is None:
            self.since, self.bytes = now, 0
        else:
            self.bytes += received

    def expired(self, now: float, pending: bool) -> str | None:
        """Why the partial message is to be dropped at ``now``, or None."""
        if not pending:
            return None
        limits = self.limits
        if now - self.last_heard > limits.partial_timeout_s:
            return f"a partial message, nothing more for {limits.partial_timeout_s:g} s"
        held = now - (self.since if self.since is not None else self.last_heard)
        if held > limits.partial_timeout_s + self.bytes / limits.partial_min_rate_Bps:
            return (
                f"a partial message held {held:.1f} s for {self.bytes} bytes (slower than "
                f"{limits.partial_min_rate_Bps:g} B/s)"
            )
        return None
