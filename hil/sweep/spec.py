"""What a sweep is: a function, a grid of points over its parameters, and a seed.

A spec is a TOML file (``pcm-hil sweep SPEC``) or a ``SweepSpec``::

    function = "program"          # a built-in (pcm_hil.sweep.functions), or "module:function"
    seed = 7

    [axes]                        # the grid: the product of these, the last fastest
    chip_seed = [0, 1, 2, 3]
    tolerance_rel = [0.1, 0.22]

    [fixed]                       # the same for every point
    devices = 4096
    levels = 16

Every point's seed comes from the sweep's seed and the point's own parameters alone
(``point_seed``) — not from its index, the number of workers or the order points complete — so
a point computes the same wherever and whenever it runs, and a resumed sweep's points equal an
uninterrupted one's. Values are taken as written: 1, 1.0 and true are three different points
(with three seeds), and a sweep resumes only with its spec exactly as it was, axis order
included.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: A chip's name: what a Dask worker resource (``chip-<name>=1``) and $PCM_HIL_CHIPS carry.
CHIP_NAME = re.compile(r"[A-Za-z0-9_.-]+")

#: The values a parameter may take: what JSON and TOML both hold.
Value = str | int | float | bool


class SweepSpecError(ValueError):
    """A spec that cannot be run: one line saying where and what."""


@dataclass(frozen=True)
class SweepSpec:
    """``function`` over the product of ``axes`` (name → values), with ``fixed`` parameters
    for every point; ``seed`` seeds every point."""

    function: str
    axes: dict[str, list[Value]]
    fixed: dict[str, Value] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.function, str) or not self.function:
            raise SweepSpecError("a sweep needs a function: a built-in name or 'module:function'")
        if not self.axes:
            raise SweepSpecError("a sweep needs at least one axis")
        for name, values in self.axes.items():
            if not isinstance(values, list) or not values:
                raise SweepSpecError(f"axis {name!r} needs a list of one value or more")
            for value in values:
                _check_value(name, value)
            # 1 and true are two values to JSON but one coordinate to xarray
            if len({_canonical(v) for v in values}) != len(values) or len(set(values)) != len(
                values
            ):
                raise SweepSpecError(f"axis {name!r} repeats a value")
        for name, value in self.fixed.items():
            _check_value(name, value)
        shared = sorted(set(self.axes) & set(self.fixed))
        if shared:
            raise SweepSpecError(f"{', '.join(shared)}: both an axis and fixed")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SweepSpecError(f"seed = {self.seed!r} must be an integer ≥ 0")
        chips = self.axes.get("chip", [self.fixed["chip"]] if "chip" in self.fixed else [])
        for chip in chips:
            if not isinstance(chip, str) or not CHIP_NAME.fullmatch(chip):
                raise SweepSpecError(
                    f"chip = {chip!r}: a chip's name is letters, digits, '.', '_' and '-'"
                )

    def canonical(self) -> str:
        """The spec as exact text: axis order and value types count (1, 1.0 and true are
        three points: their seeds differ)."""
        return json.dumps(
            [self.function, list(self.axes.items()), sorted(self.fixed.items()), self.seed]
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        size = 1
        for n in self.shape:
            size *= n
        return size

    def points(self) -> Iterator[tuple[int, dict[str, Value]]]:
        """(index, parameters of the axes) of every point, in grid order."""
        names = list(self.axes)
        for index, values in enumerate(itertools.product(*self.axes.values())):
            yield index, dict(zip(names, values, strict=True))

    def parameters(self, point: Mapping[str, Value]) -> dict[str, Value]:
        """Everything a point's function is called with: the fixed, then the point's own."""
        return {**self.fixed, **point}


def point_seed(sweep_seed: int, point: Mapping[str, Value]) -> int:
    """A point's seed, 0 ≤ seed < 2⁶³: SHA-256 of the sweep's seed and the point's parameters
    (canonical JSON: sorted keys), so it depends on nothing else."""
    text = json.dumps([sweep_seed, {k: point[k] for k in sorted(point)}], sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """A spec from a TOML file (``SweepSpecError`` naming the file for anything wrong)."""
    where = Path(path)
    try:
        document = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepSpecError(f"{where}: cannot read the sweep spec ({error.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SweepSpecError(f"{where}: not a TOML file ({error})") from None
    unknown = sorted(set(document) - {"function", "axes", "fixed", "seed"})
    if unknown:
        raise SweepSpecError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        return SweepSpec(
            function=document.get("function", ""),
            axes=dict(document.get("axes", {})),
            fixed=dict(document.get("fixed", {})),
            seed=document.get("seed", 0),
        )
    except SweepSpecError as error:
        raise SweepSpecError(f"{where}: {error}") from None


def _check_value(name: str, value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)):
        raise SweepSpecError(f"{name} = {value!r}: a parameter is a string, number or boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepSpecError(f"{name} = {value!r}: a number must be finite")


def _canonical(value: Value) -> str:
    return json.dumps(value)
