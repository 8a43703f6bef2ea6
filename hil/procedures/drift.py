"""Drift measurement: program levels, read at log-spaced times, fit ν per device.

G(t) = G(t0)·(t/t0)^−ν, so log G is linear in log t with slope −ν. Each device's ν is the
least-squares slope over the reads taken at least ``fit_from_s`` after its programming (t0 =
20 s by default, the convention of the published fits). Waiting goes through a ``ChipClock``:
real time on a chip, virtual time on the emulator — the code is the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pcm_hil.documents.base import Status
from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.procedures.program import (
    SETTLE_S,
    TOLERANCE_REL,
    TOLERANCE_US,
    ProgramResult,
    program_and_verify,
)
from pcm_hil.procedures.strategies import Strategy
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip

YEAR_S = 365 * 86400.0


def log_times(start_s: float = 1.0, end_s: float = YEAR_S, points: int = 25) -> np.ndarray:
    """``points`` read times from ``start_s`` to ``end_s``, evenly spaced in log time, s."""
    if not 0 < start_s < end_s or points < 2:
        raise ValueError("need 0 < start < end and at least 2 points")
    return np.geomspace(start_s, end_s, points)


@dataclass
class DriftResult:
    """Per device: target, fitted ν and its standard error (a good fit has at most
    ``max_nu_error``: a criterion blind to ν itself, so that good fits are not a biased sample
    of ν); ``elapsed_s`` and ``conductance_uS`` (read times ×
    devices) are the reads behind the fits, each at its device's time since programming."""

    target_uS: np.ndarray
    tile: np.ndarray
    address: np.ndarray
    usable: np.ndarray
    nu: np.ndarray
    nu_error: np.ndarray
    good: np.ndarray
    elapsed_s: np.ndarray
    conductance_uS: np.ndarray
    fit_from_s: float
    status: Status
    wall_s: float
    programming: ProgramResult | None
    fit_rms: np.ndarray | None = None
    """The RMS residual of log G about each device's fit (see ``DriftFit``)."""
    g_t0_uS: np.ndarray | None = None
    """Each device's fitted conductance at ``t0_s``, µS."""
    t0_s: float = 20.0
    max_nu_error: float = 0.02

    def summary(self) -> dict:
        """Per target level: mean and std of ν over good fits, how many, and the fraction of
        usable devices (programmed, not stuck) whose fit was good."""
        levels = []
        for target in np.unique(self.target_uS):
            at = self.target_uS == target
            good = at & self.good
            usable = at & self.usable
            levels.append(
                {
                    "target_uS": float(target),
                    "nu_mean": float(self.nu[good].mean()) if good.any() else float("nan"),
                    "nu_std": float(self.nu[good].std()) if good.any() else float("nan"),
                    "n_devices": int(good.sum()),
                    "good_fit_fraction": float(good.sum() / max(int(usable.sum()), 1)),
                }
            )
        return {
            "status": self.status,
            "devices": int(self.target_uS.size),
            "read_times": int(self.elapsed_s.shape[0]),
            "fit_from_s": self.fit_from_s,
            "elapsed_s": self.wall_s,
            "levels": levels,
        }


@dataclass
class DriftFit:
    """Per device, the least-squares fit of log G vs log t: the drift exponent ``nu``, its
    standard error ``nu_error``, the RMS residual of log G about the line (``fit_rms``, the fit's
    goodness: 0.01 is a 1% scatter), the fitted conductance at ``t0_s`` (``g_t0_uS``, µS) and
    how many reads it used (``reads``). NaN where fewer than 3 reads qualify."""

    nu: np.ndarray
    nu_error: np.ndarray
    fit_rms: np.ndarray
    g_t0_uS: np.ndarray
    reads: np.ndarray
    t0_s: float


