"""The characterization campaign: what a chip's digital twin is fitted from, measured on any
resource and recorded as runs (``pcm-hil characterize campaign``).

Four measurements, each on devices of its own (a tile each when the chip has four, else
interleaved devices of tile 0) and each recorded as its own run, labelled ``campaign`` and
``campaign=<first run id>`` so that ``runs list --meta campaign=N`` finds them all:

1. the programming curve — conductance after one melt-quench pulse, per device, over
   ``currents_uA`` (the curve's shape, its device-to-device spread, the melting threshold);
2. accumulation from RESET — per device, over ``pulses`` partial-SET pulses (step mean and
   spread vs conductance and pulse number);
3. program-and-verify to ``levels`` levels, then drift from ``drift_start_s`` after
   programming to ``drift_end_s`` (ν mean and spread vs conductance, σ_prog, stuck devices);
4. read noise vs conductance at ``noise_times_s`` after programming (Q_s vs conductance and
   its growth with time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import level_targets
from pcm_hil.records.session import record
from pcm_hil.targets.clock import ChipClock

MEASUREMENTS = ("programming-curve", "accumulation", "drift", "read-noise")


@dataclass
class Campaign:
    """What the campaign measures, and on how many devices each."""

    devices: int = 256
    currents_uA: tuple[float, ...] = tuple(np.linspace(200.0, 560.0, 19))
    pulses: int = 20
    levels: int = 8
    drift_start_s: float = 1.0
    drift_end_s: float = 1e6
    drift_points: int = 12
    noise_times_s: tuple[float, ...] = (1.0, 100.0, 1e4)
    noise_reads: int = 20
    meta: dict[str, Any] = field(default_factory=dict)


def device_groups(
    tiles: int, devices_per_tile: int, count: int, groups: int
) -> list[tuple[int, np.ndarray]]:
    """``groups`` disjoint sets of at most ``count`` devices: (tile, addresses) each — a tile
    each when the chip has enough, else interleaved devices of tile 0."""
    if tiles >= groups:
        return [(g, _spread(devices_per_tile, count, 0, 1)) for g in range(groups)]
    return [(0, _spread(devices_per_tile, count, g, groups)) for g in range(groups)]


def _spread(size: int, count: int, offset: int, stride: int) -> np.ndarray:
    """``count`` addresses ≡ offset (mod stride), spread evenly over a tile of ``size``."""
    own = np.arange(offset, size, stride)
    if count >= own.size:
        return own
    return own[np.unique(np.linspace(0, own.size - 1, count).round().astype(np.int64))]


def run_campaign(chip: Any, plan: Campaign | None = None, *, store: Any = None) -> list[int]:
    """Run the campaign on ``chip`` (see the module); the ids of the runs it recorded, in the
    order of ``MEASUREMENTS``. A measurement cancelled (Ctrl-C) or failed ends the campaign
    with what it has."""
    plan = plan or Campaign()
    config = chip.config
    groups = device_groups(config.tiles, config.devices_per_tile, plan.devices, len(MEASUREMENTS))
    clock = ChipClock(chip)
    ids: list[int] = []

    for name, (tile, addresses) in zip(MEASUREMENTS, groups, strict=True):
        meta = {**plan.meta, **({"campaign": ids[0]} if ids else {})}
        with record(name, chip=chip, meta=meta, tags=["campaign"], store=store) as run:
            if not ids:  # the first run names the campaign: its own id
                run.store.annotate(run.id, meta={"campaign": run.id})
            ids.append(run.id)
            if name == "programming-curve":
                curve = programming_curve(
                    chip, tile, addresses, plan.currents_uA, listeners=run.listeners
                )
                run.summary = curve.as_dict()
            elif name == "accumulation":
                curve = accumulation_curve(
                    chip, tile, addresses, plan.pulses, listeners=run.listeners
                )
                run.summary = curve.as_dict()
            elif name == "drift":
                targets = level_targets(plan.levels, config.g_max_uS)
                result = measure_drift(
                    chip,
                    clock,
                    tile,
                    addresses,
                    targets[np.arange(addresses.size) % plan.levels],
                    log_times(plan.drift_start_s, plan.drift_end_s, plan.drift_points),
                    listeners=run.listeners,
                )
                run.summary = result.summary()
            else:
                noise = read_noise(
                    chip,
                    tile,
                    addresses,
                    reads=plan.noise_reads,
                    times_s=plan.noise_times_s,
                    clock=clock,
                    listeners=run.listeners,
                )
                run.summary = noise.as_dict()
            ended = run.store.run(run.id).status != "running"  # Ctrl-C, or a procedure failed
        if ended:
            break
    return ids
