"""Fault injection for the emulated chip: a deterministic plan of things that go wrong.

A ``FaultPlan`` describes faults of two kinds.

*Connection faults* happen on a connection to the chip (a TCP connection to ``TcpServer``,
or one ``servers.inprocess.InProcessTransport``). They are counted, per connection, in
program messages: message 1 is the first complete, LF-terminated message the chip receives on
that connection, and every message counts whether or not it has a reply (the pcm-hil driver
sends a command and its ``SYST:ERR?`` as two messages; a query with arguments likewise; a
query without arguments is one message). Messages the framer discards (-363, -223) are not
counted. Block replies are counted separately: block reply 1 is the first response message on
the connection that carries a definite-length block. Every count restarts on a new
connection, so a plan fires again on each connection that gets far enough. Randomness
(which bytes a corruption flips, which devices become stuck) comes from generators seeded by
``seed``: the same plan does the same thing every time.

*Device faults* (``stuck_fraction``, ``drift_factor``) change the chip itself, once, when the
plan is applied to it (``apply_to_chip``; ``TcpServer`` and ``InProcessTransport`` do that
when they are constructed with a plan).

The compact text form, for the command line, is ``key=value`` pairs separated by commas,
pairs of numbers joined by ``:`` (``FaultPlan.parse`` / ``FaultPlan.format``):

    drop_after=100,delay_s=2,delay_from=5,error_reply=12:-200,temperature_excursion=20:350
"""

from __future__ import annotations

import math
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from pcm_hil.protocols.blocks import parse_header
from pcm_hil.protocols.chip import COMMANDS
from pcm_hil.protocols.errors import ScpiError
from pcm_hil.protocols.framing import MessageFramer

if TYPE_CHECKING:
    from pcm_hil.emulator.chip import EmulatedChip
    from pcm_hil.emulator.wire import WireInterface

#: The detail text of an error entry pushed by ``error_reply``.
INJECTED_DETAIL = "injected fault"

