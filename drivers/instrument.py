"""Declarative SCPI bench-instrument drivers (the PyMeasure way): one ``Property`` per setting.

A property is one declaration — get command, set command, docstring, validator with its
range, unit — used as a class attribute of an ``Instrument``::

    class Smu(Instrument):
        nplc = Property(":SENS:CURR:NPLC?", ":SENS:CURR:NPLC {}", "Integration time in power-line
                        cycles.", in_range(0.01, 10))

Reading the attribute queries the get command and parses the reply; assigning validates the
value first (a bad value raises ``InstrumentRangeError`` and nothing is sent), writes the set
command and then reads the error queue (``:SYST:ERR?`` until ``0,"No error"``), so an error
the instrument reports raises ``InstrumentError`` at the assignment that caused it.

Commands may name fields the instrument fills in (``{ch}`` for a channel, see
``Instrument.command_fields``); ``{}`` is where a set command's value goes.

Instruments open through pyvisa (pyvisa-py, ``"@py"``, by default; ``"@sim"`` or
``"<definitions.yaml>@sim"`` for pyvisa-sim, see ``drivers.sims``) or take an injected
transport with ``write(str)`` and ``query(str) -> str`` — for scripted-wire tests.
Timeouts and lost connections raise ``InstrumentTimeoutError`` / ``InstrumentDisconnectedError``,
subclasses of the chip driver's ``ChipTimeoutError`` / ``ChipDisconnectedError``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from pcm_hil.drivers.errors import (
    ChipDisconnectedError,
    ChipTimeoutError,
    PcmHilError,
    ResourceError,
    TransportError,
)

__all__ = [
    "Instrument",
    "InstrumentDisconnectedError",
    "InstrumentError",
    "InstrumentRangeError",
    "InstrumentReplyError",
    "InstrumentTimeoutError",
    "InstrumentTransport",
    "Limit",
    "Property",
    "VisaInstrumentTransport",
    "boolean",
    "in_range",
    "limit",
    "one_of",
]

log = logging.getLogger(__name__)

#: The error-queue query and the reply that ends it.
ERROR_QUERY = ":SYST:ERR?"
#: More errors than any instrument queues (the 2400 keeps 10, the 81110A 30): past this many
#: non-zero replies in a row the queue is not emptying and the check stops.
_MAX_ERRORS = 64


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


# --- validators -------------------------------------------------------------------------


def _number_text(value: float) -> str:
    """A float for the wire: 12 significant digits (no ``0.30000000000000004``), SCPI NR3."""
    return format(value, ".12g")


class Limit:
    """A range bound read from the instrument at validation time: ``limit("voltage_limit_V")``
    is the instrument's attribute of that name (a class default a subclass or an instance
    may lower), ``-limit(...)`` its negative."""

    def __init__(self, attribute: str, sign: float = 1.0) -> None:
        self.attribute = attribute
        self.sign = sign

    def __neg__(self) -> Limit:
        return Limit(self.attribute, -self.sign)

    def resolve(self, instrument: Any) -> float:
        return self.sign * float(getattr(instrument, self.attribute))

    def __repr__(self) -> str:
        return f"{'-' if self.sign < 0 else ''}{self.attribute}"


def limit(attribute: str) -> Limit:
    """A bound of ``in_range`` taken from the instrument's attribute ``attribute``."""
    return Limit(attribute)


def _bound(bound: float | Limit, instrument: Any) -> float:
    return bound.resolve(instrument) if isinstance(bound, Limit) else float(bound)


class _Refused(ValueError):
    """A validator's refusal; the Property turns it (any ValueError) into an
    InstrumentRangeError naming the instrument and the setting."""