def drift_fit(
    elapsed_s: np.ndarray, conductance_uS: np.ndarray, fit_from_s: float, t0_s: float | None = None
) -> DriftFit:
    """Least-squares fit per device of reads (times × devices) of log G vs log t, using reads
    at ``elapsed_s ≥ fit_from_s`` with positive conductance; G(t0) at ``t0_s`` (default:
    ``fit_from_s``, or 1 s when that is 0)."""
    t0 = float(t0_s if t0_s is not None else (fit_from_s if fit_from_s > 0 else 1.0))
    use = (elapsed_s >= fit_from_s) & (conductance_uS > 0)
    x = np.log(np.where(use, elapsed_s, 1.0))
    y = np.log(np.where(use, conductance_uS, 1.0))
    n = use.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (x * use).sum(axis=0) / n
        my = (y * use).sum(axis=0) / n
        dx = (x - mx) * use
        dy = (y - my) * use
        sxx = (dx * dx).sum(axis=0)
        slope = (dx * dy).sum(axis=0) / sxx
        rms = np.sqrt(((dy - slope * dx) ** 2).sum(axis=0) / (n - 2))
        error = rms / np.sqrt(sxx)
        g_t0 = np.exp(my + slope * (np.log(t0) - mx))
    for array in (slope, rms, error, g_t0):
        array[n < 3] = np.nan
    return DriftFit(-slope, error, rms, g_t0, n.astype(np.int32), t0)


def fit_drift(elapsed_s: np.ndarray, conductance_uS: np.ndarray, fit_from_s: float):
    """Least-squares ν per device from reads (times × devices) of log G vs log t, using reads
    at ``elapsed_s ≥ fit_from_s`` with positive conductance. Returns ν and the RMS residual of
    log G about the fit and the standard error of ν (NaN where fewer than 3 reads qualify);
    ``drift_fit`` gives G(t0) too."""
    fit = drift_fit(elapsed_s, conductance_uS, fit_from_s)
    return fit.nu, fit.fit_rms, fit.nu_error


@dataclass
class DriftProgress:
    """Where a drift measurement stands — its devices, when each was last programmed (chip
    clock, s), which are usable, the read schedule and the reads taken so far: enough to
    resume it (``measure_drift(..., resume=progress)``), e.g. from the run store after a
    dropped connection (``pcm_hil.records.resume.progress_from_run``)."""

    tile: np.ndarray
    address: np.ndarray
    target_uS: np.ndarray
    usable: np.ndarray
    programmed_at_s: np.ndarray
    times_s: np.ndarray
    read_at_s: list[float]
    reads: list[np.ndarray]
    run_id: int | None = None
    """The recorded run it comes from, if any (the resumed run records it)."""
    schedule_from_s: float | None = None
    """The chip's clock the read times count from (None: the last programming pulse)."""

    @property
    def end_of_programming_s(self) -> float:
        """The chip's clock at the end of programming: the read times count from there."""
        if self.schedule_from_s is not None:
            return float(self.schedule_from_s)
        return float(np.max(self.programmed_at_s, initial=0.0))


