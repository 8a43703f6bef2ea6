"""The documents of program-and-verify (``procedures.program``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class ProgramStart(Start, name="program.start"):
    """What is programmed, and how: one entry per device in ``tile``, ``address`` and
    ``target_uS`` (µS), grouped by tile in the order the procedure works through them."""

    strategy: str
    tolerance_uS: float
    max_iterations: int
    devices: int
    tiles: list[int]
    tile: np.ndarray
    address: np.ndarray
    target_uS: np.ndarray


@dataclass(frozen=True)
class ProgramIteration(Step, name="program.iteration"):
    """One iteration: one pulse command and one verify read per tile. ``conductance_uS`` is
    each device's latest verify read (NaN before its first), ``finished`` whether it has
    converged or been found stuck; both in the start document's device order."""

    iteration: int
    converged: int
    stuck_devices: int
    devices: int
    conductance_uS: np.ndarray
    finished: np.ndarray


@dataclass(frozen=True, kw_only=True)
class ProgramEnd(End, name="program.end"):
    """How programming went: the converged fraction, the stuck devices, the iterations, the
    error (final read − target) std of the converged devices, µS. Version 2 adds, per device
    in the start document's order, the read taken after programming ended (``final_uS``,
    µS), whether it ``converged`` or was found stuck (``is_stuck``), and its ``iterations``."""

    version: ClassVar[int] = 2

    strategy: str | None = None
    tolerance_uS: float | None = None
    max_iterations: int | None = None
    devices: int | None = None
    converged_fraction: float | None = None
    stuck_devices: int | None = None
    iterations_mean: float | None = None
    iterations_p99: float | None = None
    error_std_uS: float | None = None
    elapsed_s: float | None = None
    final_uS: np.ndarray | None = None
    converged: np.ndarray | None = None
    is_stuck: np.ndarray | None = None
    iterations: np.ndarray | None = None
