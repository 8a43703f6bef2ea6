"""The documents of a drift measurement (``procedures.drift``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class DriftStart(Start, name="drift.start"):
    """The devices (one entry each in ``tile``, ``address``, ``target_uS``, ``usable`` —
    programmed and not stuck — and ``programmed_at_s``, chip clock), the read schedule
    (``times_s`` after the end of programming) and the fit: enough to resume the
    measurement. ``resumed`` counts the reads taken before, when resuming."""

    tile: np.ndarray
    address: np.ndarray
    target_uS: np.ndarray
    usable: np.ndarray
    programmed_at_s: np.ndarray
    devices: int
    times_s: np.ndarray
    fit_from_s: float
    reads_per_point: int
    resumed: int = 0


@dataclass(frozen=True)
class DriftRead(Step, name="drift.read"):
    """One read of every device (the mean of ``reads_per_point`` reads), µS, at ``t_s``
    after the end of programming (``read_at_s`` on the chip's clock)."""

    t_s: float
    read_at_s: float
    conductance_uS: np.ndarray


@dataclass(frozen=True, kw_only=True)
class DriftEnd(End, name="drift.end"):
    """The fitted drift exponent ν per target level: ``levels`` holds one dict per level
    (target_uS, nu_mean, nu_std, n_devices, good_fit_fraction)."""

    levels: list[dict] | None = None
