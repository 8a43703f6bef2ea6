"""The bodies of the commands. Each takes the parsed options and returns its summary, a dict:
the ``--json`` object, and what ``pcm_hil.cli.tables`` draws.

The recorded procedures (``program``, ``drift``, ``characterize``, ``demo``, ``train``) take
the open chip and the listeners of the run (``pcm_hil.cli.recording``); ``infer`` opens its own
chips, one per repetition. ``info`` and ``tour`` open the chip themselves and record nothing.

Before a run is recorded its options are checked: ``check`` what needs no chip (before one is
opened), ``check_on_chip`` what needs the chip (right after it is opened). A refused option
is one ValueError naming it; nothing has been pulsed and no run recorded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import asdict
from itertools import pairwise

import numpy as np
from rich.console import Console

from pcm_hil.cli import resume
from pcm_hil.cli.chips import check_resource, chip_opener, open_chip
from pcm_hil.cli.devices import (
    assign_levels,
    check_levels,
    devices_within,
    select,
    spread_addresses,
    tile_indices,
)
from pcm_hil.cli.parser import CHARACTERIZE_DEVICES, DRIFT_DEVICES, TOUR_CURRENTS_UA
from pcm_hil.cli.plots import check_plot_folder
from pcm_hil.documents.events import Listener
from pcm_hil.drivers import PcmHilError
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.procedures.drift import YEAR_S, log_times, measure_drift
from pcm_hil.procedures.program import TOLERANCE_FLOOR_US, device_tolerance, program_and_verify
from pcm_hil.procedures.strategies import AmplitudeSearch, PartialSetSteps
from pcm_hil.procedures.tour import run_tour
from pcm_hil.protocols.chip import COMMANDS, ChipInfo
from pcm_hil.targets.clock import ChipClock

STRATEGIES = {"amplitude": AmplitudeSearch, "partial-set": PartialSetSteps}
#: Read times a drift fit needs from --fit-from on (``procedures.drift`` fits none on fewer).
FIT_POINTS = 3
#: The longest wait a virtual chip clock takes in one step, s: CLOCk:ADVance's largest
#: interval (1e10 s, about 317 years). ``drift`` and ``infer`` wait from one read time to the
#: next in one step (``ChipClock.wait_until``), so their read times go no further.
LONGEST_WAIT_S = float(COMMANDS.by_handler("clock_advance").args[0].maximum or 0.0)


def check(args: argparse.Namespace) -> None:
    """The checks that need no chip, before one is opened or a run recorded: the resource
    strings, and the options that must agree with each other (ValueError naming them)."""
    check_plot_folder(args)
    for resource in args.bench.split(",") if getattr(args, "bench", None) else [args.resource]:
        check_resource(resource)
    if args.command in ("program", "drift") and args.resume is None:
        tile_indices(args.tiles)  # indices, each once; within the chip's tiles once it is open
        _check_wait("--settle", args.settle)
    if args.command == "characterize" and args.kind in ("programming-curve", "accumulation"):
        _check_wait("--settle", args.settle)
    if args.command == "drift" and args.resume is None:
        if args.start >= args.end:
            raise ValueError(f"--start {args.start:g} s is not before --end {args.end:g} s")
        _check_wait("--end", args.end)
        if not args.start <= args.fit_from <= args.end:
            raise ValueError(
                f"--fit-from {args.fit_from:g} s is outside the read window, --start "
                f"{args.start:g} s … --end {args.end:g} s"
            )
        fitted = int((log_times(args.start, args.end, args.points) >= args.fit_from).sum())
        if fitted < FIT_POINTS:
            raise ValueError(
                f"--fit-from {args.fit_from:g} s leaves {fitted} of the {args.points} read "
                f"times to fit ν: it needs {FIT_POINTS}"
            )
    elif getattr(args, "kind", None) == "programming-curve":
        if args.current_min >= args.current_max:
            raise ValueError(
                f"--current-min {args.current_min:g} µA is not below --current-max "
                f"{args.current_max:g} µA"
            )
    if args.command == "infer":
        from pcm_hil.cli.models import check_model_options

        check_model_options(args)
    if args.command == "infer" or (
        getattr(args, "kind", None) == "read-noise" and args.times is not None
    ):
        for before, after in pairwise(args.times):
            if after <= before:
                raise ValueError(f"--times must increase: {after:g} s comes after {before:g} s")
        _check_wait("--times", max(args.times))


def _check_wait(option: str, seconds: float) -> None:
    """A read time after programming no further than the chip's clock goes in one step."""
    if seconds > LONGEST_WAIT_S:
        raise ValueError(
            f"{option} {seconds:g} s is more than the chip's clock advances in one step, "
            f"{LONGEST_WAIT_S:g} s (CLOCk:ADVance's limit, about "
            f"{LONGEST_WAIT_S / YEAR_S:.0f} years)"
        )


def tolerance_of(args: argparse.Namespace) -> Callable[[np.ndarray], np.ndarray]:
    """Each target's programming tolerance, µS, from --tolerance and --tolerance-rel."""
    floor = min(TOLERANCE_FLOOR_US, args.tolerance)
    return lambda targets: device_tolerance(
        targets, args.tolerance, args.tolerance_rel or None, floor
    )


