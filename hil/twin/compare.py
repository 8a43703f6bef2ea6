"""A chip beside its twin (``pcm-hil twin compare --chip RESOURCE --model chip.toml``).

The same procedures, with the same parameters, on the chip and on an emulator built from the
model; side by side, with the twin/chip ratio of each figure:

- program-and-verify per level: the error of the final read (std), the programmed spread and
  the read noise (``procedures.program.error_statistics``);
- drift per level: ν mean and std over the devices (fits from ``fit_from_s``);
- read noise per level: the mean relative std of ``reads`` reads of each device, taken at once
  ``settle_s`` after programming;
- the programming curve and accumulation from RESET: mean conductance per point of the
  devices that follow them (stuck ones left out: a few at ~30 µS move a mean of ~0.2 µS).

Ctrl-C (a procedure cancelled) ends the comparison: nothing half measured is compared.

Each device group gets a tile of its own when the chip has four, else interleaved devices of
tile 0 (``campaign.device_groups``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pcm_hil.documents.characterize import CurvePoint
from pcm_hil.documents.events import Event
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.levels import error_statistics
from pcm_hil.procedures.program import SETTLE_S, level_targets
from pcm_hil.targets.clock import ChipClock
from pcm_hil.twin.campaign import device_groups
from pcm_hil.twin.fit_programming import stuck_devices, stuck_in_accumulation

GROUPS = ("drift", "read noise", "programming curve", "accumulation")


@dataclass
class ComparePlan:
    """What the comparison measures on each of chip and twin."""

    devices: int = 4096
    levels: int = 8
    drift_end_s: float = 1e5
    drift_points: int = 8
    reads: int = 16
    curve_devices: int = 1024
    currents_uA: tuple[float, ...] = tuple(np.linspace(240.0, 560.0, 9))
    pulses: int = 10
    settle_s: float = SETTLE_S


@dataclass(frozen=True)
class Row:
    """One compared figure: what, where (a level's target µS or a point's value), the chip's
    and the twin's value and twin/chip."""

    quantity: str
    at: float
    chip: float
    twin: float

    @property
    def ratio(self) -> float:
        return self.twin / self.chip if self.chip else float("nan")


@dataclass
class Comparison:
    """Every compared figure, in order."""

    rows: list[Row] = field(default_factory=list)

    def of(self, quantity: str) -> list[Row]:
        return [r for r in self.rows if r.quantity == quantity]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows]}


def measure(chip: Any, plan: ComparePlan) -> dict[str, dict[float, float]]:
    """Every figure of the comparison on one chip: quantity → {level or point: value}."""
    config = chip.config
    clock = ChipClock(chip)
    counts = (plan.devices, plan.devices, plan.curve_devices, plan.curve_devices)
    groups = [
        device_groups(config.tiles, config.devices_per_tile, n, len(GROUPS))[k]
        for k, n in enumerate(counts)
    ]
    targets = level_targets(plan.levels, config.g_max_uS)
    found: dict[str, dict[float, float]] = {}

    tile, addresses = groups[0]
    drift = measure_drift(
        chip,
        clock,
        tile,
        addresses,
        targets[np.arange(addresses.size) % plan.levels],
        log_times(plan.settle_s, plan.drift_end_s, plan.drift_points),
        settle_s=plan.settle_s,
    )
    _stop_if_cancelled(drift.status)
    programming = drift.programming
    if programming is not None:
        repeat = (
            programming.repeat_uS if programming.repeat_uS is not None else programming.final_uS
        )
        for target in targets:
            mine = (programming.target_uS == np.float32(target)) & programming.converged
            stats = error_statistics(programming.final_uS, repeat, programming.target_uS, mine)
            found.setdefault("program error std µS", {})[target] = stats["error_std_uS"]
            found.setdefault("programmed spread µS", {})[target] = stats["programmed_spread_uS"]
    for target in targets:
        mine = (drift.target_uS == np.float32(target)) & drift.good
        found.setdefault("ν mean", {})[target] = float(np.mean(drift.nu[mine]))
        found.setdefault("ν std", {})[target] = float(np.std(drift.nu[mine], ddof=1))

    tile, addresses = groups[1]
    found["read noise (relative)"] = _read_noise(chip, clock, tile, addresses, targets, plan)

    tile, addresses = groups[2]
    reads = Reads()
    curve = programming_curve(
        chip, tile, addresses, plan.currents_uA, settle_s=plan.settle_s, clock=clock,
        listeners=[reads],
    )  # fmt: skip
    _stop_if_cancelled(curve.status)
    working = reads.array()[:, ~stuck_devices(reads.array())]
    found["programming curve µS"] = dict(zip(curve.x.tolist(), working.mean(axis=1), strict=True))
    tile, addresses = groups[3]
    reads = Reads()
    accumulation = accumulation_curve(
        chip, tile, addresses, plan.pulses, settle_s=plan.settle_s, clock=clock,
        listeners=[reads],
    )  # fmt: skip
    _stop_if_cancelled(accumulation.status)
    top = float(np.max(working)) if working.size else float("inf")
    accumulated = reads.array()[:, ~stuck_in_accumulation(reads.array(), top)]
    found["accumulation µS"] = dict(
        zip(accumulation.x.tolist(), accumulated.mean(axis=1), strict=True)
    )
    return found


class Reads:
    """A listener keeping every device's read at each point of a characterization curve."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []

    def __call__(self, event: Event) -> None:
        document = event.document
        if isinstance(document, CurvePoint) and document.conductance_uS is not None:
            self.points.append(np.asarray(document.conductance_uS, np.float64))

    def array(self) -> np.ndarray:
        """Point × device."""
        return np.asarray(self.points, np.float64)


def _stop_if_cancelled(status: str) -> None:
    """A procedure Ctrl-C cancelled ends the comparison (what is half measured compares
    nothing)."""
    if status == "cancelled":
        raise KeyboardInterrupt


def _read_noise(chip, clock, tile, addresses, targets, plan) -> dict[float, float]:
    """Program the devices to the levels, then read them ``plan.reads`` times at once: per
    level, the mean over its devices of std/mean of their reads."""
    from pcm_hil.procedures.program import program_and_verify

    level = np.arange(addresses.size) % plan.levels
    result = program_and_verify(
        chip,
        tile,
        addresses,
        targets[level].astype(np.float32),
        settle_s=plan.settle_s,
        clock=clock,
    )
    _stop_if_cancelled(result.status)
    reads = np.asarray([chip.read(tile, result.address) for _ in range(plan.reads)], np.float64)
    relative = reads.std(axis=0, ddof=1) / reads.mean(axis=0)
    found = {}
    for target in targets:
        mine = (result.target_uS == np.float32(target)) & result.converged
        found[float(target)] = float(np.mean(relative[mine]))
    return found


def compare(chip: Any, twin: Any, plan: ComparePlan | None = None) -> Comparison:
    """Measure ``plan`` on ``chip`` and on ``twin`` (an emulated chip built from the model);
    the figures side by side."""
    plan = plan or ComparePlan()
    on_chip, on_twin = measure(chip, plan), measure(twin, plan)
    comparison = Comparison()
    for quantity, values in on_chip.items():
        for at, value in values.items():
            other = on_twin.get(quantity, {}).get(at, float("nan"))
            comparison.rows.append(Row(quantity, float(at), float(value), float(other)))
    return comparison
