"""The main job: the whole system at work in one command, with no hardware.

Programs a tile to 16 levels with program-and-verify, measures drift over a virtual year,
then runs chip-in-the-loop inference on the digits after programming, a day and a year, with
and without drift compensation. Everything is one recorded run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from pcm_hil.analog.inference import DAY_S, drift_experiment
from pcm_hil.analog.recipes import NOISE_ETA, trained
from pcm_hil.documents.demo import DemoEnd, DemoStage, DemoStart
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.nn.data import load_digits_split
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import OpenedChip


def run_demo(
    chip,
    open_chip: Callable[[int], OpenedChip],
    *,
    network: str = "mlp",
    chips: int = 2,
    drift_devices: int = 4096,
    listeners: Iterable[Listener] = (),
) -> dict:
    """Program tile 0 of ``chip`` to 16 levels, measure drift on tile 1 over a virtual year,
    then the inference experiment on ``chips`` chips from ``open_chip``."""
    listeners = tuple(listeners)
    config = chip.config
    emitter = Emitter(listeners, total=3)
    started = time.perf_counter()
    summary: dict = {"network": network}
    with cancellable(emitter, DemoStart(network=network, chips=chips), DemoEnd) as run:
        n = config.devices_per_tile
        targets = level_targets(16, config.g_max_uS)[np.arange(n) % 16]
        programming = program_and_verify(chip, 0, np.arange(n), targets, listeners=listeners)
        summary["program"] = programming.summary(config.g_max_uS)
        converged = summary["program"]["converged_fraction"]
        emitter.step(DemoStage(stage="program", converged_fraction=converged))

        tile = 1 if config.tiles > 1 else 0
        count = min(drift_devices, n)
        addresses = np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
        levels = level_targets(8, config.g_max_uS)[np.arange(addresses.size) % 8]
        drift = measure_drift(
            chip,
            ChipClock(chip),
            tile,
            addresses,
            levels,
            log_times(1.0, 365 * DAY_S, 25),
            listeners=listeners,
        )
        summary["drift"] = drift.summary()
        emitter.step(DemoStage(stage="drift", levels=len(summary["drift"]["levels"])))

        data = load_digits_split(seed=0)
        plain = trained(network, data)
        aware = trained(network, data, noise_eta=NOISE_ETA)
        fp = plain.accuracy(data[2], data[3])
        inference = drift_experiment(
            open_chip,
            {"plain": plain, "noise-aware": aware},
            data,
            fp_accuracy=fp,
            times_s=(1.0, DAY_S, 365 * DAY_S),
            chips=chips,
            listeners=listeners,
        )
        summary["infer"] = {"fp_accuracy": fp, "points": inference.points()}
        emitter.step(DemoStage(stage="infer", fp_accuracy=fp))
    summary["status"] = run.status
    summary["elapsed_s"] = time.perf_counter() - started
    emitter.end(DemoEnd(status=run.status, elapsed_s=summary["elapsed_s"]))
    return summary