def measure_drift(
    chip: Chip,
    clock: ChipClock,
    tiles: int | Iterable[int] | np.ndarray | None,
    addresses: np.ndarray | None,
    targets_uS: np.ndarray | None,
    times_s: Iterable[float] | None = None,
    *,
    fit_from_s: float = 20.0,
    reads_per_point: int = 4,
    max_nu_error: float = 0.02,
    program: bool = True,
    strategy: Strategy | None = None,
    tolerance_uS: float = TOLERANCE_US,
    tolerance_rel: float | None = TOLERANCE_REL,
    settle_s: float = SETTLE_S,
    max_iterations: int = 30,
    resume: DriftProgress | None = None,
    listeners: Iterable[Listener] = (),
) -> DriftResult:
    """Program the devices (unless ``program`` is False: they are taken as programmed now),
    read them ``reads_per_point`` times (averaged) at each of ``times_s`` after the end of
    programming, and fit ν per device over its own time since its last programming pulse.
    Devices that did not converge or are stuck are read but not fitted. Ctrl-C returns the
    fits over the times read so far. With ``resume``, the devices, programming times and
    schedule come from there (tiles, addresses, targets and times_s are ignored, may be None)
    and only the reads not yet taken are taken."""
    listeners = tuple(listeners)
    started = time.perf_counter()
    programming = None
    if resume is not None:
        tile_of, addresses = resume.tile.astype(np.int64), resume.address.astype(np.int64)
        targets, usable = resume.target_uS.astype(np.float32), resume.usable.astype(bool)
        programmed_at, times = resume.programmed_at_s.astype(np.float64), resume.times_s
        done_at, read_rows = (
            list(resume.read_at_s),
            [np.asarray(r, np.float32) for r in resume.reads],
        )
    else:
        if tiles is None or addresses is None or targets_uS is None:
            raise TypeError("measure_drift needs tiles, addresses and targets_uS, or resume")
        times = log_times() if times_s is None else np.asarray(sorted(times_s), dtype=np.float64)
        tile_of = np.broadcast_to(np.asarray(tiles, dtype=np.int64), np.shape(addresses))
        addresses = np.asarray(addresses, dtype=np.int64)
        targets = np.asarray(targets_uS, dtype=np.float32)
        done_at, read_rows = [], []
        if program:
            programming = program_and_verify(
                chip,
                tile_of,
                addresses,
                targets,
                strategy=strategy,
                tolerance_uS=tolerance_uS,
                tolerance_rel=tolerance_rel,
                settle_s=settle_s,
                max_iterations=max_iterations,
                clock=clock,
                listeners=listeners,
            )
            # programming returns devices grouped by tile; follow its order from here on
            tile_of, addresses, targets = (
                programming.tile,
                programming.address,
                programming.target_uS,
            )
            usable = programming.converged & ~programming.stuck
            programmed_at = programming.programmed_at_s
        else:
            usable = np.ones(addresses.shape, dtype=bool)
            programmed_at = np.full(addresses.size, clock.now())
    if resume is not None:
        end_of_programming = resume.end_of_programming_s
    else:  # when programming ended: its last verify read settle_s after the last pulse
        end_of_programming = max(float(np.max(programmed_at)), clock.now())
    emitter = Emitter(listeners, total=times.size)
    emitter.done = len(read_rows)
    start = DriftStart(
        tile=tile_of.astype(np.int32),
        address=addresses.astype(np.int32),
        target_uS=targets,
        usable=usable,
        programmed_at_s=programmed_at,
        devices=int(addresses.size),
        times_s=times,
        fit_from_s=fit_from_s,
        reads_per_point=reads_per_point,
        resumed=len(read_rows),
        resumed_from_run=resume.run_id if resume is not None else None,
        schedule_from_s=end_of_programming,
    )
    programming_status: Status = "completed" if programming is None else programming.status
    programming_done = programming_status == "completed"
    with cancellable(emitter, start, DriftEnd) as run:
        for t in times[len(read_rows) :] if programming_done else ():
            clock.wait_until(end_of_programming + t)
            read_at = clock.now()
            values = np.zeros(addresses.size, dtype=np.float64)
            for tile in np.unique(tile_of):
                at = tile_of == tile
                for _ in range(reads_per_point):
                    values[at] += chip.read(int(tile), addresses[at])
            values /= reads_per_point
            done_at.append(read_at)
            read_rows.append(values.astype(np.float32))
            emitter.step(
                DriftRead(
                    t_s=read_at - end_of_programming,
                    read_at_s=read_at,
                    conductance_uS=read_rows[-1],
                )
            )
    status = run.status if programming_done else programming_status
    elapsed = (np.asarray(done_at, dtype=np.float64)[:, None] - programmed_at[None, :]).reshape(
        -1, addresses.size
    )
    reads = np.asarray(read_rows, dtype=np.float32).reshape(len(read_rows), addresses.size)
    fit = drift_fit(elapsed, reads, fit_from_s)
    good = usable & (fit.nu_error <= max_nu_error)
    result = DriftResult(
        targets,
        tile_of,
        addresses,
        usable,
        fit.nu,
        fit.nu_error,
        good,
        elapsed,
        reads,
        fit_from_s,
        status,
        time.perf_counter() - started,
        programming,
        fit_rms=fit.fit_rms,
        g_t0_uS=fit.g_t0_uS,
        t0_s=fit.t0_s,
        max_nu_error=max_nu_error,
    )
    emitter.end(
        DriftEnd(
            status=status,
            levels=result.summary()["levels"],
            nu=fit.nu.astype(np.float32),
            nu_error=fit.nu_error.astype(np.float32),
            fit_rms=fit.fit_rms.astype(np.float32),
            g_t0_uS=fit.g_t0_uS.astype(np.float32),
            good=good,
            t0_s=fit.t0_s,
            max_nu_error=max_nu_error,
        )
    )
    return result
