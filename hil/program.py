"""Program-and-verify: many devices at once to target conductances.

Every iteration sends, per tile, one batched pulse command for all devices still being
programmed and one batched read — never a command per device. Two strategies:

- ``AmplitudeSearch`` (Papandreou et al., ISCAS 2011): each pulse melt-quenches the device;
  each device's programming current is moved along the programming curve by its read-back
  error, with a step that halves-ish whenever the error changes sign.
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
from typing import Protocol

import numpy as np

from .chip_protocol import Chip
from .clock import ChipClock
from .events import Emitter, Listener, cancellable

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


class Strategy(Protocol):
    """How to choose each device's next pulse from what was read. ``prepare`` returns the
    strategy's per-device state for a group, handed back to ``pulses`` and ``update``."""

    name: str

    def prepare(self, chip: Chip, group: Devices) -> object:
        """Per-device state (after any set-up pulses, e.g. RESET) before the first iteration."""

    def pulses(self, state, group: Devices, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(amplitude µA, width ns) for the devices ``group.*[index]``."""

    def update(self, state, group: Devices, index: np.ndarray, read: np.ndarray) -> np.ndarray:
        """Learn from this iteration's reads of the unconverged devices ``index``; return the
        mask of those that cannot converge (they do not respond to the pulses)."""


@dataclass
class SearchState:
    """Per device: the current to try next (µA), its step factor, last error sign, how many
    iterations in a row it has asked for a current beyond the range and what it read when that
    began; and the population's programming curve once learned."""

    current: np.ndarray
    step: np.ndarray
    sign: np.ndarray
    pinned: np.ndarray
    pinned_read: np.ndarray
    curve: PopulationCurve | None = None


@dataclass
class AmplitudeSearch:
    """Iterative melt-quench programming along the programming curve (Papandreou 2011).

    The population's programming curve (mean G vs current) is learned from the first
    iteration, whose currents are spread over ``current_range_uA`` by target; thereafter each
    device's current moves by ``step · error / |dG/dI|``, and its step shrinks by
    ``step_shrink`` whenever its error changes sign.

    A device that asks for less current than the range allows (its target lies above its
    melt-quench curve) gets a partial-SET nudge instead (``nudge_amplitude_uA``,
    ``nudge_width_ns``). A device that has asked, from a limit of the range, for a current
    beyond it ``pinned_limit`` times in a row without moving ``response_uS`` toward its target cannot
    converge: stuck-SET devices stay high at the largest current, stuck-RESET devices stay low
    under nudges.

    ``current_range_uA`` must lie above the melting threshold of (nearly) all devices: below
    it a pulse crystallizes instead of melt-quenching.
    """

    current_range_uA: tuple[float, float] = (220.0, 520.0)
    width_ns: float = 50.0
    step_shrink: float = 0.6
    min_slope_uS_per_uA: float = 0.02
    curve_bins: int = 48
    pinned_limit: int = 3
    response_uS: float = 1.0
    nudge_amplitude_uA: float = 100.0
    nudge_width_ns: float = 100.0
    name: str = "amplitude"

    def prepare(self, chip: Chip, group: Devices) -> SearchState:
        low, high = self.current_range_uA
        g_top = max(float(group.targets.max()), 1e-9)
        n = group.addresses.size
        # first guess: linear in target, high current for low conductance
        current = high - (high - low) * group.targets / (1.15 * g_top)
        return SearchState(
            current.astype(np.float32),
            np.ones(n, np.float32),
            np.zeros(n, np.int8),
            np.zeros(n, np.int16),
            np.zeros(n, np.float32),
        )

    def pulses(self, state: SearchState, group: Devices, index: np.ndarray):
        nudge = (state.pinned[index] > 0) & (state.sign[index] < 0)
        amplitude = np.where(nudge, self.nudge_amplitude_uA, state.current[index])
        width = np.where(nudge, self.nudge_width_ns, self.width_ns)
        return amplitude.astype(np.float32), width.astype(np.float32)

    def update(self, state: SearchState, group: Devices, index: np.ndarray, read: np.ndarray):
        current = state.current[index]
        if state.curve is None:
            state.curve = PopulationCurve.fit(current, read, self.current_range_uA, self.curve_bins)
        error = read - group.targets[index]
        slope = state.curve.slope_at(current)
        sign = np.sign(error).astype(np.int8)
        flipped = (state.sign[index] != 0) & (sign != state.sign[index])
        step = np.where(flipped, state.step[index] * self.step_shrink, state.step[index])
        state.step[index] = step
        state.sign[index] = sign
        wanted = current + step * error / np.maximum(slope, self.min_slope_uS_per_uA)
        low, high = self.current_range_uA
        # pinned: the last pulse already used a limit and the search wants to go past it
        beyond = ((current <= low) & (wanted < low)) | ((current >= high) & (wanted > high))
        pinned = np.where(beyond, state.pinned[index] + 1, 0)
        state.pinned_read[index] = np.where(pinned == 1, read, state.pinned_read[index])
        state.pinned[index] = pinned
        state.current[index] = np.clip(wanted, low, high)
        progress = (state.pinned_read[index] - read) * sign  # toward the target: positive
        no_response = (pinned >= self.pinned_limit) & (progress < self.response_uS)
        return no_response | (pinned >= 2 * self.pinned_limit)


@dataclass(frozen=True)
class PopulationCurve:
    """Mean conductance vs melt-quench current over a population of devices, binned on a
    uniform current grid and made non-increasing; with |dG/dI| per bin."""

    low_uA: float
    bin_uA: float
    mean_uS: np.ndarray
    slope: np.ndarray

    @classmethod
    def fit(cls, current, read, current_range, bins) -> PopulationCurve:
        low, high = current_range
        width = (high - low) / bins
        which = np.clip(((current - low) / width).astype(np.int64), 0, bins - 1)
        count = np.bincount(which, minlength=bins)
        total = np.bincount(which, weights=read, minlength=bins)
        filled = count > 0
        centres = low + width * (np.arange(bins) + 0.5)
        mean = np.interp(centres, centres[filled], total[filled] / count[filled])
        mean = np.minimum.accumulate(mean)
        slope = np.abs(np.gradient(mean, width)).astype(np.float32)
        return cls(low, width, mean, slope)

    def slope_at(self, current_uA: np.ndarray) -> np.ndarray:
        """|dG/dI| (µS/µA) of the bin each current falls in."""
        which = ((current_uA - self.low_uA) / self.bin_uA).astype(np.int64)
        return self.slope[np.clip(which, 0, self.slope.size - 1)]


@dataclass
class StepState:
    """Per device: the remaining gap to the target (µS; negative after an overshoot), the
    partial-SET pulses since its last RESET, and the highest read since then."""

    gap: np.ndarray
    since_reset: np.ndarray
    peak: np.ndarray


@dataclass
class PartialSetSteps:
    """RESET, then accumulative partial-SET pulses; RESET and start over on overshoot.

    The pulse is ``set_amplitude_uA`` wide ``set_width_ns``, stretched up to
    ``set_width_max_ns`` in proportion to the remaining distance over ``far_uS`` (bigger steps
    when far from the target). A device cannot converge when it reads above
    ``reset_ceiling_uS`` right after a RESET (stuck SET), or stays below ``rise_floor_uS``
    after ``rise_pulses`` partial-SET pulses (stuck RESET).
    """

    reset_amplitude_uA: float = 500.0
    reset_width_ns: float = 50.0
    set_amplitude_uA: float = 90.0
    set_width_ns: float = 50.0
    set_width_max_ns: float = 200.0
    far_uS: float = 8.0
    reset_ceiling_uS: float = 5.0
    rise_floor_uS: float = 1.0
    rise_pulses: int = 6
    name: str = "partial-set"

    def prepare(self, chip: Chip, group: Devices) -> StepState:
        """RESET the group."""
        chip.pulse(group.tile, group.addresses, self.reset_amplitude_uA, self.reset_width_ns)
        n = group.addresses.size
        return StepState(
            group.targets.astype(np.float32).copy(), np.zeros(n, np.int16), np.zeros(n, np.float32)
        )

    def pulses(self, state: StepState, group: Devices, index: np.ndarray):
        gap = state.gap[index]
        overshoot = gap < 0
        stretch = np.clip(gap / self.far_uS, 0.0, 1.0)
        width = self.set_width_ns + (self.set_width_max_ns - self.set_width_ns) * stretch
        amplitude = np.where(overshoot, self.reset_amplitude_uA, self.set_amplitude_uA)
        width = np.where(overshoot, self.reset_width_ns, width)
        return amplitude.astype(np.float32), width.astype(np.float32)

    def update(self, state: StepState, group: Devices, index: np.ndarray, read: np.ndarray):
        was_reset = state.gap[index] < 0
        state.since_reset[index] = np.where(was_reset, 0, state.since_reset[index] + 1)
        state.peak[index] = np.where(was_reset, read, np.maximum(state.peak[index], read))
        state.gap[index] = group.targets[index] - read
        stuck_set = was_reset & (read > self.reset_ceiling_uS)
        stuck_reset = (state.since_reset[index] >= self.rise_pulses) & (
            state.peak[index] < self.rise_floor_uS
        )
        return stuck_set | stuck_reset


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
    status: str
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
    tiles: Iterable[int] | np.ndarray,
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
    emitter = Emitter("program", listeners, total=max_iterations)
    started = time.perf_counter()
    final = None
    parameters = dict(
        strategy=strategy.name,
        tolerance_uS=tolerance_uS,
        max_iterations=max_iterations,
        devices=int(targets.size),
        tiles=[g.tile for g in groups],
        tile=np.concatenate([np.full(g.addresses.size, g.tile, dtype=np.int32) for g in groups]),
        address=np.concatenate([g.addresses for g in groups]).astype(np.int32),
        target_uS=np.concatenate([g.targets for g in groups]),
    )
    with cancellable(emitter, **parameters) as run:
        states = [strategy.prepare(chip, group) for group in groups]
        for iteration in range(1, max_iterations + 1):
            busy = False
            for group, state in zip(groups, states, strict=True):
                busy |= _iterate(chip, group, strategy, state, tolerance_uS, clock)
            if emitter.listeners:  # the per-device arrays only for someone who listens
                emitter.step(
                    iteration=iteration,
                    converged=sum(int(g.converged.sum()) for g in groups),
                    stuck=sum(int(g.stuck.sum()) for g in groups),
                    devices=int(targets.size),
                    read_uS=np.concatenate([g.last_read for g in groups]),
                    done=np.concatenate([g.converged | g.stuck for g in groups]),
                )
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
    emitter.end(run.status, **{k: v for k, v in summary.items() if k not in ("status", "levels")})
    return result


def _iterate(chip, group: Devices, strategy, state, tolerance_uS: float, clock) -> bool:
    """One pulse command and one read for the group's active devices; False if none."""
    index = np.flatnonzero(group.active)
    if index.size == 0:
        return False
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
    return True


def _read(chip, group: Devices, index: np.ndarray) -> np.ndarray:
    """One batched read of the group's devices ``index``: whole tile if they are many."""
    addresses = group.addresses[index]
    tile_size = getattr(getattr(chip, "config", None), "devices_per_tile", 0)
    if tile_size and addresses.size > WHOLE_TILE_READ_FRACTION * tile_size:
        return chip.read_tile(group.tile).ravel()[addresses]
    return chip.read(group.tile, addresses)


def unfinished_from_run(store, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(tiles, addresses, targets, finished) of a recorded program-and-verify run: the devices
    that had neither converged nor been found stuck at its last recorded iteration — what is
    left to program when resuming it — and how many were finished. Programmed conductances
    are non-volatile, so the finished devices need nothing more."""
    start, done = None, None
    for event in store.events(run_id):
        if event.procedure != "program":
            continue
        if event.kind == "start":
            start, done = event.data, None
        elif event.kind == "step" and start is not None:
            done = np.asarray(event.data["done"], dtype=bool)
    if start is None:
        raise ValueError(f"run {run_id} holds no program-and-verify to resume")
    tile, address, target = (np.asarray(start[k]) for k in ("tile", "address", "target_uS"))
    left = np.ones(tile.size, dtype=bool) if done is None else ~done
    return tile[left], address[left], target[left], int((~left).sum())
