"""The types of ``pcm-hil``'s options: each turns an option's text into its value, or refuses
it with a usage error (``argparse.ArgumentTypeError``) naming the range — before anything runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Callable


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An option type: an integer ``low``…``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low}…{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return parse


def float_range(low: float, high: float = math.inf) -> Callable[[str], float]:
    """An option type: a finite number above ``low``, at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and low < value <= high):
            bounds = f"above {low:g}" + (f" and at most {high:g}" if math.isfinite(high) else "")
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, not {text}")
        return value

    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0.0)


def non_negative_float(text: str) -> float:
    """An option type: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, not {text}")
    return value


port = int_range(0, 65535)
"""A TCP port to listen on, 1…65535, or 0: any free port."""


def networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """An option type: comma-separated networks, CIDR (``192.168.1.0/24``) or one address."""
    found = []
    for part in text.split(","):
        try:
            found.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a network (CIDR such as 192.168.1.0/24, or an address): {part.strip()!r}"
            ) from None
    return tuple(found)


#: Seconds per unit of a duration option (``30d``, ``12h``, ``90m``, ``3600s`` or ``3600``).
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def duration(text: str) -> float:
    """A positive duration, s, written with a unit (s, m, h, d, w) or in seconds."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration (e.g. 30d, 12h, 90m, 3600s): {text!r}"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive duration, not {text!r}")
    return seconds
