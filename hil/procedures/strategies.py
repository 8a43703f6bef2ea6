"""How program-and-verify chooses each device's next pulse: the strategies.

- ``AmplitudeSearch`` (Papandreou et al., ISCAS 2011): each pulse melt-quenches the device;
  each device's programming current is moved along the programming curve by its read-back
  error, with a step that shrinks whenever the error changes sign.
- ``PartialSetSteps``: RESET, then accumulative partial-SET pulses (longer when far from the
  target), RESET and retry on overshoot.

A strategy sees the devices of one tile being programmed (``program.Devices``) and keeps its
own per-device state; ``program_and_verify`` sends the pulses it asks for and reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pcm_hil.targets.protocol import Chip

if TYPE_CHECKING:
    from pcm_hil.procedures.program import Devices


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
        # each state array gathered once and scattered once: on a million devices every
        # pass costs (this runs on ~4.6 million device-iterations)
        current = state.current[index]
        if state.curve is None:
            state.curve = PopulationCurve.fit(current, read, self.current_range_uA, self.curve_bins)
        error = read - group.targets[index]
        slope = state.curve.slope_at(current)
        sign = np.sign(error).astype(np.int8)
        last_sign = state.sign[index]
        step = state.step[index]
        flipped = (last_sign != 0) & (sign != last_sign)
        step[flipped] *= self.step_shrink
        state.step[index] = step
        state.sign[index] = sign
        wanted = current + step * error / np.maximum(slope, self.min_slope_uS_per_uA)
        low, high = self.current_range_uA
        # pinned: the last pulse already used a limit and the search wants to go past it
        beyond = ((current <= low) & (wanted < low)) | ((current >= high) & (wanted > high))
        pinned = state.pinned[index]
        pinned += 1
        pinned[~beyond] = 0
        pinned_read = state.pinned_read[index]
        first = pinned == 1
        pinned_read[first] = read[first]
        state.pinned_read[index] = pinned_read
        state.pinned[index] = pinned
        state.current[index] = np.clip(wanted, low, high)
        progress = (pinned_read - read) * sign  # toward the target: positive
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
