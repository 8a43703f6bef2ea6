"""Program-and-verify: many devices at once to target conductances.

Every iteration sends, per tile, one batched pulse command for all devices still being
programmed and one batched read — never a command per device. Two strategies:

- ``AmplitudeSearch`` (Papandreou et al., ISCAS 2011): each pulse melt-quenches the device;
  each device's programming current is moved along the programming curve by its read-back
  error, with a step that shrinks whenever the error changes sign (``strategies``).
- ``PartialSetSteps``: RESET, then accumulative partial-SET pulses (longer when far from the
  target), RESET and retry on overshoot.

Each iteration's verify read waits ``settle_s`` after its pulses (20 s by default: the time
after programming at which the published σ_prog describes programmed conductances; a virtual
clock advances it at once, a real chip waits it once per iteration for the whole batch). A
device converges when a verify read lies within the tolerance (a target at or below a RESET
device's conductance, ``RESET_TARGET_US``, when the read is too); at once two fresh reads of it
give its final conductance (``final_uS``, error = final − target) and a repeat
(``repeat_uS``), whose difference measures read noise apart from the programmed spread.
Devices whose conductance does not respond to pulses are reported as stuck and left alone;
they, and devices out of iterations, are read twice at the end.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from pcm_hil.documents.base import Status
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.documents.program import (
    ProgramEnd,
    ProgramIteration,
    ProgramStart,
    device_tolerance,
)
from pcm_hil.procedures.levels import (
    error_statistics,
    level_sums,
    levels_of,
    statistics_from_sums,
)
from pcm_hil.procedures.strategies import AmplitudeSearch, Strategy
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip

#: Fraction of a tile above which a whole-tile read is cheaper than an address list.
WHOLE_TILE_READ_FRACTION = 0.25

#: Default wait between an iteration's pulses and its verify read, s: the reference time t0 of
#: the published programming and drift statistics [aihwkit PCM model, Joshi et al. 2020].
SETTLE_S = 20.0

#: Default verify tolerance: within TOLERANCE_REL of the target, at least TOLERANCE_FLOOR_US
#: and at most TOLERANCE_US [choice: with it, on the default emulator, the programmed spread
#: 20 s after programming lies at 0.90–1.19× the published σ_prog at every level ≥ 1 µS over
#: six chips, 12–14 of 15 levels within ±10% (tests/test_faithful_default.py) and the lowest
#: of 16 levels (0.78 µS) within 0.1 µS of its target; a fixed 0.5 µS window left the spread
#: at 0.65–0.9× and the lowest level 0.35 µS low].
TOLERANCE_US = 1.2
TOLERANCE_REL = 0.22
#: The tolerance's floor, µS: the read noise of a device near RESET is no narrower.
TOLERANCE_FLOOR_US = 0.15
#: Targets at or below this, µS, are met by any read at or below it: a RESET device's
#: conductance, read noise and all (a weight's idle device of its pair, a zero weight) —
#: melt-quench reaches no lower, so a window around 0 µS would leave them unconverged.
RESET_TARGET_US = 0.3


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
    tolerance: np.ndarray
    converged: np.ndarray = field(init=False)
    stuck: np.ndarray = field(init=False)
    iterations: np.ndarray = field(init=False)
    last_read: np.ndarray = field(init=False)
    programmed_at: np.ndarray = field(init=False)
    final: np.ndarray = field(init=False)
    repeat: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.addresses.size
        self.converged = np.zeros(n, dtype=bool)
        self.stuck = np.zeros(n, dtype=bool)
        self.iterations = np.zeros(n, dtype=np.int32)
        self.last_read = np.full(n, np.nan, dtype=np.float32)
        self.programmed_at = np.full(n, np.nan)
        self.final = np.full(n, np.nan, dtype=np.float32)
        self.repeat = np.full(n, np.nan, dtype=np.float32)

    @property
    def active(self) -> np.ndarray:
        return ~(self.converged | self.stuck)

    @functools.cached_property
    def in_order(self) -> bool:
        """Whether the devices are the tile's first ones in address order (a whole-tile read
        is then theirs as it comes)."""
        return bool(np.array_equal(self.addresses, np.arange(self.addresses.size)))


@dataclass
class ProgramResult:
    """Per device: where, target, outcome. ``error_uS`` = final read − target; ``repeat_uS``
    is a second read taken right after the final one (NaN where cancelled before it)."""

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
    repeat_uS: np.ndarray | None = None
    settle_s: float = 0.0

    @property
    def error_uS(self) -> np.ndarray:
        return self.final_uS - self.target_uS

    def summary(self, g_max_uS: float = 25.0, *, levels: bool = True) -> dict:
        """Converged fraction, iterations, and for the converged devices overall and per
        level: the error (final read − target) mean and std, the read noise (std of final −
        repeat over √2) and the programmed spread (√(error std² − read noise²)), with the
        published σ_prog beside them (rms over a level's devices). µS. The levels are the
        distinct targets, or for continuous targets (a network's weights) conductance bins,
        each with its edges (``pcm_hil.procedures.levels``); ``levels=False`` leaves them out
        (the run's end document has no use for them)."""
        converged = self.converged
        repeat = self.final_uS if self.repeat_uS is None else self.repeat_uS
        # iterations of the converged devices (of all when none converged): mean and p99 from
        # their counts — small integers, one pass
        counted = converged if converged.any() else np.ones_like(converged)
        per_count = np.bincount(self.iterations[counted]) if self.iterations.size else None
        summary = {
            "status": self.status,
            "strategy": self.strategy,
            "tolerance_uS": self.tolerance_uS,
            "max_iterations": self.max_iterations,
            "settle_s": self.settle_s,
            "devices": int(self.target_uS.size),
            "converged_fraction": float(converged.mean()) if converged.size else 0.0,
            "stuck_devices": int(np.count_nonzero(self.stuck)),
            "iterations_mean": _mean_of_counts(per_count),
            "iterations_p99": _percentile_of_counts(per_count, 99.0),
            **error_statistics(self.final_uS, repeat, self.target_uS, converged),
            "elapsed_s": self.elapsed_s,
        }
        if levels:
            summary["levels"] = self._levels(repeat, g_max_uS)
        return summary

    def _levels(self, repeat: np.ndarray, g_max_uS: float) -> list[dict]:
        """One row per level (``summary``)."""
        converged = self.converged
        levels = levels_of(self.target_uS)
        level, count = levels.of_device, levels.count
        sums = level_sums(self.final_uS, repeat, self.target_uS, level, converged, count)
        statistics = statistics_from_sums(sums[:, :count])
        devices = np.bincount(level, minlength=count)
        done = sums[0, :count]  # the converged devices of each level
        stuck = np.bincount(level[self.stuck], minlength=count)
        if levels.edges_uS is None:  # one target per level: its σ_prog
            published = published_programming_sigma(levels.target_uS, g_max_uS)
        else:  # a bin of targets: the rms of its devices' σ_prog
            sigma = published_programming_sigma(self.target_uS, g_max_uS)
            published = np.sqrt(np.bincount(level, weights=sigma**2, minlength=count) / devices)
        rows = []
        for k in range(count):
            row = {
                "target_uS": float(levels.target_uS[k]),
                "devices": int(devices[k]),
                "converged_fraction": float(done[k] / devices[k]),
                **{name: float(values[k]) for name, values in statistics.items()},
                "published_sigma_uS": float(published[k]),
                "stuck": int(stuck[k]),
            }
            if levels.edges_uS is not None:
                row["target_low_uS"] = float(levels.edges_uS[0, k])
                row["target_high_uS"] = float(levels.edges_uS[1, k])
            rows.append(row)
        return rows


def _mean_of_counts(counts: np.ndarray | None) -> float:
    """The mean of values 0, 1, 2, … seen ``counts[v]`` times (0.0 for none)."""
    if counts is None or counts.sum() == 0:
        return 0.0
    return float(np.dot(np.arange(counts.size), counts) / counts.sum())


def _percentile_of_counts(counts: np.ndarray | None, q: float) -> float:
    """``np.percentile`` (linear) of values 0, 1, 2, … seen ``counts[v]`` times."""
    if counts is None or counts.sum() == 0:
        return 0.0
    position = q / 100.0 * (counts.sum() - 1)
    cumulative = np.cumsum(counts)
    low = int(np.searchsorted(cumulative, np.floor(position), side="right"))
    high = int(np.searchsorted(cumulative, np.ceil(position), side="right"))
    return float(low + (high - low) * (position - np.floor(position)))


def program_and_verify(
    chip: Chip,
    tiles: int | Iterable[int] | np.ndarray,
    addresses: np.ndarray,
    targets_uS: np.ndarray,
    *,
    strategy: Strategy | None = None,
    tolerance_uS: float = TOLERANCE_US,
    tolerance_rel: float | None = TOLERANCE_REL,
    tolerance_floor_uS: float = TOLERANCE_FLOOR_US,
    max_iterations: int = 30,
    settle_s: float = SETTLE_S,
    clock: ChipClock | None = None,
    listeners: Iterable[Listener] = (),
) -> ProgramResult:
    """Program devices (``tiles[i]``, ``addresses[i]``) to ``targets_uS[i]``.

    Each iteration pulses every unfinished device, waits ``settle_s`` (s) on the chip's clock
    (``clock``, or the chip's own), then reads them back. Each device's last pulse time is kept
    (``programmed_at_s``, on the chip's clock; drift counts from it). Devices the strategy
    finds unresponsive are marked stuck and get no more pulses. Ctrl-C (KeyboardInterrupt)
    stops the procedure and returns what it has, status ``cancelled``.
    """
    if not (np.isfinite(settle_s) and settle_s >= 0):
        raise ValueError(f"settle_s = {settle_s} must be a time ≥ 0 s")
    strategy = strategy or AmplitudeSearch()
    clock = clock if clock is not None or settle_s == 0 else ChipClock(chip)
    tile_of = np.broadcast_to(np.asarray(tiles, dtype=np.int64), np.shape(addresses))
    addresses = np.asarray(addresses, dtype=np.int64)
    targets = np.asarray(targets_uS, dtype=np.float32)
    if not (tile_of.shape == addresses.shape == targets.shape):
        raise ValueError("tiles, addresses and targets must have the same shape")
    # any shape (a scalar, a tile's grid) as one list of devices, in order
    tile_of, addresses, targets = tile_of.ravel(), addresses.ravel(), targets.ravel()
    # a cap below the floor is the tighter: the floor gives way
    tolerance_floor_uS = min(tolerance_floor_uS, tolerance_uS)
    tolerance = device_tolerance(targets, tolerance_uS, tolerance_rel, tolerance_floor_uS)
    groups = [
        Devices(int(tile_of[part][0]), addresses[part], targets[part], tolerance[part])
        for part in _tile_parts(tile_of)
    ]
    emitter = Emitter(listeners, total=max_iterations)
    started = time.perf_counter()
    # the documents' per-device arrays are built only for someone who listens
    start = (
        None
        if not emitter.listeners
        else ProgramStart(
            strategy=strategy.name,
            tolerance_uS=tolerance_uS,
            max_iterations=max_iterations,
            devices=int(targets.size),
            tiles=[g.tile for g in groups],
            tile=np.concatenate(
                [np.full(g.addresses.size, g.tile, dtype=np.int32) for g in groups]
            ),
            address=np.concatenate([g.addresses for g in groups]).astype(np.int32),
            target_uS=np.concatenate([g.targets for g in groups]),
            settle_s=settle_s,
            tolerance_rel=tolerance_rel,
            tolerance_floor_uS=tolerance_floor_uS if tolerance_rel is not None else 0.0,
            reset_target_uS=RESET_TARGET_US,
        )
    )
    with cancellable(emitter, start, ProgramEnd) as run:
        states = [strategy.prepare(chip, group) for group in groups]
        for iteration in range(1, max_iterations + 1):
            pulsed = [
                _pulse(chip, g, strategy, s, clock) for g, s in zip(groups, states, strict=True)
            ]
            if not any(index.size for _mask, index in pulsed):
                break
            if clock is not None:
                clock.wait(settle_s)
            for group, state, (_mask, index) in zip(groups, states, pulsed, strict=True):
                _verify(chip, group, strategy, state, index)
            if emitter.listeners:  # the per-device arrays only for someone who listens
                emitter.step(_iteration_document(iteration, groups, pulsed, int(targets.size)))
        for group in groups:  # stuck and out of iterations: read twice now
            _read_final(chip, group, np.flatnonzero(np.isnan(group.final)))
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
        # cancelled before a device's final read: its last verify read is what there is
        final_uS=np.concatenate(
            [np.where(np.isnan(g.final), g.last_read, g.final) for g in groups]
        ),
        programmed_at_s=np.concatenate([g.programmed_at for g in groups]),
        status=run.status,
        elapsed_s=time.perf_counter() - started,
        repeat_uS=np.concatenate([g.repeat for g in groups]),
        settle_s=settle_s,
    )
    if emitter.listeners:
        summary = result.summary(levels=False)
        emitter.end(
            ProgramEnd(
                **{k: v for k, v in summary.items() if k != "settle_s"},
                final_uS=result.final_uS,
                repeat_uS=result.repeat_uS,
                converged=result.converged,
                is_stuck=result.stuck,
                iterations=result.iterations,
            )
        )
    return result


def _tile_parts(tile_of: np.ndarray) -> list[slice | np.ndarray]:
    """The devices of each tile, in tile order: slices when the devices come tile by tile
    (as a plan lists them), else index arrays (a stable sort: each tile's devices in order)."""
    if tile_of.size == 0:
        return []
    if (tile_of[1:] >= tile_of[:-1]).all():
        edges = [0, *(np.flatnonzero(tile_of[1:] != tile_of[:-1]) + 1).tolist(), tile_of.size]
        return [slice(a, b) for a, b in itertools.pairwise(edges)]
    order = np.argsort(tile_of, kind="stable")
    return list(np.split(order, np.flatnonzero(np.diff(tile_of[order])) + 1))


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


def _pulse(chip, group: Devices, strategy, state, clock) -> tuple[np.ndarray, np.ndarray]:
    """One pulse command for the group's active devices: (the mask of them, their positions
    in the group), both empty of devices if none was active."""
    active = group.active
    index = np.flatnonzero(active)
    if index.size:
        amplitude, width = strategy.pulses(state, group, index)
        chip.pulse(group.tile, group.addresses[index], amplitude, width)
        if clock is not None:
            group.programmed_at[index] = clock.now()
    return active, index


def _verify(chip, group: Devices, strategy, state, index: np.ndarray) -> None:
    """The verify read of the devices ``index`` just pulsed; those within the tolerance are
    converged and read twice more at once (final and repeat), the strategy learns from the
    rest."""
    if index.size == 0:
        return
    read = _read(chip, group, index)
    group.iterations[index] += 1
    group.last_read[index] = read
    target = group.targets[index]
    done = np.abs(read - target) <= group.tolerance[index]
    done |= (target <= RESET_TARGET_US) & (read <= RESET_TARGET_US)
    group.converged[index[done]] = True
    open_ = index[~done]
    group.stuck[open_[strategy.update(state, group, open_, read[~done])]] = True
    _read_final(chip, group, index[done])


def _read_final(chip, group: Devices, index: np.ndarray) -> None:
    """Two fresh reads of the devices ``index``: their final conductance and its repeat."""
    if index.size:
        group.final[index] = _read(chip, group, index)
        group.repeat[index] = _read(chip, group, index)


def _read(chip, group: Devices, index: np.ndarray) -> np.ndarray:
    """One batched read of the group's devices ``index``: whole tile if they are many."""
    per_tile = chip.config.devices_per_tile
    if index.size == per_tile and group.in_order:  # every device of the tile, in order
        return chip.read_tile(group.tile).ravel()
    addresses = group.addresses[index]
    if addresses.size > WHOLE_TILE_READ_FRACTION * per_tile:
        return chip.read_tile(group.tile).ravel()[addresses]
    return chip.read(group.tile, addresses)
