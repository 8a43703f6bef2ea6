"""The characterization campaign: what a chip's digital twin is fitted from, measured on any
resource and recorded as runs (``pcm-hil characterize campaign``).

Five measurements, each on devices of its own (a tile each when the chip has five, else
interleaved devices of tile 0) and each recorded as its own run, labelled ``campaign`` and
``campaign=<first run id>`` so that ``runs list --meta campaign=N`` finds them all:

1. the melting threshold — per device, a RESET then one short pulse, over
   ``threshold_currents_uA``: which devices melt-quench at each current (mean threshold and
   its device-to-device spread);
2. the programming curve — conductance ``settle_s`` after one melt-quench pulse, per device,
   over ``currents_uA`` (the curve's shape, its device-to-device spread, cycle noise);
3. accumulation from RESET — per device, over ``pulses`` partial-SET pulses, each read
   ``settle_s`` after it (step mean and spread vs conductance and pulse number);
4. program-and-verify to ``levels`` levels (evenly spaced in ln G, ``drift_targets``; the
   currents searched from the chip's own programming curve, ``search_range``), then drift from ``drift_start_s`` after
   programming to ``drift_end_s`` (ν mean and spread vs conductance, stuck devices);
5. read noise vs conductance at ``noise_times_s`` after programming (Q_s vs conductance).

``settle_s`` is the published statistics' reference time t0 (20 s): reads that long after a
pulse see the conductance the device model calls programmed, G(t0). On a virtual clock the
waits cost nothing; on a real chip they are most of the campaign's time
(``campaign_cost`` counts them, with the commands and pulses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcm_hil.procedures.characterize import (
    Curve,
    accumulation_curve,
    programming_curve,
    read_noise,
)
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import SETTLE_S
from pcm_hil.procedures.strategies import AmplitudeSearch
from pcm_hil.records.session import record
from pcm_hil.targets.clock import ChipClock

MEASUREMENTS = ("melt-threshold", "programming-curve", "accumulation", "drift", "read-noise")


@dataclass
class Campaign:
    """What the campaign measures, and on how many devices each."""

    devices: int = 256
    threshold_currents_uA: tuple[float, ...] = tuple(np.linspace(100.0, 320.0, 45))
    threshold_width_ns: float = 10.0
    reset_uA: float = 600.0
    currents_uA: tuple[float, ...] = tuple(np.linspace(150.0, 600.0, 31))
    settle_s: float = SETTLE_S
    pulses: int = 20
    levels: int = 16
    lowest_level_uS: float = 0.8
    drift_start_s: float = 1.0
    drift_end_s: float = 1e6
    drift_points: int = 12
    noise_times_s: tuple[float, ...] = (1.0, 100.0, 1e4)
    noise_reads: int = 20
    meta: dict[str, Any] = field(default_factory=dict)


def drift_targets(plan: Campaign, g_max_uS: float) -> np.ndarray:
    """The drift measurement's ``plan.levels`` targets, µS: evenly spaced in ln G from
    ``plan.lowest_level_uS`` to 0.95·g_max — ν's mean and spread are linear in ln G (up to
    their clips), so even spacing there puts as many levels on the slope as on the clip."""
    return np.geomspace(plan.lowest_level_uS, 0.95 * g_max_uS, plan.levels)


def search_range(curve: Curve, lowest_uS: float) -> tuple[float, float]:
    """The melt-quench currents program-and-verify searches, µA, from the chip's own
    programming curve: from the current of its highest mean (just above the melting
    thresholds) to the first at which the mean falls below half the lowest target (else the
    curve's last): a chip whose curve sits higher or lower than the default's still reaches
    every level."""
    currents, mean = np.asarray(curve.x, np.float64), np.asarray(curve.mean_uS, np.float64)
    peak = int(np.argmax(mean))
    below = np.flatnonzero(mean[peak:] < 0.5 * lowest_uS)
    end = peak + int(below[0]) if below.size else currents.size - 1
    if end <= peak:
        return (float(currents[0]), float(currents[-1]))
    return (float(currents[peak]), float(currents[end]))


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
    search: Curve | None = None  # the programming curve, once measured

    for name, (tile, addresses) in zip(MEASUREMENTS, groups, strict=True):
        meta = {**plan.meta, **({"campaign": ids[0]} if ids else {})}
        with record(name, chip=chip, meta=meta, tags=["campaign"], store=store) as run:
            if not ids:  # the first run names the campaign: its own id
                run.store.annotate(run.id, meta={"campaign": run.id})
            ids.append(run.id)
            if name == "melt-threshold":
                curve = programming_curve(
                    chip,
                    tile,
                    addresses,
                    plan.threshold_currents_uA,
                    width_ns=plan.threshold_width_ns,
                    reset_uA=plan.reset_uA,
                    listeners=run.listeners,
                )
                run.summary = curve.as_dict()
            elif name == "programming-curve":
                curve = search = programming_curve(
                    chip,
                    tile,
                    addresses,
                    plan.currents_uA,
                    settle_s=plan.settle_s,
                    clock=clock,
                    listeners=run.listeners,
                )
                run.summary = curve.as_dict()
            elif name == "accumulation":
                curve = accumulation_curve(
                    chip,
                    tile,
                    addresses,
                    plan.pulses,
                    reset_uA=plan.reset_uA,
                    settle_s=plan.settle_s,
                    clock=clock,
                    listeners=run.listeners,
                )
                run.summary = curve.as_dict()
            elif name == "drift":
                targets = drift_targets(plan, config.g_max_uS)
                result = measure_drift(
                    chip,
                    clock,
                    tile,
                    addresses,
                    targets[np.arange(addresses.size) % plan.levels],
                    log_times(plan.drift_start_s, plan.drift_end_s, plan.drift_points),
                    strategy=AmplitudeSearch(
                        current_range_uA=search_range(search, float(targets.min()))
                    )
                    if search is not None
                    else None,
                    settle_s=plan.settle_s,
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
