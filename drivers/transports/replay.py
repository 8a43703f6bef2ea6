"""A cassette played back as the instrument: the resource ``replay:PATH`` (options after ``?``).

The recorded session is a list of exchanges — the bytes the host wrote, then the bytes it read
back — with the input clears, reconnects and failed reads between them. Replaying, each write
must be the next exchange's bytes, in order (``ReplayMismatchError`` otherwise, naming the
exchange and showing the recorded and the actual command), and then the reads are served its
recorded reply, however they cut it; a read the recording did not make is a mismatch too, and a
read that failed when recorded (a timeout) fails again the same way. Timestamps never have to
match: a replay does not wait.

Options (``replay:session.cassette?order=queries&partial=1``):

- ``order=queries``: consecutive exchanges that only ask (every unit of the message a query,
  ``…?``) may come in another order — a script that now reads the temperature before the clock.
  Anything that is not a pure query still has to come exactly where it was recorded.
- ``partial=1``: replay a cassette whose last record is torn (its recorder was killed) up to its
  last whole exchange; by default such a cassette is refused, saying where it ends.

``ReplayTransport.remaining`` is the number of recorded exchanges not yet replayed: a test that
requires the script to do everything it did when recorded checks it is 0 (the ``pcm_replay``
fixture does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np

from pcm_hil.protocols.cassette import Cassette, describe, read_cassette
from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    ReplayMismatchError,
    ResourceError,
    TransportError,
)

_QUERY_UNIT = re.compile(rb"^\s*[*:]?[A-Za-z][A-Za-z0-9:*]*\?")
#: Queries that change what the next answer is — reading the error queue, the event status
#: register, a self-test: never moved past one another under ``order=queries``.
_SIDE_EFFECTS = re.compile(rb"^\s*(:?SYST(EM)?:ERR|\*ESR|\*TST|\*RST|\*CLS)", re.IGNORECASE)
_ERROR_QUERY = re.compile(rb"^\s*:?SYST(EM)?:ERR(OR)?(:NEXT)?\?\s*$", re.IGNORECASE)
_NO_ERROR = b'0,"No error"\n'
_ERRORS = {cls.__name__: cls for cls in (ChipTimeoutError, ChipDisconnectedError, TransportError)}


@dataclass
class Exchange:
    """One step of a recorded session: ``kind`` ``"send"`` (``sent``, then ``reply``),
    ``"clear"``, ``"open"`` or ``"error"`` (a failed read or write: ``error`` is ``read`` or
    ``write``, the error's class name and its message)."""

    kind: str
    sent: bytes = b""
    reply: bytes = b""
    error: str = ""
    used: bool = False
    position: int = 0

    @property
    def only_asks(self) -> bool:
        """Every message unit written is a query (no setting, no pulse)."""
        if self.kind != "send":
            return False
        messages = [m for m in self.sent.split(b"\n") if m.strip()]
        units = [unit for m in messages for unit in m.split(b";") if unit.strip()]
        if units and _ERROR_QUERY.match(units[-1]) and self.reply.endswith(_NO_ERROR):
            units = units[:-1]  # the driver's check of an empty error queue changes nothing
        return bool(units) and all(
            _QUERY_UNIT.match(unit) and not _SIDE_EFFECTS.match(unit) for unit in units
        )


def exchanges(cassette: Cassette) -> list[Exchange]:
    """The cassette's records as exchanges, in order, numbered from 1."""
    out: list[Exchange] = []
    current: Exchange | None = None
    for record in cassette.records:
        if record.kind == "W":
            if current is None or current.reply:
                current = Exchange("send")
                out.append(current)
            current.sent += record.data
        elif record.kind == "R":
            if current is None:  # read before any write (a greeting): an exchange of its own
                current = Exchange("send")
                out.append(current)
            current.reply += record.data
        else:
            current = None
            if record.kind == "C":
                out.append(Exchange("clear"))
            elif record.kind == "O":
                out.append(Exchange("open"))
            elif record.kind == "E":
                out.append(Exchange("error", error=record.data.decode("utf-8", "replace")))
    for number, exchange in enumerate(out, start=1):
        exchange.position = number
    return out


@dataclass
class ReplayTransport:
    """The transport of a ``replay:`` resource (see the module)."""

    resource: str
    path: str
    steps: list[Exchange]
    order: str = "strict"
    _next: int = 0  # the first exchange not yet replayed
    _open: Exchange | None = None  # the exchange being written, partly
    _written: int = 0  # of its bytes
    _pending: bytearray = field(default_factory=bytearray)
    departed: str | None = None  # where the script left the recording, once it has

    # --- the transport --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        data = bytes(data)
        while data:
            step = self._open or self._take(data)
            expected = step.sent[self._written : self._written + len(data)]
            if not data.startswith(expected) or not expected:
                self._mismatch(step, data)
            self._written += len(expected)
            data = data[len(expected) :]
            if self._written == len(step.sent):  # all written: its reply is there to read
                self._pending += step.reply
                self._open, self._written = None, 0
                self._fail_if_recorded("write")

    #: Read by ``ChipClock``: a replayed chip's clock answers from the recording, so waiting
    #: on it never sleeps (the polls the recording made are answered at once).
    replaying = True

    def read(self, exact: int | None) -> bytes:
        self._late_replies()
        if exact is None:
            newline = self._pending.find(b"\n")
            count = newline + 1 if newline >= 0 else None
        else:
            count = exact if exact <= len(self._pending) else None
        if count is None:
            self._short_read(exact)
        data = bytes(self._pending[:count])
        del self._pending[:count]
        return data

    def _late_replies(self) -> None:
        """Bytes the recording read with nothing written first — a reply that came after a
        timeout, a greeting — are there to read once the script reads where they were."""
        if self._pending or self._open is not None:
            return
        step = self._upcoming()
        while step is not None and step.kind == "send" and not step.sent:
            step.used = True
            self._pending += step.reply
            step = self._upcoming()

    def read_into(self, buffer: memoryview) -> None:
        buffer[:] = self.read(len(buffer))

    def clear(self) -> None:
        self._pending.clear()
        self._expect("clear", "cleared its input")

    def reopen(self) -> ReplayTransport:
        """A reconnect: the recording must have reconnected here too."""
        self._expect("open", "opened the connection again")
        return self

    def close(self) -> None:
        pass

    # --- where the replay is ---------------------------------------------------------------------

    @property
    def remaining(self) -> int:
        """Recorded exchanges not yet replayed."""
        return sum(1 for step in self.steps[self._next :] if not step.used) + bool(self._open)

    def _upcoming(self) -> Exchange | None:
        while self._next < len(self.steps) and self.steps[self._next].used:
            self._next += 1
        return self.steps[self._next] if self._next < len(self.steps) else None

    def _take(self, data: bytes) -> Exchange:
        """The exchange a new write starts: the next one, or with ``order=queries`` one of the
        queries recorded next to it that this write matches."""
        step = self._upcoming()
        if step is None:
            raise self._departed(
                f"replay of {self.path}: the recording ends after exchange {len(self.steps)}, "
                f"but the script wrote {describe(data)!r}"
            )
        if step.kind != "send":
            self._mismatch(step, data)
        if not step.sent.startswith(data[: len(step.sent)]) and self.order == "queries":
            for later in self.steps[self._next :]:
                if later.used:
                    continue
                if not later.only_asks:
                    break
                if later.sent.startswith(data[: len(later.sent)]):
                    step = later
                    break
        step.used = True
        self._open = step
        self._upcoming()
        return step

    def _expect(self, kind: str, what: str) -> None:
        step = self._upcoming()
        if step is None or step.kind != kind or self._open is not None:
            shown = "the end of the recording" if step is None else self._shown(step)
            raise self._departed(
                f"replay of {self.path}: the script {what}; the recording has {shown} there"
            )
        step.used = True
        self._upcoming()

    def _fail_if_recorded(self, operation: str) -> None:
        """Raise the error the recording met next, if it met one in ``operation``."""
        step = self._upcoming()
        if step is None or step.kind != "error" or self._open is not None:
            return
        recorded, _space, rest = step.error.partition(" ")
        if recorded != operation:
            return
        step.used = True
        self._upcoming()
        name, _space, message = rest.partition(" ")
        raise _ERRORS.get(name, TransportError)(f"{message} (replayed from {self.path})")

    def _short_read(self, exact: int | None) -> None:
        """A read the recorded reply does not hold: fail as the recording did, or mismatch."""
        self._fail_if_recorded("read")
        step = self._upcoming()
        wanted = "a line" if exact is None else f"{exact} bytes"
        held = len(self._pending)
        where = "the end of the recording" if step is None else self._shown(step)
        raise self._departed(
            f"replay of {self.path}: the script reads {wanted} where the recorded reply holds "
            f"{held} more byte(s); next in the recording: {where}"
        )

    def _departed(self, message: str) -> ReplayMismatchError:
        """The error that says where the script left the recording (kept: ``departed``)."""
        self.departed = message
        return ReplayMismatchError(message)

    def _mismatch(self, step: Exchange, data: bytes) -> None:
        detail = difference(step.sent, data) if step.kind == "send" else ""
        raise self._departed(
            f"replay of {self.path}: exchange {step.position} of {len(self.steps)} differs\n"
            f"  recorded: {self._shown(step)}\n"
            f"  script:   {describe(data)!r}" + (f"\n  {detail}" if detail else "")
        )

    @staticmethod
    def _shown(step: Exchange) -> str:
        if step.kind == "send":
            return repr(describe(step.sent))
        if step.kind == "error":
            return f"a failed read ({step.error})"
        return {"clear": "a clear of the input", "open": "a reconnect"}[step.kind]


def difference(recorded: bytes, script: bytes) -> str:
    """Where two messages first differ, in the chip's terms when both are its commands: the
    command, the argument, and for a block the first element that differs."""
    from pcm_hil.protocols.chip import COMMANDS
    from pcm_hil.protocols.codec import split_units, unit_arguments
    from pcm_hil.protocols.framing import MessageFramer

    def units(data: bytes) -> list[bytes]:
        messages = MessageFramer(max_text=1 << 20, max_block=1 << 30).feed(data)
        return [u for m in messages if isinstance(m, bytes) for u in split_units(m)]

    for a, b in zip(units(recorded), units(script), strict=False):
        if a == b:
            continue
        known_a, known_b = unit_arguments(a, COMMANDS), unit_arguments(b, COMMANDS)
        if known_a is None or known_b is None or known_a[0] is not known_b[0]:
            return f"the command differs: {describe(a, 60)!r} vs {describe(b, 60)!r}"
        command, values = known_a
        for name, value in values.items():
            other = known_b[1].get(name)
            if isinstance(value, np.ndarray) and isinstance(other, np.ndarray):
                if value.shape != other.shape:
                    return f"{command.short_form} {name}: {value.size} values recorded, {other.size} now"
                where = np.flatnonzero(value != other)
                if where.size:
                    k = int(where[0])
                    return (
                        f"{command.short_form} {name}[{k}]: recorded {value[k]}, now "
                        f"{other[k]} ({where.size} of {value.size} differ)"
                    )
            elif value != other:
                shown = other.decode("ascii", "replace") if isinstance(other, bytes) else other
                return f"{command.short_form} {name}: recorded {value.decode('ascii', 'replace')}, now {shown}"
        return f"{command.short_form}: the same arguments, spelled differently"
    position = next(
        (i for i, (x, y) in enumerate(zip(recorded, script, strict=False)) if x != y),
        min(len(recorded), len(script)),
    )
    return f"first different byte: {position}"


def open_replay(resource: str, timeout_s: float = 10.0) -> ReplayTransport:
    """The transport of ``replay:PATH[?order=strict|queries&partial=0|1]``."""
    text = resource.strip().removeprefix("replay:")
    path, _sep, query = text.partition("?")
    options = dict(parse_qsl(query))
    order = options.pop("order", "strict")
    partial = options.pop("partial", "0")
    if order not in ("strict", "queries") or partial not in ("0", "1") or options:
        raise ResourceError(
            f"bad replay options in {resource!r}: order=strict|queries, partial=0|1"
        )
    if not path:
        raise ResourceError(f"{resource!r} names no cassette: replay:PATH")
    try:
        cassette = read_cassette(path)
    except FileNotFoundError:
        raise ResourceError(f"no cassette at {path}") from None
    if not cassette.complete and partial != "1":
        raise ResourceError(
            f"{path} ends in a torn record after {cassette.valid_bytes} bytes (its recorder "
            "was stopped mid-write): add ?partial=1 to replay it up to there"
        )
    return ReplayTransport(resource.strip(), path, exchanges(cassette), order)
