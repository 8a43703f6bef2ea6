"""Bench-instrument drivers on the instruments' own command tables: one ``Property`` per
setting, derived from its rows.

An instrument class names its table (``pcm_hil.protocols.smu.SMU_COMMANDS`` …) and declares
each setting by the handler of its rows — ``set_<name>`` sets it, ``<name>`` reads it back:

    class SourceMeter(Instrument):
        table = SMU_COMMANDS
        nplc = Property("nplc")

The command each sends, its range, its unit and its docstring come from the table, which the
emulated bench serves too, so driver and instrument cannot drift apart. Reading the
attribute queries and parses the reply by the query row; assigning checks the value by the
setting row — type, choices, range (bounds naming a limit take the instrument's
``limits()``) — and a bad value raises ``InstrumentRangeError`` with nothing sent; then it
writes the command and reads the error queue (``:SYST:ERR?`` until ``0,"No error"``), so an
error the instrument reports raises ``InstrumentError`` at the assignment that caused it.
``send``/``ask`` do the same for any row by handler; ``write``/``query`` send raw text.

Instruments open through pyvisa (pyvisa-py, ``"@py"``, by default; ``"@sim"`` or
``"<definitions.yaml>@sim"`` for pyvisa-sim, see ``pcm_hil.drivers.sims``) or take an
injected transport with ``write(str)`` and ``query(str) -> str`` — for scripted-wire tests.
Timeouts and lost connections raise ``InstrumentTimeoutError`` /
``InstrumentDisconnectedError``, subclasses of ``ChipTimeoutError`` / ``ChipDisconnectedError``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from pcm_hil.protocols.codec import encode_command, parse_reply, short_mnemonic
from pcm_hil.protocols.common import ERROR_NEXT
from pcm_hil.protocols.errors import DATA_OUT_OF_RANGE, ScpiError, parse_error_entry
from pcm_hil.protocols.table import Arg, Command, CommandTable
from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    PcmHilError,
    ResourceError,
    TransportError,
)

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource

__all__ = [
    "Instrument",
    "InstrumentDisconnectedError",
    "InstrumentError",
    "InstrumentRangeError",
    "InstrumentReplyError",
    "InstrumentTimeoutError",
    "InstrumentTransport",
    "Property",
    "VisaInstrumentTransport",
]

log = logging.getLogger(__name__)

#: The error-queue query, as the bench drivers send it (the common row, with a leading colon).
ERROR_QUERY = ":" + ERROR_NEXT.short_form
#: More errors than any instrument queues (the 2400 keeps 10, the 81110A 30): past this many
#: non-zero replies in a row the queue is not emptying and the check stops.
_MAX_ERRORS = 64

_InstrumentT = TypeVar("_InstrumentT", bound="Instrument")


# --- errors -----------------------------------------------------------------------------


class InstrumentError(PcmHilError):
    """An error the instrument reported in its error queue (``:SYST:ERR?``).

    ``code`` and ``message`` are the instrument's (``-222``, ``"Data out of range"``);
    ``command`` is what the driver had just sent, when known; ``others`` are the further
    errors drained from the queue in the same check, as (code, message) pairs.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        instrument: str = "",
        command: str = "",
        others: tuple[tuple[int, str], ...] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.instrument = instrument
        self.command = command
        self.others = others
        where = f" from {instrument}" if instrument else ""
        after = f" after {command!r}" if command else ""
        more = f" (and {len(others)} more: {list(others)})" if others else ""
        super().__init__(f'{code},"{message}"{where}{after}{more}')


class InstrumentRangeError(PcmHilError, ValueError):
    """A setting the driver refused before sending it: out of range, not one of the
    choices, or in conflict with another setting (high level not above low level …)."""

    def __init__(self, message: str, *, name: str = "", value: Any = None, allowed: str = ""):
        self.name = name
        self.value = value
        self.allowed = allowed
        super().__init__(message)


class InstrumentReplyError(PcmHilError, ValueError):
    """A reply the driver cannot parse (not a number, not one of the choices …)."""


class InstrumentTimeoutError(ChipTimeoutError):
    """No reply from the instrument within the timeout."""


class InstrumentDisconnectedError(ChipDisconnectedError):
    """The connection to the instrument is gone (or the instrument was closed)."""


# --- the property -----------------------------------------------------------------------


