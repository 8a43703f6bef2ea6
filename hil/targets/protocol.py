"""What procedures need of a chip: small typing.Protocols, satisfied by the chip driver
(``PcmChip``), the bench target (``BenchTarget``) and test doubles alike.

``config`` is what the chip reports of itself (``ChipInfo``: geometry, g_max, safe pulse
limits, converter ranges), the same fields on every target.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pcm_hil.protocols.chip import ChipInfo


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
    """A PCM array a procedure can program, read and wait on, and what it reports of itself."""

    @property
    def config(self) -> ChipInfo: ...


@runtime_checkable
class MatrixChip(Chip, Protocol):
    """A chip that also multiplies: analog MVM on a window of a tile (inputs V, outputs µA)."""

    def mvm(
        self,
        tile: int,
        inputs_V,
        *,
        transposed: bool = False,
        row: int = 0,
        column: int = 0,
        rows: int | None = None,
        columns: int | None = None,
    ) -> np.ndarray: ...


@runtime_checkable
class OpenedChip(MatrixChip, Protocol):
    """A matrix chip opened for one use and closed after it: what ``open_chip(i)`` of the
    inference experiment returns."""

    def close(self) -> None: ...
