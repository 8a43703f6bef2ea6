"""The documents of program-and-verify (``procedures.program``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
    settle_s: float = 0.0
    """Wait between each iteration's pulses and its verify read, s (version 2; 0 before)."""
    tolerance_rel: float | None = None
    """Each device's tolerance as a fraction of its target, within ``tolerance_floor_uS``…
    ``tolerance_uS`` (version 2; None: ``tolerance_uS`` for every device, as before)."""
    tolerance_floor_uS: float = 0.0
    reset_target_uS: float = 0.0
    """Targets at or below this are met by any read at or below it (version 2)."""

    version: ClassVar[int] = 2

    def tolerances(self) -> np.ndarray:
        """Each device's verify tolerance, µS (``device_tolerance``)."""
        return device_tolerance(
            self.target_uS, self.tolerance_uS, self.tolerance_rel, self.tolerance_floor_uS
        )

    def within(self, conductance_uS: np.ndarray) -> np.ndarray:
        """Whether each device's ``conductance_uS`` meets its target (NaN: no)."""
        target = np.asarray(self.target_uS, np.float64)
        read = np.asarray(conductance_uS, np.float64)
        with np.errstate(invalid="ignore"):
            met = np.abs(read - target) <= self.tolerances()
            met |= (target <= self.reset_target_uS) & (read <= self.reset_target_uS)
        return met


def device_tolerance(
    targets_uS: np.ndarray,
    tolerance_uS: float,
    tolerance_rel: float | None,
    tolerance_floor_uS: float = 0.0,
) -> np.ndarray:
    """Each device's verify tolerance, µS: ``tolerance_rel`` of its target, at least
    ``tolerance_floor_uS`` and at most ``tolerance_uS`` (just ``tolerance_uS`` when
    ``tolerance_rel`` is None)."""
    if not (np.isfinite(tolerance_uS) and tolerance_uS > 0):
        raise ValueError(f"tolerance_uS = {tolerance_uS} must be a conductance > 0 µS")
    absolute = np.full(np.shape(targets_uS), tolerance_uS, dtype=np.float32)
    if tolerance_rel is None:
        return absolute
    if not (np.isfinite(tolerance_rel) and tolerance_rel > 0):
        raise ValueError(f"tolerance_rel = {tolerance_rel} must be a fraction > 0")
    if not (np.isfinite(tolerance_floor_uS) and 0 <= tolerance_floor_uS <= tolerance_uS):
        raise ValueError(
            f"tolerance_floor_uS = {tolerance_floor_uS} must lie within 0…tolerance_uS"
        )
    relative = np.float32(tolerance_rel) * np.abs(np.asarray(targets_uS, dtype=np.float32))
    return np.clip(relative, np.float32(tolerance_floor_uS), absolute).astype(np.float32)


@dataclass(frozen=True)
class ProgramIteration(Step, name="program.iteration"):
    """One iteration: one pulse command and one verify read per tile, for the devices still
    being programmed. ``is_read``, one entry per device in the start document's order:
    whether it was read in this iteration; one entry per device read (per True of ``is_read``, in
    device order): its read, ``conductance_uS`` (µS), and whether it is ``finished`` —
    converged or found stuck — by the end of the iteration (a device only finishes in an
    iteration that read it).

    Version 2 keeps what changed: version 1 held every device's latest read and finished
    state each iteration; ``ProgramTrace`` folds either into every device's latest read."""

    version: ClassVar[int] = 2

    iteration: int
    converged: int
    stuck_devices: int
    devices: int
    is_read: np.ndarray
    conductance_uS: np.ndarray
    finished: np.ndarray

    @classmethod
    def upgrade(cls, version: int, values: dict[str, Any]) -> dict[str, Any] | None:
        """Version 1: each device's latest read stands as read in the iteration (folding
        them gives the same latest reads)."""
        if version != 1 or "conductance_uS" not in values:
            return None
        latest = np.asarray(values["conductance_uS"], dtype=np.float32)
        read = ~np.isnan(latest)  # a finished device has been read: its state carries over
        finished = np.asarray(values["finished"], dtype=bool)[read]
        return {**values, "is_read": read, "conductance_uS": latest[read], "finished": finished}


class ProgramTrace:
    """Every device's latest verify read (µS, NaN before its first) and whether it is
    finished, folded from a program-and-verify run's iterations as they come: each costs
    only the devices it read."""

    def __init__(self, devices: int) -> None:
        self.conductance_uS = np.full(devices, np.nan, dtype=np.float32)
        self.finished = np.zeros(devices, dtype=bool)
        self.finished_iteration = np.zeros(devices, dtype=np.int32)
        """The iteration (from 1) at which each device was first finished (0: not yet)."""
        self.iteration = 0

    def add(self, step: ProgramIteration) -> None:
        read = np.flatnonzero(np.asarray(step.is_read, dtype=bool))
        self.conductance_uS[read] = step.conductance_uS
        now = read[np.asarray(step.finished, dtype=bool)]
        self.finished_iteration[now[~self.finished[now]]] = step.iteration
        self.finished[now] = True
        self.iteration = step.iteration


@dataclass(frozen=True, kw_only=True)
class ProgramEnd(End, name="program.end"):
    """How programming went: the converged fraction, the stuck devices, the iterations, the
    error (final read − target) std of the converged devices, µS. Version 2 adds, per device
    in the start document's order, the read taken after programming ended (``final_uS``,
    µS), whether it ``converged`` or was found stuck (``is_stuck``), and its ``iterations``.
    Version 3 adds the error mean, the read noise and the programmed spread (µS, see
    ``procedures.program.error_statistics``) and each device's repeat read (``repeat_uS``);
    from version 3 the final read of a converged device is taken when it converged."""

    version: ClassVar[int] = 3

    strategy: str | None = None
    tolerance_uS: float | None = None
    max_iterations: int | None = None
    devices: int | None = None
    converged_fraction: float | None = None
    stuck_devices: int | None = None
    iterations_mean: float | None = None
    iterations_p99: float | None = None
    error_std_uS: float | None = None
    error_mean_uS: float | None = None
    read_noise_uS: float | None = None
    programmed_spread_uS: float | None = None
    elapsed_s: float | None = None
    final_uS: np.ndarray | None = None
    repeat_uS: np.ndarray | None = None
    converged: np.ndarray | None = None
    is_stuck: np.ndarray | None = None
    iterations: np.ndarray | None = None
