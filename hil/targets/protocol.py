"""What procedures need of a chip: small typing.Protocols, satisfied by the chip driver,
by future bench targets and by test doubles alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Programmable(Protocol):
    """Applies batched programming pulses (amplitude µA, width ns) to devices of a tile."""

    def pulse(self, tile: int, addresses, amplitude_uA, width_ns) -> None: ...


@runtime_checkable
class Readable(Protocol):
    """Reads conductances in µS: a whole tile, or listed devices of a tile."""

    def read_tile(self, tile: int) -> np.ndarray: ...

    def read(self, tile: int, addresses) -> np.ndarray: ...


@runtime_checkable
class Timed(Protocol):
    """Has a clock in seconds; ``advance`` exists where the clock is virtual."""

    def time(self) -> float: ...

    def clock_mode(self) -> str: ...

    def advance(self, seconds: float) -> None: ...


@runtime_checkable
class Chip(Programmable, Readable, Timed, Protocol):
    """A PCM array a procedure can program, read and wait on."""
