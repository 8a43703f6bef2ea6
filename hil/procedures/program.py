"""Program-and-verify: many devices at once to target conductances.

Every iteration sends, per tile, one batched pulse command for all devices still being
programmed and one batched read — never a command per device. Two strategies:

- ``AmplitudeSearch`` (Papandreou et al., ISCAS 2011): each pulse melt-quenches the device;
  each device's programming current is moved along the programming curve by its read-back
  error, with a step that shrinks whenever the error changes sign (``strategies``).
- ``PartialSetSteps``: RESET, then accumulative partial-SET pulses (longer when far from the
  target), RESET and retry on overshoot.

A device converges when a verify read lies within the tolerance. Devices whose conductance does
not respond to pulses are reported as stuck and left alone. At the end, one fresh read of every
device gives the final conductance and its error (final read − target).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from pcm_hil.documents.base import Status
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart
from pcm_hil.procedures.strategies import AmplitudeSearch, Strategy
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip

#: Fraction of a tile above which a whole-tile read is cheaper than an address list.
WHOLE_TILE_READ_FRACTION = 0.25


def level_targets(levels: int, g_max_uS: float) -> np.ndarray:
    """``levels`` targets spread over 0…g_max: the centres of equal bins, µS."""
    if levels < 1:
        raise ValueError("levels must be at least 1")
    return (np.arange(levels) + 0.5) * (g_max_uS / levels)


def published_programming_sigma(target_uS, g_max_uS: float = 25.0):
    """σ_prog after iterative programming, µS: 0.26348 + 1.9650·g − 1.1731·g², g = G/g_max
    [aihwkit PCM model, citing Papandreou et al. 2011 and Nandakumar et al. 2019]."""
    g = np.asarray(target_uS, dtype=np.float64) / g_max_uS
    return 0.26348 + 1.9650 * g - 1.1731 * g**2


@dataclass
class Devices:
    """The devices of one tile being programmed, and their per-device state."""

    tile: int
    addresses: np.ndarray
    targets: np.ndarray
    converged: np.ndarray = field(init=False)
    stuck: np.ndarray = field(init=False)
    iterations: np.ndarray = field(init=False)
    last_read: np.ndarray = field(init=False)
    programmed_at: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.addresses.size
        self.converged = np.zeros(n, dtype=bool)
        self.stuck = np.zeros(n, dtype=bool)
        self.iterations = np.zeros(n, dtype=np.int32)
        self.last_read = np.full(n, np.nan, dtype=np.float32)
        self.programmed_at = np.full(n, np.nan)

    @property
    def active(self) -> np.ndarray:
        return ~(self.converged | self.stuck)


@dataclass
class ProgramResult:
    """Per device: where, target, outcome. ``error_uS`` = final read − target."""

    strategy: str
    tolerance_uS: float
    max_iterations: int
    tile: np.ndarray
    address: np.ndarray
    target_uS: np.ndarray
    converged: np.ndarray
    stuck: np.ndarray
    iterations: np.ndarray
    final_uS: np.ndarray
    programmed_at_s: np.ndarray
    status: Status
    elapsed_s: float

    @property
    def error_uS(self) -> np.ndarray:
        return self.final_uS - self.target_uS

    def summary(self, g_max_uS: float = 25.0) -> dict:
        """Converged fraction, iterations, error std (converged devices) overall and per
        level, with the published σ_prog beside it."""
        converged = self.converged
        error = self.error_uS.astype(np.float64)
        targets, level = np.unique(self.target_uS, return_inverse=True)
        count = np.bincount(level, minlength=targets.size)
        done = np.bincount(level, weights=converged, minlength=targets.size)
        stuck = np.bincount(level, weights=self.stuck, minlength=targets.size)
        ok_error = np.where(converged, error, 0.0)
        total = np.bincount(level, weights=ok_error, minlength=targets.size)
        square = np.bincount(level, weights=ok_error**2, minlength=targets.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / done
            std = np.sqrt(np.maximum(square / done - mean**2, 0.0))
        levels = [
            {
                "target_uS": float(targets[k]),
                "devices": int(count[k]),
                "converged_fraction": float(done[k] / count[k]),
                "error_std_uS": float(std[k]),
                "published_sigma_uS": float(published_programming_sigma(targets[k], g_max_uS)),
                "stuck": int(stuck[k]),
            }
            for k in range(targets.size)
        ]
        iterations = self.iterations[converged] if converged.any() else self.iterations
        return {
            "status": self.status,
            "strategy": self.strategy,
            "tolerance_uS": self.tolerance_uS,
            "max_iterations": self.max_iterations,
            "devices": int(self.target_uS.size),
            "converged_fraction": float(converged.mean()) if converged.size else 0.0,
            "stuck_devices": int(self.stuck.sum()),
            "iterations_mean": float(iterations.mean()) if iterations.size else 0.0,
            "iterations_p99": float(np.percentile(iterations, 99)) if iterations.size else 0.0,
            "error_std_uS": float(error[converged].std()) if converged.any() else float("nan"),
            "elapsed_s": self.elapsed_s,
            "levels": levels,
        }


def program_and_verify(
    chip: Chip,
    tiles: int | Iterable[int] | np.ndarray,
    addresses: np.ndarray,
    targets_uS: np.ndarray,
    *,
    strategy: Strategy | None = None,
    tolerance_uS: float = 0.5,
    max_iterations: int = 30,
    clock: ChipClock | None = None,
    listeners: Iterable[Listener] = (),
) -> ProgramResult:
    """Program devices (``tiles[i]``, ``addresses[i]``) to ``targets_uS[i]``.

    With a ``clock``, each device's last pulse time is kept (``programmed_at_s``, on the chip's
    clock; drift counts from it). Devices the strategy finds unresponsive are marked stuck and get no more pulses. Ctrl-C
    (KeyboardInterrupt) stops the procedure and returns what it has, status ``cancelled``.
    """
    strategy = strategy or AmplitudeSearch()
    tile_of = np.broadcast_to(np.asarray(tiles, dtype=np.int64), np.shape(addresses))
    addresses = np.asarray(addresses, dtype=np.int64)
    targets = np.asarray(targets_uS, dtype=np.float32)
    if not (tile_of.shape == addresses.shape == targets.shape):
        raise ValueError("tiles, addresses and targets must have the same shape")
    groups = [
        Devices(int(t), addresses[tile_of == t], targets[tile_of == t]) for t in np.unique(tile_of)
    ]
    emitter = Emitter(listeners, total=max_iterations)
    started = time.perf_counter()
    final = None
    start = ProgramStart(
        strategy=strategy.name,
        tolerance_uS=tolerance_uS,
        max_iterations=max_iterations,
        devices=int(targets.size),
        tiles=[g.tile for g in groups],
        tile=np.concatenate([np.full(g.addresses.size, g.tile, dtype=np.int32) for g in groups]),
        address=np.concatenate([g.addresses for g in groups]).astype(np.int32),
        target_uS=np.concatenate([g.targets for g in groups]),
    )
    with cancellable(emitter, start, ProgramEnd) as run:
        states = [strategy.prepare(chip, group) for group in groups]
        for iteration in range(1, max_iterations + 1):
            read = [
                _iterate(chip, g, strategy, s, tolerance_uS, clock)
                for g, s in zip(groups, states, strict=True)
            ]
            busy = any(index.size for _mask, index in read)
            if emitter.listeners and busy:  # the per-device arrays only for someone who listens
                emitter.step(_iteration_document(iteration, groups, read, int(targets.size)))
            if not busy:
                break
        final = [_read(chip, group, np.arange(group.addresses.size)) for group in groups]
    if final is None:  # cancelled: the last verify reads are what we have
        final = [group.last_read for group in groups]
    result = ProgramResult(
        strategy=strategy.name,
        tolerance_uS=tolerance_uS,
        max_iterations=max_iterations,
        tile=np.concatenate([np.full(g.addresses.size, g.tile) for g in groups]),
        address=np.concatenate([g.addresses for g in groups]),
        target_uS=np.concatenate([g.targets for g in groups]),
        converged=np.concatenate([g.converged for g in groups]),
        stuck=np.concatenate([g.stuck for g in groups]),
        iterations=np.concatenate([g.iterations for g in groups]),
        final_uS=np.concatenate(final).astype(np.float32),
        programmed_at_s=np.concatenate([g.programmed_at for g in groups]),
        status=run.status,
        elapsed_s=time.perf_counter() - started,
    )
    summary = result.summary()
    emitter.end(
        ProgramEnd(
            **{k: v for k, v in summary.items() if k != "levels"},
            final_uS=result.final_uS,
            converged=result.converged,
            is_stuck=result.stuck,
            iterations=result.iterations,
        )
    )
    return result


def _iteration_document(
    iteration: int, groups: list[Devices], read: list[tuple[np.ndarray, np.ndarray]], devices: int
) -> ProgramIteration:
    """What changed in an iteration: which devices were read (``read[k]``: group k's mask of
    the devices it read, and their positions), their reads, and which of them are finished."""
    values, finished = [], []
    for group, (_mask, index) in zip(groups, read, strict=True):
        values.append(group.last_read[index])
        finished.append(group.converged[index] | group.stuck[index])
    return ProgramIteration(
        iteration=iteration,
        converged=sum(int(np.count_nonzero(g.converged)) for g in groups),
        stuck_devices=sum(int(np.count_nonzero(g.stuck)) for g in groups),
        devices=devices,
        is_read=np.concatenate([mask for mask, _index in read]),
        conductance_uS=np.concatenate(values),
        finished=np.concatenate(finished),
    )


def _iterate(
    chip, group: Devices, strategy, state, tolerance_uS: float, clock
) -> tuple[np.ndarray, np.ndarray]:
    """One pulse command and one read for the group's active devices: (the mask of them,
    their positions in the group), both empty of devices if none was active."""
    active = group.active
    index = np.flatnonzero(active)
    if index.size == 0:
        return active, index
    amplitude, width = strategy.pulses(state, group, index)
    chip.pulse(group.tile, group.addresses[index], amplitude, width)
    if clock is not None:
        group.programmed_at[index] = clock.now()
    read = _read(chip, group, index)
    group.iterations[index] += 1
    group.last_read[index] = read
    done = np.abs(read - group.targets[index]) <= tolerance_uS
    group.converged[index[done]] = True
    open_ = index[~done]
    group.stuck[open_[strategy.update(state, group, open_, read[~done])]] = True
    return active, index


def _read(chip, group: Devices, index: np.ndarray) -> np.ndarray:
    """One batched read of the group's devices ``index``: whole tile if they are many."""
    addresses = group.addresses[index]
    if addresses.size > WHOLE_TILE_READ_FRACTION * chip.config.devices_per_tile:
        return chip.read_tile(group.tile).ravel()[addresses]
    return chip.read(group.tile, addresses)
