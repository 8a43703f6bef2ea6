"""The building blocks of the declarative command table: commands, arguments, replies.

A ``Command`` row names its SCPI header (short form in capitals, optional nodes in brackets,
``?`` for a query), its arguments in order, its reply, the handler that carries it out and the
errors it can raise. Everything else — the parser, the emulator's dispatch, the driver's
encoding and the written specification — is derived from these rows.

Ranges may be numbers or the name of a chip-configuration limit (``"tiles"``,
``"pulse_amplitude_max_uA"``…), resolved against a ``Limits`` mapping at check time so that the
chip and the driver enforce the very same bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pcm_hil.protocols.errors import DATA_OUT_OF_RANGE, LENGTH_MISMATCH, ScpiError

ArgKind = Literal["int", "float", "bool", "enum", "block"]
ReplyKind = Literal["none", "int", "float", "text", "enum", "ints", "floats", "error", "block"]

#: A bound: a number, or the name of a chip limit or of an earlier argument, optionally less
#: another name or an integer: ``"tiles-1"``, ``"rows-row_start"``.
Bound = float | int | str | None
Limits = Mapping[str, float]


def resolve(bound: Bound, limits: Limits) -> float | None:
    """The numeric value of a bound, looking names up in ``limits`` (chip limits and the values
    of the arguments checked so far)."""
    if bound is None or isinstance(bound, (int, float)):
        return bound
    name, _sep, less = bound.partition("-")

    def value(key: str) -> float:
        if key.isdigit():
            return float(key)
        try:
            return float(limits[key])
        except KeyError:
            raise KeyError(f"limit {key!r} is not known") from None

    return value(name) - (value(less) if less else 0.0)


@dataclass(frozen=True)
class Length:
    """How many elements a block argument must hold.

    ``same_as``: as many as the block argument of that name (or exactly 1 when ``broadcast``);
    ``multiple_of``: a positive whole multiple of that limit or earlier argument (``"rows"``);
    ``at_least``: a minimum count.
    """

    same_as: str | None = None
    broadcast: bool = False
    multiple_of: str | None = None
    at_least: int = 1

    def describe(self) -> str:
        parts = []
        if self.same_as:
            parts.append(f"as many elements as `{self.same_as}`")
            if self.broadcast:
                parts[-1] += ", or exactly 1 (applied to all)"
        if self.multiple_of:
            parts.append(f"a positive multiple of `{self.multiple_of}` elements")
        if not parts:
            parts.append(f"at least {self.at_least} element(s)")
        return "; ".join(parts)


@dataclass(frozen=True)
class Arg:
    """One argument of a command, in the order it appears on the wire."""

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


@dataclass(frozen=True)
class Reply:
    """What a query answers: its kind, and for blocks the dtype, for lists the field names."""

    kind: ReplyKind
    doc: str = ""
    unit: str = ""
    dtype: str = ""
    fields: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


NO_REPLY = Reply("none")


@dataclass(frozen=True)
class Command:
    """One row of the command table."""

    header: str
    handler: str
    doc: str
    args: tuple[Arg, ...] = ()
    reply: Reply = NO_REPLY
    errors: tuple[int, ...] = ()
    group: str = ""
    nodes: tuple[tuple[str, str, bool], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", split_header(self.header))
        if self.is_query != (self.reply.kind != "none"):
            raise ValueError(f"{self.header}: a query must have a reply and a command none")

    @property
    def is_query(self) -> bool:
        return self.header.endswith("?")

    @property
    def is_common(self) -> bool:
        return self.header.startswith("*")

    @property
    def short_form(self) -> str:
        """The shortest accepted spelling, e.g. ``SYST:ERR?``."""
        if self.is_common:
            return self.header
        text = ":".join(short for short, _long, optional in self.nodes if not optional)
        return text + ("?" if self.is_query else "")

    @property
    def long_form(self) -> str:
        """The full spelling in capitals, e.g. ``SYSTEM:ERROR:NEXT?``."""
        if self.is_common:
            return self.header
        text = ":".join(long for _short, long, _optional in self.nodes)
        return text + ("?" if self.is_query else "")


_NODE = re.compile(r"^(\[)?:?([A-Z*]+)([a-z]*)(\])?$")


def split_header(header: str) -> tuple[tuple[str, str, bool], ...]:
    """Split a table header like ``SYSTem:ERRor[:NEXT]?`` into (short, long, optional) nodes."""
    body = header.rstrip("?")
    if body.startswith("*"):
        return ((body, body, False),)
    nodes = []
    for piece in re.findall(r"\[:[A-Za-z]+\]|:?[A-Za-z]+", body):
        match = _NODE.match(piece)
        if not match or bool(match.group(1)) != bool(match.group(4)):
            raise ValueError(f"bad header node {piece!r} in {header!r}")
        short = match.group(2)
        nodes.append((short, (short + match.group(3)).upper(), bool(match.group(1))))
    return tuple(nodes)


def spellings(command: Command) -> set[str]:
    """Every upper-case spelling a header accepts (each node short or long, optionals or not)."""
    if command.is_common:
        return {command.header.upper()}
    results = [""]
    for short, long, optional in command.nodes:
        grown = [
            f"{prefix}:{form}" if prefix else form for prefix in results for form in {short, long}
        ]
        results = grown + (results if optional else [])
    suffix = "?" if command.is_query else ""
    return {text + suffix for text in results}


class CommandTable:
    """An ordered table of commands with an exact header lookup; overlaps are refused."""

    def __init__(self, commands: tuple[Command, ...]) -> None:
        self.commands = commands
        self._by_spelling: dict[str, Command] = {}
        self._by_handler: dict[str, Command] = {}
        for command in commands:
            if command.handler in self._by_handler:
                raise ValueError(f"handler {command.handler!r} used twice")
            self._by_handler[command.handler] = command
            for spelling in spellings(command):
                if spelling in self._by_spelling:
                    other = self._by_spelling[spelling].header
                    raise ValueError(f"{command.header} and {other} both match {spelling}")
                self._by_spelling[spelling] = command
        self.longest_header = max(len(s) for s in self._by_spelling)

    def lookup(self, header: str) -> Command | None:
        """The command a header (any case, leading ``:`` allowed) names, or None."""
        return self._by_spelling.get(header.upper().lstrip(":"))

    def by_handler(self, handler: str) -> Command:
        return self._by_handler[handler]

    def __iter__(self):
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)