def check_on_chip(chip, args: argparse.Namespace) -> None:
    """The checks against the open chip, before the run is recorded and anything pulsed: the
    devices within its tiles, levels the tolerance tells apart over its range, pulses within
    its limits, a network its tiles hold, the tour's devices within its tile; for
    ``--resume``, that the recorded run continues on this chip (``resume.check_resume``).
    Sets ``--devices`` left to its default to what the tile holds of it."""
    config: ChipInfo = chip.config
    if args.command == "tour":
        _check_tour(args, config)
    elif args.command in ("program", "drift"):
        if args.resume is not None:
            resume.check_resume(args, chip)
            return
        default = DRIFT_DEVICES if args.command == "drift" else None
        args.devices = devices_within(args.devices, config, default)
        select(args, config)  # the tiles, checked
        check_levels(args.levels, tolerance_of(args), config.g_max_uS)
    elif args.command == "characterize":
        if args.tile >= config.tiles:
            raise ValueError(f"--tile {args.tile} outside 0…{config.tiles - 1}")
        args.devices = devices_within(args.devices, config, CHARACTERIZE_DEVICES)
        _check_pulses(args, config)
    elif args.command == "train":
        from pcm_hil.analog.insitu import DEFAULT_HIDDEN
        from pcm_hil.analog.mapping import place_layers

        hidden = args.hidden or DEFAULT_HIDDEN
        try:  # the layers of zoo.mlp: 64 inputs → hidden → 10 outputs
            place_layers([(64, hidden), (hidden, 10)], config.tiles, config.rows, config.columns)
        except ValueError as error:
            raise ValueError(f"--hidden {hidden}: {error}") from None


def _check_tour(args: argparse.Namespace, config: ChipInfo) -> None:
    """The tour's tile on the chip, and its devices (``--devices-per-level`` at each of its
    currents) within that tile."""
    if args.tile >= config.tiles:
        raise ValueError(f"--tile {args.tile} outside 0…{config.tiles - 1}")
    levels, size = len(TOUR_CURRENTS_UA), config.devices_per_tile
    if args.devices_per_level * levels > size:
        raise ValueError(
            f"--devices-per-level {args.devices_per_level}: the tour programs {levels} levels "
            f"on one tile, which has {size} devices ({config.rows}×{config.columns}): at most "
            f"{size // levels} per level"
        )


def _check_pulses(args: argparse.Namespace, config: ChipInfo) -> None:
    """The pulses of ``characterize`` within the chip's safe limits."""
    largest = config.pulse_amplitude_max_uA
    for option in ("current_max", "amplitude"):
        value = getattr(args, option, None)
        if value is not None and value > largest:
            raise ValueError(
                f"--{option.replace('_', '-')} {value:g} µA is above the chip's pulse limit, "
                f"{largest:g} µA"
            )
    width = getattr(args, "width", None)
    low, high = config.pulse_width_min_ns, config.pulse_width_max_ns
    if width is not None and not low <= width <= high:
        raise ValueError(f"--width {width:g} ns is outside the chip's limits, {low:g}…{high:g} ns")


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
        tolerance_rel=args.tolerance_rel or None,
        settle_s=args.settle,
        max_iterations=args.max_iterations,
        listeners=listeners,
    )
    summary = result.summary(chip.config.g_max_uS)
    if args.resume is not None:
        summary["resumed_from"], summary["finished_before"] = args.resume, finished
    return summary


def drift(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    if args.resume is not None:
        record = resume.drift_record(args.runs, args.resume)
        result = measure_drift(
            chip,
            ChipClock(chip),
            None,
            None,
            None,
            fit_from_s=record.fit_from_s,
            reads_per_point=record.reads_per_point,
            resume=record.progress,
            listeners=listeners,
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
        tolerance_rel=args.tolerance_rel or None,
        settle_s=args.settle,
        listeners=listeners,
    )
    summary = result.summary()
    if result.programming is not None:
        programming = result.programming.summary(chip.config.g_max_uS)
        summary["programming"] = {k: v for k, v in programming.items() if k != "levels"}
    return summary


def characterize(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    tile = args.tile
    addresses = spread_addresses(args.devices, chip.config)
    if args.kind == "programming-curve":
        currents = np.linspace(args.current_min, args.current_max, args.points)
        curve = programming_curve(
            chip,
            tile,
            addresses,
            currents,
            width_ns=args.width,
            settle_s=args.settle,
            listeners=listeners,
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
            settle_s=args.settle,
            listeners=listeners,
        )
        return curve.as_dict()
    times = tuple(args.times or ())
    return read_noise(
        chip,
        tile,
        addresses,
        reads=args.reads,
        times_s=times,
        clock=ChipClock(chip) if times else None,
        listeners=listeners,
    ).as_dict()


def infer(args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    """The accuracy-vs-time experiment with a bundled network (trained here, plainly and
    noise-aware) or a lab's own torch model (``cli.models``)."""
    from pcm_hil.analog.inference import drift_experiment
    from pcm_hil.analog.recipes import NOISE_ETA
    from pcm_hil.cli.models import bundled, lab_model
    from pcm_hil.nn.data import load_digits_split

    if args.model is not None:
        networks, data, fp, about = lab_model(args)
    else:
        data = load_digits_split(seed=args.data_seed)
        networks, fp, about = bundled(args, data)
        about = {"network": args.network, **about, "noise_eta": NOISE_ETA}
    result = drift_experiment(
        chip_opener(args.resource, args.timeout, args.visa_library, args.seed, record=args.record),
        networks,
        data,
        fp_accuracy=fp,
        times_s=args.times,
        chips=args.chips,
        listeners=listeners,
    )
    return {
        **about,
        "fp_accuracy": fp,
        "chips": args.chips,
        "points": result.points(),
        "programming": result.programming,
        "status": result.status,
        "elapsed_s": result.elapsed_s,
    }


def demo(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    from pcm_hil.demo import run_demo

    opener = chip_opener(
        args.resource, args.timeout, args.visa_library, 0, shared=chip, record=args.record, first=1
    )
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
    virtual year (a spinner on ``console`` meanwhile). Its options are checked (``check``, and
    ``check_on_chip`` once the chip is open) before anything is pulsed; nothing is recorded."""
    check(args)
    with open_chip(args) as chip:
        check_on_chip(chip, args)
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