def allowed_text(arg: Arg, limits: Any, unit: str = "") -> str:
    """What ``arg`` accepts, for messages and docstrings: ``-10…10 V``, ``one of VOLT, CURR``."""
    if arg.kind == "bool":
        return "True or False (ON/OFF)"
    if arg.choices:
        return "one of " + ", ".join(
            short_mnemonic(c) if arg.kind == "enum" else c for c in arg.choices
        )
    if arg.minimum is None and arg.maximum is None:
        return f"any {arg.kind}"
    low, high = arg.bounds(limits)
    return f"{low:g}…{high:g}{' ' + unit if unit else ''}"


class Property:
    """One instrument setting, from its rows in the instrument's table: ``set_<handler>``
    (one argument) sets it, ``<handler>`` reads it back. ``get=False`` or ``set=False`` for a
    write-only or read-only setting."""

    def __init__(self, handler: str, *, get: bool = True, set: bool = True) -> None:
        if not (get or set):
            raise ValueError("a Property needs a query, a setting or both")
        self.handler = handler
        self._get, self._set = get, set
        self.name = ""
        self.owner: type[Instrument] | None = None
        self.query_row: Command | None = None
        self.setting_row: Command | None = None

    def __set_name__(self, owner: type[Instrument], name: str) -> None:
        self.name = name
        self.owner = owner
        table: CommandTable = owner.table
        self.query_row = table.by_handler(self.handler) if self._get else None
        self.setting_row = table.by_handler(f"set_{self.handler}") if self._set else None
        if self.setting_row is not None and len(self.setting_row.args) != 1:
            raise TypeError(f"{self.setting_row.header}: a Property sets one argument")
        row = self.setting_row or self.query_row
        assert row is not None
        self.doc = row.doc
        self.unit = self.arg.unit if self.arg is not None else self.query_row.reply.unit  # type: ignore[union-attr]
        wire = ", ".join(
            f"{kind} ``{command}``"
            for kind, command in (("get", self.get), ("set", self.set))
            if command
        )
        allowed = (
            allowed_text(self.arg, owner.default_limits(), self.unit) if self.arg else "read only"
        )
        self.__doc__ = f"{self.doc}\n\nAllowed: {allowed}. Wire: {wire}."

    @property
    def arg(self) -> Arg | None:
        """The setting's argument (its kind, range and unit), None if read-only."""
        return self.setting_row.args[0] if self.setting_row is not None else None

    @property
    def get(self) -> str | None:
        """The query as sent, ``{ch}`` where the channel goes."""
        return self.query_row.send_form("{ch}") if self.query_row is not None else None

    @property
    def set(self) -> str | None:
        """The setting as sent, ``{}`` where the value goes."""
        return self.setting_row.send_form("{ch}") + " {}" if self.setting_row is not None else None

    def __repr__(self) -> str:
        return f"Property({self.handler!r}: {self.get!r}, {self.set!r}, unit={self.unit!r})"

    # reading

    def __get__(self, instrument: Instrument | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        if self.query_row is None:
            raise AttributeError(f"{self.name} is write-only")
        return instrument.ask(self.handler, _as=self.name)

    # writing

    def command(self, instrument: Instrument, value: Any) -> str:
        """The set command for ``value`` after every check (the table's and the instrument's
        cross-setting check); sends nothing but the queries a cross check needs."""
        if self.setting_row is None:
            raise AttributeError(f"{self.name} is read-only")
        text = instrument.encode(self.setting_row, {self.arg.name: value}, _as=self.name)  # type: ignore[union-attr]
        instrument.check_setting(self.name, value)
        return text

    def __set__(self, instrument: Instrument, value: Any) -> None:
        with instrument.lock:
            command = self.command(instrument, value)
            instrument.write(command)
            instrument.check_errors(command=command)


# --- transports -------------------------------------------------------------------------


class InstrumentTransport(Protocol):
    """What an instrument needs of its connection (``close`` is optional)."""

    def write(self, command: str) -> None: ...

    def query(self, command: str) -> str: ...


class VisaInstrumentTransport:
    """A message-based pyvisa session: LF-terminated text, errors translated."""

    def __init__(self, resource: str, timeout_s: float, visa_library: str = "@py") -> None:
        import pyvisa

        self.resource = resource
        self._pyvisa = pyvisa
        try:
            manager = pyvisa.ResourceManager(visa_library)
            # a message-based session (TCPIP, ASRL, GPIB …): what open_resource returns for
            # every resource an instrument has, typed by pyvisa as the base Resource
            self._handle = cast(
                "MessageBasedResource",
                manager.open_resource(resource, open_timeout=int(timeout_s * 1000)),
            )
        except pyvisa.errors.VisaIOError as error:
            raise InstrumentDisconnectedError(
                f"cannot open {resource}: {error.description}"
            ) from error
        except (ValueError, OSError) as error:
            raise ResourceError(f"cannot open {resource} with {visa_library}: {error}") from error
        if not self._handle.session:  # VI_NULL: pyvisa-sim reports an unknown resource so
            raise InstrumentDisconnectedError(f"cannot open {resource}: resource not found")
        self._handle.timeout = timeout_s * 1000
        self._handle.read_termination = "\n"
        self._handle.write_termination = "\n"
        if resource.upper().endswith("::SOCKET"):
            # a setting is two small writes (the command, then :SYST:ERR?): without
            # TCP_NODELAY the second waits for the peer's delayed acknowledgement (~40 ms)
            try:
                self._handle.set_visa_attribute(
                    pyvisa.constants.ResourceAttribute.tcpip_nodelay, True
                )
            except Exception:  # not every VISA library offers it; correctness is unaffected
                pass

    def write(self, command: str) -> None:
        try:
            self._handle.write(command)
        except Exception as error:
            raise self._translate(error) from error

    def query(self, command: str) -> str:
        try:
            return self._handle.query(command)
        except Exception as error:
            raise self._translate(error) from error

    def _translate(self, error: Exception) -> TransportError:
        errors = self._pyvisa.errors
        if isinstance(error, errors.VisaIOError):
            if error.error_code == self._pyvisa.constants.StatusCode.error_timeout:
                return InstrumentTimeoutError(
                    f"{self.resource}: no reply within {self._handle.timeout / 1000:g} s"
                )
            return InstrumentDisconnectedError(f"{self.resource}: {error.description}")
        if isinstance(error, (errors.InvalidSession, OSError, EOFError)):
            return InstrumentDisconnectedError(f"{self.resource}: {error}")
        return TransportError(f"{self.resource}: {error}")

    def close(self) -> None:
        # Only the session: pyvisa shares one ResourceManager per library.
        try:
            self._handle.close()
        except Exception:
            pass


# --- the instrument ---------------------------------------------------------------------


class Instrument:
    """A SCPI instrument: ``write``, ``query``, ``check_errors`` and the declared properties.

    ``resource`` is a VISA resource string; ``visa_library`` picks the VISA implementation
    (``"@py"`` if None; ``"@sim"``, ``"<path>.yaml@sim"`` for pyvisa-sim). With ``transport``
    given, nothing is opened: the object's ``write(str)``/``query(str) -> str`` are used.
    """

    #: Label in messages (the model, "2400 SMU" …); the class name if empty.
    label: ClassVar[str] = ""
    #: The instrument's command table: what it understands, how it writes.
    table: ClassVar[CommandTable]
    #: The limit names the table's bounds use -> the attribute of this class holding each
    #: (a class default a subclass, or an instance guarding a fragile device, may lower).
    limit_attributes: ClassVar[dict[str, str]] = {}
    #: The numeric suffix (channel) where a command's spelling has one; None: none sent.
    suffix: int | None = None

    def __init__(
        self,
        resource: str,
        *,
        visa_library: str | None = None,
        timeout_s: float = 5.0,
        transport: InstrumentTransport | None = None,
    ) -> None:
        self.resource = resource
        self.timeout_s = timeout_s
        self.lock = threading.RLock()
        self._closed = False
        if transport is None:
            transport = VisaInstrumentTransport(resource, timeout_s, visa_library or "@py")
        self._transport = transport

    @property
    def name(self) -> str:
        return f"{self.label or type(self).__name__} at {self.resource}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource!r}{' closed' if self._closed else ''}>"

    @classmethod
    def properties(cls) -> dict[str, Property]:
        """The declared properties, by name, base classes first."""
        found: dict[str, Property] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Property):
                    found[key] = value
        return found

    @classmethod
    def default_limits(cls) -> dict[str, float]:
        """The limits the table's bounds name, from the class defaults."""
        return {name: float(getattr(cls, attr)) for name, attr in cls.limit_attributes.items()}

    def limits(self) -> dict[str, float]:
        """The limits the table's bounds name, from this instrument's attributes."""
        return {name: float(getattr(self, attr)) for name, attr in self.limit_attributes.items()}

    def encode(self, row: Command, values: dict[str, Any], *, _as: str = "") -> str:
        """The command text for ``row`` with ``values``, after every check the table makes;
        InstrumentRangeError (nothing sent) when one fails. ``_as`` names the setting in
        the message (default: the row's handler)."""
        name = _as or row.handler
        limits = self.limits()
        try:
            data = encode_command(
                row, values, limits, suffix=self.suffix, dialect=self.table.dialect
            )
        except ScpiError as error:
            (value,) = values.values() if len(values) == 1 else (values,)
            arg = row.args[0] if len(row.args) == 1 else None
            allowed = allowed_text(arg, limits, arg.unit) if arg else error.detail
            reason = (
                f"outside the allowed range {allowed}"
                if error.code == DATA_OUT_OF_RANGE
                else f"{error.detail.split('=', 1)[-1]} (allowed: {allowed})"
            )
            raise InstrumentRangeError(
                f"{self.name}: {name} = {value!r} refused (not sent): {reason}",
                name=name,
                value=value,
                allowed=allowed,
            ) from None
        return data.decode("ascii")

    def send(self, handler: str, **values: Any) -> None:
        """The command of row ``handler`` with ``values`` (checked first; nothing sent if a
        check fails), then the error queue: InstrumentError if the instrument refused it."""
        command = self.encode(self.table.by_handler(handler), values)
        with self.lock:
            self.write(command)
            self.check_errors(command=command)

    def ask(self, handler: str, *, _as: str = "", **values: Any) -> Any:
        """The reply of query row ``handler`` with ``values``, parsed by the row."""
        row = self.table.by_handler(handler)
        command = self.encode(row, values, _as=_as)
        reply = self.query(command)
        try:
            return parse_reply(row.reply, reply.encode("ascii", "replace"))
        except (TypeError, ValueError) as error:
            raise InstrumentReplyError(
                f"{self.name}: reply {reply!r} to {command!r} is not a {_as or handler} ({error})"
            ) from error

    def check_setting(self, name: str, value: Any) -> None:
        """Cross-setting checks before ``name`` is set to ``value`` (already checked): raise
        InstrumentRangeError to refuse. Nothing here; subclasses add theirs."""

    # the wire

    def write(self, command: str) -> None:
        """Send one command (no reply expected)."""
        with self.lock:
            self._call(self._transport.write, command)

    def query(self, command: str) -> str:
        """Send one query and return its reply, stripped."""
        with self.lock:
            return str(self._call(self._transport.query, command)).strip()

    def _call(self, method: Callable[[str], Any], command: str) -> Any:
        if self._closed:
            raise InstrumentDisconnectedError(f"{self.name} is closed")
        try:
            return method(command)
        except PcmHilError:
            raise
        except TimeoutError as error:
            raise InstrumentTimeoutError(f"{self.name}: {command!r}: {error}") from error
        except (ConnectionError, EOFError, OSError) as error:
            raise InstrumentDisconnectedError(f"{self.name}: {command!r}: {error}") from error

    def read_error(self) -> tuple[int, str]:
        """One entry of the error queue: (code, message); (0, "No error") when empty."""
        reply = self.query(ERROR_QUERY)
        try:
            entry = parse_error_entry(reply)
        except ValueError:
            raise InstrumentReplyError(
                f"{self.name}: reply {reply!r} to {ERROR_QUERY} is not 'code,\"message\"'"
            ) from None
        return entry.code, entry.text

    def drain_errors(self) -> list[tuple[int, str]]:
        """Read the error queue until it is empty; return the errors read (oldest first)."""
        errors: list[tuple[int, str]] = []
        with self.lock:
            while len(errors) < _MAX_ERRORS:
                code, message = self.read_error()
                if code == 0:
                    break
                errors.append((code, message))
        return errors

    def check_errors(self, command: str = "") -> None:
        """Read the error queue until ``0,"No error"``; raise InstrumentError for the first
        error in it (the others are in its ``others``). ``command`` names what was just sent."""
        errors = self.drain_errors()
        if errors:
            (code, message), *others = errors
            raise InstrumentError(
                code, message, instrument=self.name, command=command, others=tuple(others)
            )

    # common commands

    def identify(self) -> str:
        """The ``*IDN?`` reply: manufacturer, model, serial, firmware."""
        return self.query("*IDN?")

    def reset(self) -> None:
        """``*RST``, then empty the error queue (errors left from before are logged, not
        raised: the next setting's check then reports only its own)."""
        with self.lock:
            self.write("*RST")
            stale = self.drain_errors()
        if stale:
            log.warning("%s: errors in the queue at reset: %s", self.name, stale)

    # lifetime

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (once; later calls do nothing)."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            close = getattr(self._transport, "close", None)
            if close is not None:
                close()

    def __enter__(self: _InstrumentT) -> _InstrumentT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