class InRange:
    """A number within [low, high] (inclusive). Bounds are numbers or ``limit(...)``."""

    def __init__(self, low: float | Limit, high: float | Limit) -> None:
        self.low = low
        self.high = high

    def allowed(self, instrument: Any = None, unit: str = "") -> str:
        """The range as text; bounds from the instrument when one is given."""

        def text(bound: float | Limit) -> str:
            if isinstance(bound, Limit) and instrument is None:
                return repr(bound)
            return format(_bound(bound, instrument), "g")

        return f"{text(self.low)}…{text(self.high)}{' ' + unit if unit else ''}"

    def __call__(self, value: Any, instrument: Any = None, unit: str = "") -> float:
        try:
            if isinstance(value, (bool, str, bytes)):  # float("1") and float(True) would pass
                raise TypeError
            number = float(value)  # int, float, numpy scalars
        except (TypeError, ValueError):
            raise _Refused(f"not a number (allowed: {self.allowed(instrument, unit)})") from None
        if not math.isfinite(number):
            raise _Refused(f"not a finite number (allowed: {self.allowed(instrument, unit)})")
        low, high = _bound(self.low, instrument), _bound(self.high, instrument)
        if not low <= number <= high:
            raise _Refused(f"outside the allowed range {self.allowed(instrument, unit)}")
        return number

    def to_wire(self, value: float) -> str:
        return _number_text(value)

    def __repr__(self) -> str:
        return f"in_range({self.low!r}, {self.high!r})"


def in_range(low: float | Limit, high: float | Limit) -> InRange:
    """Validator: a finite number from ``low`` to ``high`` inclusive."""
    return InRange(low, high)


class OneOf:
    """One of a few choices. String choices match case-insensitively and are sent as declared;
    replies match a choice exactly or as its SCPI long form (``VOLTAGE`` → ``VOLT``)."""

    def __init__(self, *choices: Any) -> None:
        if not choices:
            raise ValueError("one_of needs at least one choice")
        self.choices = choices

    def allowed(self, instrument: Any = None, unit: str = "") -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)

    def __call__(self, value: Any, instrument: Any = None, unit: str = "") -> Any:
        for choice in self.choices:
            if isinstance(choice, str):
                if isinstance(value, str) and value.strip().upper() == choice.upper():
                    return choice
            elif not isinstance(value, (bool, str)) and value == choice:
                return choice
        raise _Refused(f"not {self.allowed()}")

    def to_wire(self, value: Any) -> str:
        return str(value)

    def parse(self, reply: str) -> Any:
        text = reply.strip().strip("\"'").upper()
        for choice in self.choices:
            if str(choice).upper() == text:
                return choice
        try:  # numeric choices: "+1.000E+00" is 1
            number = float(text)
        except ValueError:
            prefixed = [c for c in self.choices if text.startswith(str(c).upper())]
            if len(prefixed) == 1:
                return prefixed[0]
        else:
            for choice in self.choices:
                if not isinstance(choice, str) and number == choice:
                    return choice
        raise InstrumentReplyError(f"reply {reply!r} is not {self.allowed()}")

    def __repr__(self) -> str:
        return f"one_of({', '.join(repr(c) for c in self.choices)})"


def one_of(*choices: Any) -> OneOf:
    """Validator: one of ``choices``."""
    return OneOf(*choices)


class Boolean:
    """True/False, sent as ``ON``/``OFF``; replies ``1``/``0`` or ``ON``/``OFF``."""

    _TRUE = frozenset({"1", "ON"})
    _FALSE = frozenset({"0", "OFF"})

    def allowed(self, instrument: Any = None, unit: str = "") -> str:
        return "True or False (ON/OFF)"

    def __call__(self, value: Any, instrument: Any = None, unit: str = "") -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().upper() in self._TRUE | self._FALSE:
            return value.strip().upper() in self._TRUE
        raise _Refused(f"not {self.allowed()}")

    def to_wire(self, value: bool) -> str:
        return "ON" if value else "OFF"

    def parse(self, reply: str) -> bool:
        text = reply.strip().upper()
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        try:
            return bool(float(text))  # "+1.000E+00"
        except ValueError:
            raise InstrumentReplyError(f"reply {reply!r} is not a boolean") from None

    def __repr__(self) -> str:
        return "boolean"


#: Validator: a boolean setting (ON/OFF on the wire).
boolean = Boolean()


