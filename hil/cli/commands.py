"""The bodies of the commands. Each takes the parsed options and returns its summary, a dict:
the ``--json`` object, and what ``pcm_hil.cli.tables`` draws.

The recorded procedures (``program``, ``drift``, ``characterize``, ``demo``, ``train``) take
the open chip and the listeners of the run (``pcm_hil.cli.recording``); ``infer`` opens its own
chips, one per repetition. ``info`` and ``tour`` open the chip themselves and record nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import asdict

import numpy as np
from rich.console import Console

from pcm_hil.cli import resume
from pcm_hil.cli.chips import chip_opener, open_chip
from pcm_hil.cli.devices import assign_levels, parse_tiles, select, spread_addresses
from pcm_hil.documents.events import Listener
from pcm_hil.drivers import PcmHilError
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import program_and_verify
from pcm_hil.procedures.strategies import AmplitudeSearch, PartialSetSteps
from pcm_hil.procedures.tour import run_tour
from pcm_hil.targets.clock import ChipClock

STRATEGIES = {"amplitude": AmplitudeSearch, "partial-set": PartialSetSteps}


def program(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    finished = 0
    if args.resume is not None:
        tiles, addresses, targets, finished = resume.program_left(args.runs, args.resume)
    else:
        tiles, addresses = select(args, chip.config)
        targets = assign_levels(addresses.size, args.levels, chip.config.g_max_uS)
    result = program_and_verify(
        chip,
        tiles,
        addresses,
        targets,
        strategy=STRATEGIES[args.strategy](),
        tolerance_uS=args.tolerance,
        max_iterations=args.max_iterations,
        listeners=listeners,
    )
    summary = result.summary(chip.config.g_max_uS)
    if args.resume is not None:
        summary["resumed_from"], summary["finished_before"] = args.resume, finished
    return summary


def drift(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    if args.resume is not None:
        progress = resume.drift_progress(args.runs, args.resume)
        result = measure_drift(
            chip, ChipClock(chip), None, None, None, resume=progress, listeners=listeners
        )
        summary = result.summary()
        summary["resumed_from"] = args.resume
        return summary
    tiles, addresses = select(args, chip.config)
    targets = assign_levels(addresses.size, args.levels, chip.config.g_max_uS)
    result = measure_drift(
        chip,
        ChipClock(chip),
        tiles,
        addresses,
        targets,
        log_times(args.start, args.end, args.points),
        fit_from_s=args.fit_from,
        reads_per_point=args.reads_per_point,
        tolerance_uS=args.tolerance,
        listeners=listeners,
    )
    summary = result.summary()
    if result.programming is not None:
        programming = result.programming.summary(chip.config.g_max_uS)
        summary["programming"] = {k: v for k, v in programming.items() if k != "levels"}
    return summary


def characterize(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    tile = parse_tiles(args.tile, chip.config)[0]
    addresses = spread_addresses(args.devices, chip.config)
    if args.kind == "programming-curve":
        currents = np.linspace(args.current_min, args.current_max, args.points)
        curve = programming_curve(
            chip, tile, addresses, currents, width_ns=args.width, listeners=listeners
        )
        return curve.as_dict()
    if args.kind == "accumulation":
        curve = accumulation_curve(
            chip,
            tile,
            addresses,
            args.pulses,
            amplitude_uA=args.amplitude,
            width_ns=args.width,
            listeners=listeners,
        )
        return curve.as_dict()
    return read_noise(chip, tile, addresses, reads=args.reads, listeners=listeners).as_dict()


def infer(args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    from pcm_hil.analog.inference import drift_experiment
    from pcm_hil.analog.recipes import NOISE_ETA, trained
    from pcm_hil.nn.data import load_digits_split

    data = load_digits_split(seed=args.data_seed)
    plain = trained(args.network, data, seed=args.seed)
    aware = trained(args.network, data, noise_eta=NOISE_ETA, seed=args.seed)
    fp = plain.accuracy(data[2], data[3])
    result = drift_experiment(
        chip_opener(args.resource, args.timeout, args.visa_library, args.seed),
        {"plain": plain, "noise-aware": aware},
        data,
        fp_accuracy=fp,
        times_s=args.times,
        chips=args.chips,
        listeners=listeners,
    )
    return {
        "network": args.network,
        "fp_accuracy": fp,
        "noise_aware_fp_accuracy": aware.accuracy(data[2], data[3]),
        "noise_eta": NOISE_ETA,
        "chips": args.chips,
        "points": result.points(),
        "programming": result.programming,
        "status": result.status,
        "elapsed_s": result.elapsed_s,
    }


def demo(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    from pcm_hil.demo import run_demo

    opener = chip_opener(args.resource, args.timeout, args.visa_library, 0, shared=chip)
    return run_demo(chip, opener, network=args.network, chips=args.chips, listeners=listeners)


def train(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    from pcm_hil.analog.insitu import train_on_chip
    from pcm_hil.nn.data import load_digits_split

    options = {
        k: getattr(args, k)
        for k in ("hidden", "epochs", "lr", "batch")
        if getattr(args, k) is not None
    }
    return train_on_chip(
        chip, load_digits_split(seed=0), seed=args.seed, listeners=listeners, **options
    )


def info(args: argparse.Namespace) -> dict:
    """The chip's configuration, identity, clock mode and temperature."""
    with open_chip(args) as chip:
        config = asdict(chip.config)
        config["resource"] = chip.resource
        config["clock_mode"] = chip.clock_mode()
        config["temperature_K"] = chip.temperature()
    return config


def tour(args: argparse.Namespace, console: Console) -> dict:
    """Program a few devices per melt-quench current, read them back, let them drift a
    virtual year (a spinner on ``console`` meanwhile)."""
    with open_chip(args) as chip:
        clock = ChipClock(chip)
        if not clock.virtual:
            raise PcmHilError(
                f"{chip.resource} runs on a real-time clock: the tour waits a virtual year; "
                "run it on the emulator"
            )
        with console.status("programming and drifting…", spinner="dots"):
            result = run_tour(chip, clock, tile=args.tile, devices_per_level=args.devices_per_level)
        identity = chip.identity
    return {
        "resource": args.resource,
        "identity": asdict(identity),
        "tile": result.tile,
        "times_s": result.times_s,
        "levels": [asdict(level) for level in result.levels],
    }