_PAIR_FIELDS = {"error_reply": (int, int), "temperature_excursion": (int, float)}


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, and when. Every fault is off by default; see the module docstring for
    how messages and block replies are counted (per connection, 1-based)."""

    delay_s: float = 0.0
    """Delay, in seconds, of every reply to message ``delay_from`` and later (messages with
    no reply are not delayed). The message executes at once; only its reply is late. Set it
    above the client's timeout to make the client time out. On TCP the server waits without
    blocking the chip for others: if the client closes meanwhile, the connection ends and the
    reply is discarded. In process there is nothing to wait for: the read that would get the
    reply raises ``ChipTimeoutError`` instead, and the reply is delivered to the next read
    (as a late reply arrives on a real link)."""
    delay_from: int = 1
    """First message whose reply is delayed by ``delay_s``."""
    drop_after: int | None = None
    """Close the connection after this many messages have executed: when message
    ``drop_after + 1`` arrives it is discarded unexecuted and the connection closed (replies
    to earlier messages have been sent). 0 drops at the first message."""
    drop_mid_block: int | None = None
    """On this block reply, send only the first half of the response message, then close."""
    corrupt_block: int | None = None
    """On this block reply, flip (XOR 0xFF) ``corrupt_bytes`` data bytes at seeded positions;
    the length is unchanged, so the protocol (no checksum) cannot notice."""
    corrupt_bytes: int = 4
    """How many data bytes ``corrupt_block`` flips (at most the block's length)."""
    truncate_block: int | None = None
    """On this block reply, send the header unchanged but only the first half of the data,
    then the LF: the block is shorter than its header says."""
    error_reply: tuple[int, int] | None = None
    """``(message, code)``: just before that message executes, push ``code`` (any code of
    the chip's table (``pcm_hil.protocols.chip.COMMANDS.errors``) but 0, e.g. -200 or a device code such as 101) onto the
    chip's error queue, with the detail ``"injected fault"``. The message itself executes
    normally; the error is read by the next ``SYST:ERR?``."""
    temperature_excursion: tuple[int, float] | None = None
    """``(messages, kelvin)``: once that many messages have executed (before the next one),
    the chip's temperature jumps to ``kelvin`` (which may lie outside the setpoint limits).
    It stays there until something sets it again (``TEMP``, ``*RST``)."""
    reset_after: int | None = None
    """Once this many messages have executed, when the next one arrives: the chip resets as
    at power-up — ``*RST`` (settings to defaults) and ``*CLS`` (error queue and event status
    cleared) — and the connection is dropped, as a power cycle would; that message is not
    executed. Device conductances are non-volatile and are kept, and the clock keeps running."""
    stuck_fraction: float = 0.0
    """Device fault: each device not already stuck becomes stuck with this probability, drawn
    from a generator seeded by ``seed``; stuck-SET or stuck-RESET in the proportion of the
    chip model's own stuck fractions (half and half if the model has none)."""
    drift_factor: float = 1.0
    """Device fault: every device's drift exponent ν is multiplied by this, now and at every
    later programming event (the chip's ν distribution is scaled): fast-drifting devices."""
    seed: int = 0
    """Seed of the random draws of ``corrupt_block`` and ``stuck_fraction``."""

    def __post_init__(self) -> None:
        def count(name: str, value: Any, minimum: int) -> None:
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"fault {name} must be an integer, not {value!r}")
            if value < minimum:
                raise ValueError(f"fault {name} must be at least {minimum}, not {value}")

        def number(name: str, value: Any, low: float, *, low_open: bool = False) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"fault {name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < low or (low_open and value == low):
                bound = f"above {low:g}" if low_open else f"at least {low:g}"
                raise ValueError(f"fault {name} must be finite and {bound}, not {value}")

        number("delay_s", self.delay_s, 0.0)
        count("delay_from", self.delay_from, 1)
        count("drop_after", self.drop_after, 0)
        count("drop_mid_block", self.drop_mid_block, 1)
        count("corrupt_block", self.corrupt_block, 1)
        count("corrupt_bytes", self.corrupt_bytes, 1)
        count("truncate_block", self.truncate_block, 1)
        count("reset_after", self.reset_after, 0)
        count("seed", self.seed, 0)
        if self.error_reply is not None:
            message, code = _pair("error_reply", self.error_reply)
            count("error_reply message", message, 1)
            if code == 0 or code not in COMMANDS.errors:
                raise ValueError(
                    f"fault error_reply code {code} is not an error code of the protocol "
                    f"(known: {', '.join(str(c) for c in COMMANDS.errors if c)})"
                )
            object.__setattr__(self, "error_reply", (int(message), int(code)))
        if self.temperature_excursion is not None:
            messages, kelvin = _pair("temperature_excursion", self.temperature_excursion)
            count("temperature_excursion messages", messages, 0)
            number("temperature_excursion kelvin", kelvin, 0.0, low_open=True)
            object.__setattr__(self, "temperature_excursion", (int(messages), float(kelvin)))
        number("stuck_fraction", self.stuck_fraction, 0.0)
        if self.stuck_fraction > 1:
            raise ValueError(f"fault stuck_fraction must be at most 1, not {self.stuck_fraction}")
        number("drift_factor", self.drift_factor, 0.0, low_open=True)

    # --- what the plan holds -------------------------------------------------------------------

    @property
    def connection_faults(self) -> bool:
        """True if any fault acts on connections (anything but the device faults)."""
        return (
            self.delay_s > 0
            or self.drop_after is not None
            or self.drop_mid_block is not None
            or self.corrupt_block is not None
            or self.truncate_block is not None
            or self.error_reply is not None
            or self.temperature_excursion is not None
            or self.reset_after is not None
        )

    @property
    def device_faults(self) -> bool:
        """True if the plan changes the chip's devices."""
        return self.stuck_fraction > 0 or self.drift_factor != 1.0

    def __bool__(self) -> bool:
        return self.connection_faults or self.device_faults

    # --- text form -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """A plan from its compact form, ``key=value,key=value``; pairs as ``a:b``
        (``error_reply=12:-200``). Empty text is the empty plan. Unknown keys, repeated keys
        and bad values raise ValueError."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, raw = (s.strip() for s in item.partition("="))
            if not sep or not raw:
                raise ValueError(f"fault {item!r} is not key=value")
            if key not in known:
                raise ValueError(f"unknown fault {key!r}; known: {', '.join(known)}")
            if key in values:
                raise ValueError(f"fault {key!r} given twice")
            try:
                if key in _PAIR_FIELDS:
                    first, colon, second = raw.partition(":")
                    if not colon:
                        raise ValueError(f"fault {key} takes two values, a:b, not {raw!r}")
                    kinds = _PAIR_FIELDS[key]
                    values[key] = (kinds[0](first), kinds[1](second))
                elif key in ("delay_s", "stuck_fraction", "drift_factor"):
                    values[key] = float(raw)
                else:
                    values[key] = int(raw)
            except ValueError as error:
                if str(error).startswith("fault "):
                    raise
                raise ValueError(f"bad value {raw!r} for fault {key}") from None
        return cls(**values)

    def format(self) -> str:
        """The compact form of the plan (only what differs from the defaults)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if isinstance(value, tuple):
                text = ":".join(_number_text(v) for v in value)
            else:
                text = _number_text(value)
            parts.append(f"{f.name}={text}")
        return ",".join(parts)

    def __str__(self) -> str:
        return self.format() or "no faults"

    # --- applying it -----------------------------------------------------------------------------

    def apply_to_chip(self, chip: EmulatedChip) -> None:
        """Apply the device faults to ``chip`` (nothing if there are none). Once per chip:
        applying the same device faults again does nothing, other device faults raise
        ValueError (they would compound)."""
        if not self.device_faults:
            return
        mine = (self.stuck_fraction, self.drift_factor, self.seed)
        applied = chip.device_faults
        if applied is not None:
            if applied == mine:
                return
            raise ValueError("other device faults were already applied to this chip")
        if self.drift_factor != 1.0:
            chip.scale_drift(self.drift_factor)
        if self.stuck_fraction > 0:
            chip.make_stuck(self.stuck_fraction, np.random.default_rng(self.seed))
        chip.device_faults = mine

    def session(
        self,
        wire: WireInterface,
        connection: int = 1,
        on_fault: Callable[[FaultEvent], None] | None = None,
    ) -> FaultSession:
        """The state of this plan on one connection to ``wire`` (number ``connection``)."""
        return FaultSession(self, wire, connection, on_fault)


def _pair(name: str, value: Any) -> tuple[Any, Any]:
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"fault {name} must be a pair, not {value!r}") from None
    return first, second


def _number_text(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class FaultEvent:
    """A fault that fired: on which connection, at which message, what it did."""

    connection: int
    message: int
    fault: str
    detail: str = ""
    wall_time_s: float = field(default_factory=time.time)

    def __str__(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"fault {self.fault} on connection {self.connection}, message {self.message}{tail}"


@dataclass(frozen=True)
class Outcome:
    """What to do with one message's result: wait ``delay_s``, send ``reply`` (maybe empty,
    maybe partial), then close the connection if ``close``."""

    reply: bytes = b""
    delay_s: float = 0.0
    close: bool = False


class FaultSession:
    """One connection's view of a plan: counts messages and block replies and applies the
    plan around the wire interface. Transport-independent: the server (or transport) does
    the waiting, sending and closing that each ``Outcome`` asks for."""

    def __init__(
        self,
        plan: FaultPlan,
        wire: WireInterface,
        connection: int = 1,
        on_fault: Callable[[FaultEvent], None] | None = None,
    ) -> None:
        self.plan = plan
        self.wire = wire
        self.connection = connection
        self.on_fault = on_fault
        self.messages = 0
        """Messages executed so far on this connection."""
        self.blocks = 0
        """Block replies produced so far on this connection."""
        self.closed = False
        self.events: list[FaultEvent] = []

    def feed(
        self, framer: MessageFramer, data: bytes | bytearray | memoryview
    ) -> Iterator[Outcome]:
        """Like ``WireInterface.feed``, one message at a time: yields an Outcome per message
        as it executes. Lazy: a message executes only when the previous outcome has been
        taken; stop iterating after an outcome that closes (nothing more is yielded)."""
        for item in framer.feed(data):
            if self.closed:
                return
            if isinstance(item, ScpiError):
                with self.wire.lock:
                    self.wire.push_error(item)
                continue
            yield self.process(item)

    def process(self, message: bytes) -> Outcome:
        """Execute one program message under the plan."""
        if self.closed:
            return Outcome(close=True)
        plan = self.plan
        number = self.messages + 1
        if plan.reset_after is not None and number > plan.reset_after:
            with self.wire.lock:
                self.wire.execute(b"*RST;*CLS")
            self._fire(number, "reset_after", "chip reset (*RST, *CLS); message not executed")
            return self._close()
        if plan.drop_after is not None and number > plan.drop_after:
            self._fire(number, "drop_after", "connection dropped; message not executed")
            return self._close()
        self.messages = number
        if plan.temperature_excursion is not None and number == plan.temperature_excursion[0] + 1:
            kelvin = plan.temperature_excursion[1]
            with self.wire.lock:
                self.wire.chip.set_temperature(kelvin)
            self._fire(number, "temperature_excursion", f"temperature now {kelvin:g} K")
        if plan.error_reply is not None and number == plan.error_reply[0]:
            code = plan.error_reply[1]
            with self.wire.lock:
                self.wire.push_error(ScpiError(code, INJECTED_DETAIL))
            self._fire(number, "error_reply", f"error {code} queued")
        reply = self.wire.execute(message)
        if reply is None:
            return Outcome()
        close = False
        block = find_block(reply)
        if block is not None:
            self.blocks += 1
            start, length = block
            if self.blocks == plan.drop_mid_block:
                reply = reply[: len(reply) // 2]
                close = True
                self._fire(number, "drop_mid_block", f"sent {len(reply)} bytes, then closed")
            elif self.blocks == plan.corrupt_block:
                reply, positions = corrupt(reply, start, length, plan.corrupt_bytes, plan.seed)
                self._fire(number, "corrupt_block", f"flipped data bytes {positions}")
            elif self.blocks == plan.truncate_block:
                reply = reply[: start + length // 2] + b"\n"
                self._fire(
                    number, "truncate_block", f"sent {length // 2} of {length} data bytes, then LF"
                )
        delay = plan.delay_s if plan.delay_s > 0 and number >= plan.delay_from else 0.0
        if delay:
            self._fire(number, "delay", f"reply delayed {delay:g} s")
        if close:
            self.closed = True
        return Outcome(reply, delay, close)

    def _close(self) -> Outcome:
        self.closed = True
        return Outcome(close=True)

    def _fire(self, message: int, fault: str, detail: str) -> None:
        event = FaultEvent(self.connection, message, fault, detail)
        self.events.append(event)
        if self.on_fault is not None:
            self.on_fault(event)


def find_block(reply: bytes) -> tuple[int, int] | None:
    """``(data_start, length)`` of the first definite-length block in a response message,
    or None. Blocks start a unit (units are ``;``-separated; quoted text is skipped)."""
    pos, end = 0, len(reply)
    while pos < end:
        if reply[pos] == 0x23 and pos + 1 < end and 0x31 <= reply[pos + 1] <= 0x39:
            try:
                return parse_header(reply, pos)
            except Exception:
                return None
        while pos < end and reply[pos] != 0x3B:  # to the end of this unit
            if reply[pos] == 0x22:  # a quoted string ("" inside is two strings in a row)
                close = reply.find(b'"', pos + 1)
                pos = end if close < 0 else close + 1
            else:
                pos += 1
        pos += 1
    return None


def corrupt(
    reply: bytes, start: int, length: int, count: int, seed: int
) -> tuple[bytes, list[int]]:
    """``reply`` with ``count`` data bytes of its block (``start``, ``length``) XORed with
    0xFF, at positions drawn from a generator seeded by ``seed``; and the positions (offsets
    into the block's data), sorted."""
    if length <= 0:
        return reply, []
    rng = np.random.default_rng(seed)
    positions = sorted(int(p) for p in rng.choice(length, size=min(count, length), replace=False))
    out = bytearray(reply)
    for p in positions:
        out[start + p] ^= 0xFF
    return bytes(out), positions


def hang_up(connection: socket.socket) -> None:
    """Close a TCP connection so that what was sent arrives first: FIN after the data, and
    any unread input drained (closing with unread input would send a reset instead)."""
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.setblocking(False)
        while connection.recv(1 << 16):
            pass
    except OSError:
        pass


def wait_for_client(
    connection: socket.socket, seconds: float, stop: Callable[[], bool] = lambda: False
) -> bool:
    """Wait ``seconds`` on a connection; False early if the peer closed it (or ``stop()``)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if stop():
            return False
        readable, _, _ = select.select([connection], [], [], min(remaining, 0.05))
        if readable:
            try:
                if not connection.recv(1, socket.MSG_PEEK):
                    return False  # the client closed: nobody waits for the reply
            except (BlockingIOError, TimeoutError):
                pass
            except OSError:
                return False
            # input waiting (kept for later): a close behind it cannot be seen; keep waiting
            time.sleep(min(max(deadline - time.monotonic(), 0.0), 0.05))
    return True


__all__ = ["INJECTED_DETAIL", "FaultEvent", "FaultPlan", "FaultSession", "Outcome"]
