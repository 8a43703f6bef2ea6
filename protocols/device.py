"""An instrument's side of its command table: program messages in, response messages out.

``ScpiDevice`` is what every served instrument is — the emulated chip, the emulated
source-measure unit and pulse generator — and what the servers (TCP, pty, in-process) serve:
it frames a connection's bytes, executes each message unit against a handler, keeps the
SCPI error queue and the IEEE 488.2 status registers, and formats the replies. It knows no
physics and no sockets.

A subclass implements one method ``_do_<handler>`` per row of its table that is not a
common command (checked at construction: a row without a handler is a startup error), and
says who it is (``identity``). A plain setting — one the instrument only keeps and reports —
needs no code: its power-on value in ``defaults`` under the row's name makes ``set_<name>``
store its argument in ``settings[name]`` and the query ``<name>`` answer it.

A rejected command changes nothing: all arguments are parsed and checked by the table before
a handler runs, and handlers check their own preconditions before acting. A query that fails
sends no reply (IEEE 488.2): the client reads the error queue.

Replies are streamed: ``replies`` yields each query's reply as soon as it is made, before the
next message unit runs, so a server holds one reply at a time (at most
``serving.max_reply_bytes``; a larger one is refused with -225 "Out of memory").
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Protocol

from pcm_hil.protocols.codec import format_reply, parse_message
from pcm_hil.protocols.common import SCPI_VERSION, Identity
from pcm_hil.protocols.errors import (
    ESR_OPERATION_COMPLETE,
    EXECUTION_ERROR,
    OUT_OF_MEMORY,
    STB_ERROR_AVAILABLE,
    STB_EVENT_SUMMARY,
    ErrorEntry,
    ErrorQueue,
    ScpiError,
    esr_bit,
)
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.limits import DEFAULT_LIMITS, ServingLimits
from pcm_hil.protocols.table import Command, CommandTable

#: Longest block header (``#9`` and nine digits): not counted in ``max_reply_bytes``.
BLOCK_HEADER_BYTES = 11


class Served(Protocol):
    """What a server (TCP, pty, in process) needs of what it serves: a framer per
    connection, the replies to send, one at a time, for the bytes received, the limits a
    connection is held to, and for an exclusive instrument the refusal."""

    exclusive: bool
    serving: ServingLimits

    def new_framer(self) -> Any: ...

    def replies(self, framer: Any, data: bytes | bytearray | memoryview) -> Iterator[bytes]: ...

    def feed(self, framer: Any, data: bytes) -> bytes: ...

    def busy_entry(self) -> ErrorEntry: ...


class ScpiDevice:
    """The instrument side of ``table``, with the ``limits`` its range bounds name.
    Thread-safe: one message at a time (``lock``)."""

    #: Whether one client at a time controls the instrument (a server refuses the others
    #: with ``busy_entry()``).
    exclusive: bool = False

    #: Power-on values of the plain settings, by the name of their rows (see the module).
    defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        table: CommandTable,
        limits: Mapping[str, float],
        serving: ServingLimits = DEFAULT_LIMITS,
    ) -> None:
        self.table = table
        self.serving = serving
        """What one connection may cost (sizes, timeouts): read by the framer, the reply
        check and the servers."""
        self.settings: dict[str, Any] = dict(self.defaults)
        self.limits = dict(limits)
        self.errors = ErrorQueue(table.errors)
        self.esr = 0
        self.ese = 0
        self.messages = 0
        """Program messages executed so far."""
        self.lock = threading.RLock()
        self._handlers: dict[str, Callable[..., Any]] = {}
        for command in table:
            handler = self.handler_for(command)
            if handler is None:
                raise TypeError(f"no handler for {command.header} ({command.handler})")
            self._handlers[command.handler] = handler

    # --- what a subclass says ------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        raise NotImplementedError

    def handler_for(self, command: Command) -> Callable[..., Any] | None:
        """The callable that carries out ``command``: ``_do_<handler>``, else the store or
        the report of a plain setting (``defaults``)."""
        explicit = getattr(self, f"_do_{command.handler}", None)
        if explicit is not None:
            return explicit
        name = command.handler.removeprefix("set_")
        if name not in self.defaults:
            return None
        if command.is_query and name == command.handler:
            return lambda: self.settings[name]
        if not command.is_query and len(command.args) == 1 and name != command.handler:
            return _store(self, name, command.args[0].name)
        return None

    def reset_settings(self) -> None:
        """``*RST``: settings to their power-on values (``defaults``; a subclass adds its
        own)."""
        self.settings = dict(self.defaults)

    def self_test(self) -> bool:
        """``*TST?``: True when the instrument is consistent (here: always)."""
        return True

    def busy_entry(self) -> ErrorEntry:
        """The one line an exclusive instrument sends a client it refuses."""
        raise NotImplementedError(f"{type(self).__name__} is not exclusive")

    # --- the wire -------------------------------------------------------------------------------

    def new_framer(self) -> MessageFramer:
        """A framer for one connection's byte stream: blocks only where the table takes
        them, within the serving limits."""
        return MessageFramer(
            max_text=self.serving.max_text_bytes,
            max_block=self.serving.max_message_bytes,
            block_header=self.table.takes_block,
        )

    def replies(
        self, framer: MessageFramer, data: bytes | bytearray | memoryview
    ) -> Iterator[bytes]:
        """Take the bytes a connection received; yield what to send back, piece by piece, as
        each query runs (send each before asking for the next: the next unit runs then)."""
        for item in framer.messages(data):
            if isinstance(item, ScpiError):
                with self.lock:
                    self.push_error(item)
            else:
                yield from self.respond(item)

    def feed(self, framer: MessageFramer, data: bytes) -> bytes:
        """Process the bytes a connection received; return all there is to send (maybe b"")."""
        return b"".join(self.replies(framer, data))

    def respond(self, message: bytes) -> Iterator[bytes]:
        """Execute one program message unit by unit; yield its response message in pieces:
        each query's reply (``;`` between them) as soon as it is made, then the LF. The
        first failing unit ends the message (its error queued; replies made before it are
        still sent)."""
        units = parse_message(message, self.table, self.limits)
        with self.lock:
            self.messages += 1
        answered = False
        while True:
            with self.lock:
                done, reply = self._next_unit(units)
            if reply is not None:
                if answered:
                    yield b";"
                yield reply
                answered = True
            if done:
                break
        if answered:
            yield b"\n"

    def execute(self, message: bytes) -> bytes | None:
        """Execute one program message; the whole response message (with LF) or None."""
        return b"".join(self.respond(message)) or None

    def _next_unit(self, units: Iterator[Any]) -> tuple[bool, bytes | None]:
        """Run the next parsed unit: (whether the message is done, its reply or None)."""
        try:
            parsed = next(units)
            command = parsed.command
            result = self._handlers[command.handler](**parsed.values)
            if not command.is_query:
                return False, None
            reply = format_reply(command.reply, result, self.table.dialect)
            if len(reply) > self.serving.max_reply_bytes + BLOCK_HEADER_BYTES:
                raise ScpiError(
                    OUT_OF_MEMORY,
                    f"reply of {len(reply)} bytes exceeds {self.serving.max_reply_bytes}",
                )
            return False, reply
        except StopIteration:
            return True, None
        except ScpiError as error:
            self.push_error(error)
        except Exception as error:  # a handler bug must not kill the connection
            self.push_error(ScpiError(EXECUTION_ERROR, f"internal error: {type(error).__name__}"))
        return True, None

    def push_error(self, error: ScpiError) -> None:
        """Queue an error and set its event-status bit."""
        self.errors.push(error.code, error.detail)
        self.esr |= esr_bit(error.code)

    # --- IEEE 488.2 common commands and the system subsystem ----------------------------------

    def _do_identify(self) -> str:
        return self.identity.reply()

    def _do_reset(self) -> None:
        self.reset_settings()
        self.ese = 0

    def _do_clear_status(self) -> None:
        self.errors.clear()
        self.esr = 0

    def _do_operation_complete(self) -> None:
        self.esr |= ESR_OPERATION_COMPLETE

    def _do_operation_complete_query(self) -> int:
        return 1

    def _do_wait_to_continue(self) -> None:
        return None

    def _do_event_status_query(self) -> int:
        value, self.esr = self.esr, 0
        return value

    def _do_event_status_enable(self, mask: int) -> None:
        self.ese = mask

    def _do_event_status_enable_query(self) -> int:
        return self.ese

    def _do_status_byte_query(self) -> int:
        status = STB_ERROR_AVAILABLE if len(self.errors) else 0
        if self.esr & self.ese:
            status |= STB_EVENT_SUMMARY
        return status

    def _do_self_test_query(self) -> int:
        return 0 if self.self_test() else 1

    def _do_error_next(self) -> ErrorEntry:
        return self.errors.pop()

    def _do_error_count(self) -> int:
        return len(self.errors)

    def _do_scpi_version(self) -> str:
        return SCPI_VERSION


def _store(device: ScpiDevice, name: str, argument: str) -> Callable[..., None]:
    """A handler that keeps its one argument (named as the row names it) as ``name``."""

    def store(**values: Any) -> None:
        device.settings[name] = values[argument]

    parameter = inspect.Parameter(argument, inspect.Parameter.KEYWORD_ONLY)
    store.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return store
