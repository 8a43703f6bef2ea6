"""A short tour of a chip: program a few devices with melt-quench pulses, read them back,
and watch them drift. The README's main job runs it on the embedded emulator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pcm_hil.procedures.drift import fit_drift
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip

#: Read times after programming, s: t0 (20 s), 1 hour, 1 day, 1 month, 1 year.
DRIFT_TIMES_S = (20.0, 3600.0, 86400.0, 2.592e6, 3.1536e7)


@dataclass
class TourLevel:
    """One group of devices programmed with the same melt-quench current."""

    current_uA: float
    devices: int
    read_back_mean_uS: float
    read_back_std_uS: float
    drift_mean_uS: list[float] = field(default_factory=list)
    nu_fit: float = float("nan")


@dataclass
class TourResult:
    tile: int
    times_s: list[float]
    levels: list[TourLevel]


def run_tour(
    chip: Chip,
    clock: ChipClock,
    *,
    tile: int = 0,
    currents_uA: tuple[float, ...] = (230.0, 280.0, 330.0, 380.0),
    devices_per_level: int = 64,
    reset_uA: float = 500.0,
    width_ns: float = 50.0,
    times_s: tuple[float, ...] = DRIFT_TIMES_S,
) -> TourResult:
    """RESET ``devices_per_level`` devices per current, apply one melt-quench pulse per
    device (all in one command), read back, then read at ``times_s`` after programming and
    fit a drift exponent per level from the mean conductance (log G vs log t, as
    ``fit_drift`` fits a device; NaN with fewer than 3 times)."""
    count = devices_per_level * len(currents_uA)
    addresses = np.arange(count)
    currents = np.repeat(np.asarray(currents_uA, dtype=np.float32), devices_per_level)
    chip.pulse(tile, addresses, reset_uA, width_ns)
    chip.pulse(tile, addresses, currents, width_ns)
    programmed_at = clock.now()
    read_back = chip.read(tile, addresses).reshape(len(currents_uA), devices_per_level)
    levels = [
        TourLevel(float(i), devices_per_level, float(g.mean()), float(g.std()))
        for i, g in zip(currents_uA, read_back, strict=True)
    ]
    for t in times_s:
        clock.wait_until(programmed_at + t)
        values = chip.read(tile, addresses).reshape(len(currents_uA), devices_per_level)
        for level, group in zip(levels, values, strict=True):
            level.drift_mean_uS.append(float(group.mean()))
    means = np.array([level.drift_mean_uS for level in levels]).T  # times × levels
    elapsed = np.asarray(times_s, dtype=np.float64)[:, None]
    nu, _rms, _error = fit_drift(elapsed, means, fit_from_s=0.0)  # every read
    for level, value in zip(levels, nu.tolist(), strict=True):
        level.nu_fit = value
    return TourResult(tile, list(times_s), levels)
