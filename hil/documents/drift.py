"""The documents of a drift measurement (``procedures.drift``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class DriftStart(Start, name="drift.start"):
    """The devices (one entry each in ``tile``, ``address``, ``target_uS``, ``usable`` —
    programmed and not stuck — and ``programmed_at_s``, chip clock), the read schedule
    (``times_s`` after the end of programming) and the fit: enough to resume the
    measurement. ``resumed`` counts the reads taken before, when resuming, and
    ``resumed_from_run`` names the recorded run they are in (version 2). Version 3 adds
    ``schedule_from_s``: the chip's clock when programming ended, which the read times count
    from (None: the last programming pulse, as before — with no settle time they are one)."""

    version: ClassVar[int] = 3

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
    resumed_from_run: int | None = None
    schedule_from_s: float | None = None


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
    (target_uS, nu_mean, nu_std, n_devices, good_fit_fraction). Version 2 adds the fit of
    every device, in the start document's order: ``nu``, its standard error ``nu_error``,
    ``fit_rms`` (RMS residual of ln G about the fit), ``g_t0_uS`` (the fitted conductance at
    ``t0_s``, µS) and ``good`` (usable, with ``nu_error ≤ max_nu_error``)."""

    version: ClassVar[int] = 2

    levels: list[dict] | None = None
    nu: np.ndarray | None = None
    nu_error: np.ndarray | None = None
    fit_rms: np.ndarray | None = None
    g_t0_uS: np.ndarray | None = None
    good: np.ndarray | None = None
    t0_s: float | None = None
    max_nu_error: float | None = None
