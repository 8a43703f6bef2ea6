"""The building blocks of a declarative command table: commands, arguments, replies, dialect.

A ``Command`` row names its SCPI header (short form in capitals, optional nodes in brackets,
``#`` after a node that takes a numeric suffix such as a channel, ``?`` for a query), its
arguments in order, its reply, the handler that carries it out and the errors it can raise.
Everything else — the parser, an emulator's dispatch, a driver's encoding and the written
specification — is derived from these rows. Every instrument (the PCM chip, the source-measure
unit, the pulse generator) is one ``CommandTable`` of such rows on this one core.

Ranges may be numbers or the name of a limit (``"tiles"``, ``"pulse_amplitude_max_uA"``…),
resolved against a ``Limits`` mapping at check time, so that an instrument and its driver
enforce the very same bounds — each with its own values where they differ (an emulated
bench protects its devices with lower voltage limits than the real instrument has).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pcm_hil.protocols.errors import (
    BATCH_TOO_LARGE,
    DATA_OUT_OF_RANGE,
    DUPLICATE_ADDRESS,
    HEADER_SUFFIX_OUT_OF_RANGE,
    LENGTH_MISMATCH,
    SETTINGS_CONFLICT,
    STANDARD_ERRORS,
    UNDEFINED_HEADER,
    ScpiError,
)

ArgKind = Literal["int", "float", "bool", "enum", "string", "channels", "block"]
ReplyKind = Literal[
    "none",
    "int",
    "float",
    "bool",
    "text",
    "string",
    "enum",
    "ints",
    "floats",
    "channels",
    "error",
    "block",
]

#: A bound: a number, or the name of a limit or of an earlier argument, optionally negated
#: (``"-high_level_max_V"``) or less another name or an integer (``"tiles-1"``).
Bound = float | int | str | None
Limits = Mapping[str, float]


def resolve(bound: Bound, limits: Limits) -> float | None:
    """The numeric value of a bound, looking names up in ``limits`` (instrument limits and
    the values of the arguments checked so far)."""
    if bound is None or isinstance(bound, (int, float)):
        return bound
    sign = -1.0 if bound.startswith("-") else 1.0
    name, _sep, less = bound.lstrip("-").partition("-")

    def value(key: str) -> float:
        if key.isdigit():
            return float(key)
        try:
            return float(limits[key])
        except KeyError:
            raise KeyError(f"limit {key!r} is not known") from None

    return sign * (value(name) - (value(less) if less else 0.0))


def number_shortest(value: float) -> str:
    """The shortest text that reads back to the same binary64 value (``0.2``, ``1e-05``)."""
    return repr(float(value))


def number_12g(value: float) -> str:
    """12 significant digits: ``0.3`` rather than ``0.30000000000000004`` (bench drivers)."""
    return format(float(value), ".12g")


def number_nr3(value: float) -> str:
    """SCPI NR3 as 2400-class instruments reply: ``+1.050000E-04``."""
    return f"{float(value):+.6E}"


@dataclass(frozen=True)
class Dialect:
    """How an instrument writes numbers, booleans and strings: in program messages (what a
    driver sends) and in responses (what the instrument answers)."""

    number: Callable[[float], str] = number_shortest
    reply_number: Callable[[float], str] = number_shortest
    true_false: tuple[str, str] = ("1", "0")
    quote: str = '"'


@dataclass(frozen=True)
class Length:
    """How many elements a block argument must hold.

    ``same_as``: as many as the block argument of that name (or exactly 1 when ``broadcast``);
    ``multiple_of``: a positive whole multiple of that limit or earlier argument (``"rows"``);
    ``at_least``: a minimum count. ``most_multiples``: with ``multiple_of``, at most that
    limit's number of multiples (an MVM's batch of input vectors), else 106.
    """

    same_as: str | None = None
    broadcast: bool = False
    multiple_of: str | None = None
    at_least: int = 1
    most_multiples: str | None = None

    def describe(self) -> str:
        parts = []
        if self.same_as:
            parts.append(f"as many elements as `{self.same_as}`")
            if self.broadcast:
                parts[-1] += ", or exactly 1 (applied to all)"
        if self.multiple_of:
            parts.append(f"a positive multiple of `{self.multiple_of}` elements")
        if self.most_multiples:
            parts[-1] += f", at most `{self.most_multiples}` multiples (else 106)"
        if not parts:
            parts.append(f"at least {self.at_least} element(s)")
        return "; ".join(parts)


@dataclass(frozen=True)
class Arg:
    """One argument of a command, in the order it appears on the wire.

    ``choices``: the mnemonics of an enum (short form in capitals) or the accepted strings of
    a string argument (any case). ``keywords``: a number may also be written ``MINimum`` or
    ``MAXimum`` (the bounds). ``repeat``: the last argument may be given one or more times
    (its value is then a tuple). ``unique``: no value twice in a block (else 103).
    """

    name: str
    kind: ArgKind
    doc: str
    unit: str = ""
    minimum: Bound = None
    maximum: Bound = None
    choices: tuple[str, ...] = ()
    dtype: str = ""
    length: Length | None = None
    range_error: int = DATA_OUT_OF_RANGE
    unique: bool = False
    keywords: bool = False
    repeat: bool = False

    def __post_init__(self) -> None:
        if self.kind == "block" and not self.dtype:
            raise ValueError(f"block argument {self.name} needs a dtype")
        if self.kind == "enum" and not self.choices:
            raise ValueError(f"enum argument {self.name} needs choices")

    def check_range(self, value: float, limits: Limits) -> None:
        """Raise ScpiError(range_error) if a scalar lies outside [minimum, maximum]."""
        low, high = resolve(self.minimum, limits), resolve(self.maximum, limits)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ScpiError(
                self.range_error,
                f"{self.name}={value:g}{self.unit_suffix} outside {self.range_text(limits)}",
            )

    def bounds(self, limits: Limits) -> tuple[float | None, float | None]:
        """(minimum, maximum) resolved against ``limits``."""
        return resolve(self.minimum, limits), resolve(self.maximum, limits)

    def range_text(self, limits: Limits | None = None) -> str:
        def show(bound: Bound) -> str:
            if limits is not None and isinstance(bound, str):
                return f"{resolve(bound, limits):g}"
            return str(bound)

        low = "-inf" if self.minimum is None else show(self.minimum)
        high = "+inf" if self.maximum is None else show(self.maximum)
        return f"[{low}, {high}]{self.unit_suffix}"

    @property
    def unit_suffix(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def check_length(self, count: int, counts: Mapping[str, int], limits: Limits) -> None:
        """Raise ScpiError if a block of ``count`` elements breaks the Length rule."""
        rule = self.length or Length()
        if count < rule.at_least:
            raise ScpiError(
                LENGTH_MISMATCH, f"{self.name} has {count} elements, needs >= {rule.at_least}"
            )
        if rule.same_as is not None:
            other = counts[rule.same_as]
            if count != other and not (rule.broadcast and count == 1):
                raise ScpiError(
                    LENGTH_MISMATCH,
                    f"{self.name} has {count} elements, {rule.same_as} has {other}",
                )
        if rule.multiple_of is not None:
            unit = int(resolve(rule.multiple_of, limits) or 0)
            if unit <= 0 or count % unit:
                raise ScpiError(
                    LENGTH_MISMATCH,
                    f"{self.name} has {count} elements, not a multiple of {rule.multiple_of}={unit}",
                )
            if rule.most_multiples is not None:
                most = int(resolve(rule.most_multiples, limits) or 0)
                if count // unit > most:
                    raise ScpiError(
                        BATCH_TOO_LARGE,
                        f"{self.name} holds {count // unit} vectors, at most "
                        f"{rule.most_multiples}={most}",
                    )

    def raises(self) -> set[int]:
        """The error codes checking this argument can raise besides the syntax errors."""
        codes = (
            {self.range_error} if self.minimum is not None or self.maximum is not None else set()
        )
        if self.kind == "block":
            codes.add(DATA_OUT_OF_RANGE)  # NaN and infinities
            if self.length is not None:
                codes.add(LENGTH_MISMATCH)
                if self.length.most_multiples is not None:
                    codes.add(BATCH_TOO_LARGE)
            if self.unique:
                codes.add(DUPLICATE_ADDRESS)
        return codes


@dataclass(frozen=True)
class Reply:
    """What a query answers: its kind, for blocks the dtype, for lists and texts the names of
    its fields (which both sides use: a driver to name what it read, an instrument to find the
    values it reports), for enums the mnemonics."""

    kind: ReplyKind
    doc: str = ""
    unit: str = ""
    dtype: str = ""
    fields: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


NO_REPLY = Reply("none")

#: (short form, long form, optional, takes a numeric suffix) of one header node.
Node = tuple[str, str, bool, bool]


@dataclass(frozen=True)
class Command:
    """One row of a command table.

    ``spelling`` is the form drivers send (``":SOUR:VOLT:LEV"``; ``#`` where the suffix goes),
    one of the header's spellings; the short form when empty. ``suffix_max`` bounds every
    numeric suffix of the header (1…suffix_max, a number or a limit name such as
    ``"channels"``; an absent suffix is 1): outside it, -114.
    """

    header: str
    handler: str
    doc: str
    args: tuple[Arg, ...] = ()
    reply: Reply = NO_REPLY
    errors: tuple[int, ...] = ()
    group: str = ""
    spelling: str = ""
    suffix_max: Bound = 1
    nodes: tuple[Node, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", split_header(self.header))
        if self.is_query != (self.reply.kind != "none"):
            raise ValueError(f"{self.header}: a query must have a reply and a command none")
        if any(arg.repeat for arg in self.args[:-1]):
            raise ValueError(f"{self.header}: only the last argument may repeat")
        if self.spelling:
            key, _suffixes = _key(self.spelling.rstrip("?").replace("#", ""))
            spelled = {k for k, _flags in _spellings(self)}
            if key not in spelled:
                raise ValueError(
                    f"{self.header}: spelling {self.spelling!r} is not one of its forms"
                )

    @cached_property
    def is_query(self) -> bool:
        return self.header.endswith("?")

    @cached_property
    def is_common(self) -> bool:
        return self.header.startswith("*")

    @cached_property
    def has_suffix(self) -> bool:
        return any(suffix for *_, suffix in self.nodes)

    @cached_property
    def short_form(self) -> str:
        """The shortest accepted spelling, e.g. ``SYST:ERR?``."""
        if self.is_common:
            return self.header
        text = ":".join(short for short, _long, optional, _s in self.nodes if not optional)
        return text + ("?" if self.is_query else "")

    @cached_property
    def long_form(self) -> str:
        """The full spelling in capitals, e.g. ``SYSTEM:ERROR:NEXT?``."""
        if self.is_common:
            return self.header
        text = ":".join(long for _short, long, _optional, _s in self.nodes)
        return text + ("?" if self.is_query else "")

    def send_form(self, suffix: int | str | None = None) -> str:
        """What a driver sends as the header: ``spelling`` (or the short form) with ``suffix``
        in place of ``#`` (nothing when None), and ``?`` for a query."""
        if suffix is None:
            return self._plain_send_form
        text = (self.spelling or self.short_form).rstrip("?").replace("#", str(suffix))
        return text + ("?" if self.is_query else "")

    @cached_property
    def _plain_send_form(self) -> str:
        text = (self.spelling or self.short_form).rstrip("?").replace("#", "")
        return text + ("?" if self.is_query else "")

    def raises(self) -> set[int]:
        """Every error code this row can raise beyond syntax: its arguments' and its own."""
        codes = set(self.errors)
        for arg in self.args:
            codes |= arg.raises()
        if self.has_suffix:
            codes.add(HEADER_SUFFIX_OUT_OF_RANGE)
        return codes


def setting(
    header: str,
    handler: str,
    doc: str,
    arg: Arg,
    *,
    group: str = "",
    spelling: str = "",
    errors: tuple[int, ...] = (),
    suffix_max: Bound = 1,
) -> tuple[Command, Command]:
    """An instrument setting as two rows: ``header arg`` sets it (handler ``set_<handler>``)
    and ``header?`` reads it back (handler ``<handler>``), a reply of the argument's kind."""
    reply = Reply(arg.kind, arg.doc, unit=arg.unit, choices=arg.choices)
    common: dict[str, Any] = {"group": group, "spelling": spelling, "suffix_max": suffix_max}
    return (
        Command(header, f"set_{handler}", doc, args=(arg,), errors=errors, **common),
        Command(f"{header}?", handler, f"Query: {doc[0].lower()}{doc[1:]}", reply=reply, **common),
    )


_NODE = re.compile(r"^(\[)?:?([A-Z*]+)([a-z]*)(#)?(\])?$")


def split_header(header: str) -> tuple[Node, ...]:
    """Split a table header like ``SYSTem:ERRor[:NEXT]?`` into nodes."""
    body = header.rstrip("?")
    if body.startswith("*"):
        return ((body, body, False, False),)
    nodes = []
    for piece in re.findall(r"\[:[A-Za-z#]+\]|:?[A-Za-z#]+", body):
        match = _NODE.match(piece)
        if not match or bool(match.group(1)) != bool(match.group(5)):
            raise ValueError(f"bad header node {piece!r} in {header!r}")
        short = match.group(2)
        long = (short + match.group(3)).upper()
        nodes.append((short, long, bool(match.group(1)), bool(match.group(4))))
    return tuple(nodes)


def _spellings(command: Command) -> Iterator[tuple[str, tuple[bool, ...]]]:
    """Every accepted spelling without suffixes (upper case, no ``?``), with which of its
    nodes take a numeric suffix."""
    if command.is_common:
        yield command.header.rstrip("?").upper(), (False,)
        return
    results: list[tuple[tuple[str, ...], tuple[bool, ...]]] = [((), ())]
    for short, long, optional, suffix in command.nodes:
        grown = [
            ((*names, form), (*flags, suffix)) for names, flags in results for form in {short, long}
        ]
        results = grown + (results if optional else [])
    for names, flags in results:
        yield ":".join(names), flags


def spellings(command: Command) -> set[str]:
    """Every upper-case spelling a header accepts without suffixes (each node short or long,
    optionals or not), with ``?`` for a query."""
    suffix = "?" if command.is_query else ""
    return {key + suffix for key, _flags in _spellings(command)}


_DIGITS = re.compile(r"(\d+)$")
#: Standard codes only some instruments raise: listed for a table only where a row does.
_CONDITIONAL = frozenset({HEADER_SUFFIX_OUT_OF_RANGE, SETTINGS_CONFLICT})


def _key(header: str) -> tuple[str, tuple[int | None, ...]]:
    """(spelling without suffixes, the suffix of each node or None) of a header as written."""
    if header.startswith("*"):
        return header.upper(), (None,)
    names: list[str] = []
    suffixes: list[int | None] = []
    for node in header.upper().lstrip(":").split(":"):
        match = _DIGITS.search(node)
        if match and match.start() > 0:
            names.append(node[: match.start()])
            suffixes.append(int(match.group(1)))
        else:
            names.append(node)
            suffixes.append(None)
    return ":".join(names), tuple(suffixes)


class CommandTable:
    """An ordered table of commands with a header lookup; overlaps are refused.

    ``device_errors``: the instrument's own (positive) error codes and messages; ``errors``
    is the standard SCPI table with them. ``dialect``: how numbers, booleans and strings are
    written. ``name`` names the instrument in messages and in its written specification.
    """

    def __init__(
        self,
        commands: tuple[Command, ...],
        *,
        name: str = "",
        device_errors: Mapping[int, str] | None = None,
        dialect: Dialect | None = None,
    ) -> None:
        self.commands = commands
        self.name = name
        self.dialect = dialect or Dialect()
        self.errors: dict[int, str] = {**STANDARD_ERRORS, **(device_errors or {})}
        self._by_key: dict[str, tuple[Command, tuple[bool, ...]]] = {}
        self._by_handler: dict[str, Command] = {}
        for command in commands:
            if command.handler in self._by_handler:
                raise ValueError(f"handler {command.handler!r} used twice")
            self._by_handler[command.handler] = command
            unknown = sorted(command.raises() - set(self.errors))
            if unknown:
                raise ValueError(f"{command.header} can raise {unknown}, not in the error table")
            suffix = "?" if command.is_query else ""
            for key, flags in _spellings(command):
                if key + suffix in self._by_key:
                    other = self._by_key[key + suffix][0].header
                    raise ValueError(f"{command.header} and {other} both match {key + suffix}")
                self._by_key[key + suffix] = (command, flags)
        self.longest_header = max(len(k) for k in self._by_key) + 8 * any(
            c.has_suffix for c in commands
        )

    def reported_errors(self) -> dict[int, str]:
        """The codes this instrument can report: the standard ones its parser raises, the
        conditional standard ones (-114, -221) only where a row raises them, its own."""
        raised = set().union(*(command.raises() for command in self.commands))
        return {
            code: message
            for code, message in self.errors.items()
            if code not in _CONDITIONAL or code in raised
        }

    def lookup(self, header: str) -> Command | None:
        """The command a header (any case, leading ``:`` allowed, suffixes too) names, or None."""
        try:
            return self.resolve_header(header, None)[0]
        except ScpiError:
            return None

    def takes_block(self, header: bytes) -> bool:
        """Whether the command a header names (as written, bytes) has a block argument: where
        the framer lets a ``#<digit>`` start a block."""
        try:
            command = self.lookup(header.decode("ascii"))
        except UnicodeDecodeError:
            return False
        return command is not None and any(arg.kind == "block" for arg in command.args)

    def resolve_header(self, header: str, limits: Limits | None) -> tuple[Command, tuple[int, ...]]:
        """(command, its numeric suffixes, 1 where absent) for a header as written; raises
        ScpiError -113 for an unknown header or a suffix on a node that takes none, -114 for a
        suffix outside 1…suffix_max (checked when ``limits`` are given)."""
        text = header.upper().lstrip(":")
        found = self._by_key.get(text)
        if found is not None and not found[0].has_suffix:
            return found[0], ()  # the common case: no suffixes anywhere
        key, written = _key(text[:-1] if text.endswith("?") else text)
        found = self._by_key.get(key + ("?" if text.endswith("?") else ""))
        if found is None:
            raise ScpiError(UNDEFINED_HEADER, header[:40])
        command, flags = found
        suffixes = []
        for value, takes in zip(written, flags, strict=True):
            if value is not None and not takes:
                raise ScpiError(UNDEFINED_HEADER, header[:40])
            if takes:
                suffixes.append(1 if value is None else value)
        if limits is not None and suffixes:
            top = resolve(command.suffix_max, limits) or 1
            bad = [s for s in suffixes if not 1 <= s <= top]
            if bad:
                raise ScpiError(
                    HEADER_SUFFIX_OUT_OF_RANGE,
                    f"{header[:40]}: suffix {bad[0]} outside 1...{top:g}",
                )
        return command, tuple(suffixes)

    def by_handler(self, handler: str) -> Command:
        return self._by_handler[handler]

    def __contains__(self, handler: object) -> bool:
        return handler in self._by_handler

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)