class Validator(Protocol):
    """Checks a value and returns it as it will be sent, or raises ValueError with the
    allowed range in its reason; ``to_wire`` is the value's text in the command."""

    def __call__(self, value: Any, instrument: Any = None, unit: str = "") -> Any: ...

    def to_wire(self, value: Any) -> str: ...

    def allowed(self, instrument: Any = None, unit: str = "") -> str: ...


# --- the property -----------------------------------------------------------------------


class Property:
    """One instrument setting: get command, set command, docstring, validator, unit, parser.

    ``get``/``set`` may be None for write-only/read-only settings. ``parse`` turns the reply
    text into a value: ``float`` by default — where the validator has its own parser
    (``one_of``, ``boolean``) and ``parse`` is left at ``float``, the validator's is used.
    """

    def __init__(
        self,
        get: str | None,
        set: str | None,  # the API's name (PyMeasure's get/set command pair)
        doc: str,
        validator: Validator,
        unit: str = "",
        parse: Callable[[str], Any] = float,
    ) -> None:
        if get is None and set is None:
            raise ValueError("a Property needs a get command, a set command or both")
        self.get = get
        self.set = set
        self.doc = doc
        self.validator = validator
        self.unit = unit
        if parse is float and hasattr(validator, "parse"):
            parse = validator.parse
        self.parse = parse
        self.name = ""
        self.owner: type | None = None
        wire = ", ".join(
            f"{kind} ``{command}``" for kind, command in (("get", get), ("set", set)) if command
        )
        self.__doc__ = f"{doc}\n\nAllowed: {validator.allowed(None, unit)}. Wire: {wire}."

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner

    def __repr__(self) -> str:
        return f"Property({self.get!r}, {self.set!r}, {self.validator!r}, unit={self.unit!r})"

    # reading

    def __get__(self, instrument: Instrument | None, owner: type | None = None) -> Any:
        if instrument is None:
            return self
        if self.get is None:
            raise AttributeError(f"{self.name} is write-only")
        command = self.get.format(**instrument.command_fields())
        reply = instrument.query(command)
        try:
            return self.parse(reply)
        except (TypeError, ValueError) as error:  # InstrumentReplyError is a ValueError
            raise InstrumentReplyError(
                f"{instrument.name}: reply {reply!r} to {command!r} is not a {self.name} ({error})"
            ) from error

    # writing

    def validate(self, instrument: Instrument, value: Any) -> Any:
        """The value as it will be sent, or InstrumentRangeError; sends nothing."""
        try:
            return self.validator(value, instrument, self.unit)
        except ValueError as refused:  # _Refused, or a custom validator's ValueError
            allowed = self.validator.allowed(instrument, self.unit)
            raise InstrumentRangeError(
                f"{instrument.name}: {self.name} = {value!r} refused (not sent): {refused}",
                name=self.name,
                value=value,
                allowed=allowed,
            ) from None

    def command(self, instrument: Instrument, value: Any) -> str:
        """The set command for ``value`` after every check (validator and the instrument's
        cross-setting check); sends nothing but the queries a cross check needs."""
        if self.set is None:
            raise AttributeError(f"{self.name} is read-only")
        checked = self.validate(instrument, value)
        instrument.check_setting(self.name, checked)
        return self.set.format(self.validator.to_wire(checked), **instrument.command_fields())

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
            self._handle = manager.open_resource(resource, open_timeout=int(timeout_s * 1000))
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

    def command_fields(self) -> dict[str, Any]:
        """Fields filled into commands besides the value (``{ch}`` …). None here."""
        return {}

    def check_setting(self, name: str, value: Any) -> None:
        """Cross-setting checks before ``name`` is set to ``value`` (already validated): raise
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
        code_text, _comma, message = reply.partition(",")
        try:
            code = int(code_text.strip())
        except ValueError:
            raise InstrumentReplyError(
                f"{self.name}: reply {reply!r} to {ERROR_QUERY} is not 'code,\"message\"'"
            ) from None
        return code, message.strip().strip('"')

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

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
