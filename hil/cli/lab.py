"""The lab commands behind the CLI: pick devices, run a procedure, summarise as a dict (the
``--json`` object) and as rich tables."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.documents.events import Listener
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import (
    level_targets,
    program_and_verify,
)
from pcm_hil.procedures.strategies import AmplitudeSearch, PartialSetSteps
from pcm_hil.protocols.chip import ChipInfo
from pcm_hil.targets.clock import ChipClock

STRATEGIES = {"amplitude": AmplitudeSearch, "partial-set": PartialSetSteps}


def parse_tiles(text: str, config: ChipInfo) -> list[int]:
    """``all``, ``N`` or ``a,b,c`` → tile indices, each checked against the chip."""
    if text == "all":
        return list(range(config.tiles))
    try:
        tiles = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--tiles takes 'all' or comma-separated indices, not {text!r}") from None
    bad = [t for t in tiles if not 0 <= t < config.tiles]
    if bad:
        raise ValueError(f"tile(s) {bad} outside 0…{config.tiles - 1}")
    return tiles


def spread_addresses(count: int | None, config: ChipInfo) -> np.ndarray:
    """``count`` device addresses spread evenly over a tile (all when None)."""
    size = config.devices_per_tile
    if count is None or count >= size:
        return np.arange(size)
    if count < 1:
        raise ValueError("--devices must be at least 1")
    return np.unique(np.linspace(0, size - 1, count).round().astype(np.int64))


def select(args: argparse.Namespace, config: ChipInfo) -> tuple[np.ndarray, np.ndarray]:
    """(tiles, addresses), one entry per device, from --tiles and --devices."""
    tiles = parse_tiles(args.tiles, config)
    addresses = spread_addresses(args.devices, config)
    return np.repeat(tiles, addresses.size), np.tile(addresses, len(tiles))


def assign_levels(count: int, levels: int, g_max_uS: float) -> np.ndarray:
    """Targets for ``count`` devices: ``levels`` levels over 0…g_max, interleaved."""
    return level_targets(levels, g_max_uS)[np.arange(count) % levels]


def program(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    finished = 0
    if args.resume is not None:
        from pcm_hil.procedures.program import unfinished_from_run
        from pcm_hil.records.store import RunStore

        with RunStore(args.runs) as store:
            tiles, addresses, targets, finished = unfinished_from_run(store, args.resume)
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
        from pcm_hil.procedures.drift import progress_from_run
        from pcm_hil.records.store import RunStore

        with RunStore(args.runs) as store:
            progress = progress_from_run(store, args.resume)
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


# --- tables -------------------------------------------------------------------------------------


def render_program(summary: dict, console: Console) -> None:
    table = Table(
        title=f"Program-and-verify ({summary['strategy']}, tolerance {summary['tolerance_uS']} µS)"
    )
    for column in (
        "target µS",
        "devices",
        "converged",
        "stuck",
        "error std µS",
        "published σ µS",
        "ratio",
    ):
        table.add_column(column, justify="right")
    for level in summary["levels"]:
        ratio = level["error_std_uS"] / level["published_sigma_uS"]
        table.add_row(
            f"{level['target_uS']:.2f}",
            str(level["devices"]),
            f"{level['converged_fraction']:.2%}",
            str(level["stuck"]),
            f"{level['error_std_uS']:.3f}",
            f"{level['published_sigma_uS']:.3f}",
            f"{ratio:.2f}",
        )
    console.print(table)
    console.print(
        f"{summary['devices']} devices, {summary['converged_fraction']:.2%} converged, "
        f"{summary['stuck_devices']} stuck; iterations mean {summary['iterations_mean']:.1f}, "
        f"p99 {summary['iterations_p99']:.0f}; error std {summary['error_std_uS']:.3f} µS; "
        f"{summary['elapsed_s']:.2f} s ({summary['status']})"
    )


def render_drift(summary: dict, console: Console) -> None:
    table = Table(title=f"Drift exponent per level (fit from {summary['fit_from_s']:g} s)")
    for column in ("target µS", "ν mean", "ν std", "devices", "good fits"):
        table.add_column(column, justify="right")
    for level in summary["levels"]:
        table.add_row(
            f"{level['target_uS']:.2f}",
            f"{level['nu_mean']:.4f}",
            f"{level['nu_std']:.4f}",
            str(level["n_devices"]),
            f"{level['good_fit_fraction']:.1%}",
        )
    console.print(table)
    console.print(
        f"{summary['devices']} devices, {summary['read_times']} read times, {summary['elapsed_s']:.2f} s ({summary['status']})"
    )


def render_curve(summary: dict, console: Console) -> None:
    points = summary["points"]
    table = Table(
        title=f"{summary['kind']} ({summary.get('devices', '')} devices, {summary['status']})"
    )
    for column in points[0] if points else ():
        table.add_column(column.replace("_uS", " µS").replace("_uA", " µA"), justify="right")
    for point in points:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in point.values()))
    console.print(table)


# --- inference and training ---------------------------------------------------------------------


class Borrowed:
    """An open chip lent to code that will ``close`` it: closing does nothing."""

    def __init__(self, chip) -> None:
        self._chip = chip

    def __getattr__(self, name):
        return getattr(self._chip, name)

    def close(self) -> None:
        pass


def chip_opener(resource: str, timeout_s: float, visa_library: str | None, seed: int, shared=None):
    """``open_chip(i)``: the i-th chip of an experiment. On the embedded emulator chip i is a
    fresh chip seeded ``seed + i``; any other resource is the same chip, programmed anew (the
    ``shared`` open chip, if given: one client at a time)."""
    from pcm_hil.drivers import PcmChip
    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    def open_chip(index: int):
        if is_emulator(resource):
            options = EmulatorOptions.parse(resource, default_seed=seed)
            fresh = options.with_seed(options.seed + index).resource
            return PcmChip.open(fresh, timeout_s=timeout_s)
        if shared is not None:
            return Borrowed(shared)
        return PcmChip.open(resource, timeout_s=timeout_s, visa_library=visa_library)

    return open_chip


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


def render_infer(summary: dict, console: Console) -> None:
    table = Table(
        title=f"{summary['network']}: test accuracy vs time after programming "
        f"(software {summary['fp_accuracy']:.2%}; mean ± std over {summary['chips']} chips)"
    )
    times = sorted({p["t_s"] for p in summary["points"]})
    table.add_column("weights")
    table.add_column("compensation")
    for t in times:
        table.add_column(_duration(t), justify="right")
    rows: dict[tuple[str, str], dict[float, dict]] = {}
    for point in summary["points"]:
        rows.setdefault((point["weights"], point["compensation"]), {})[point["t_s"]] = point
    for (weights, compensation), by_time in sorted(rows.items()):
        cells = [
            f"{by_time[t]['accuracy_mean']:.2%} ±{by_time[t]['accuracy_std']:.1%}"
            if t in by_time
            else ""
            for t in times
        ]
        table.add_row(weights, compensation, *cells)
    console.print(table)
    console.print(f"{summary['elapsed_s']:.1f} s ({summary['status']})")


def _duration(seconds: float) -> str:
    for unit, size in (("y", 365 * 86400.0), ("mo", 30 * 86400.0), ("d", 86400.0), ("h", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def demo(chip, args: argparse.Namespace, listeners: Iterable[Listener]) -> dict:
    from pcm_hil.demo import run_demo

    opener = chip_opener(args.resource, args.timeout, args.visa_library, 0, shared=chip)
    return run_demo(chip, opener, network=args.network, chips=args.chips, listeners=listeners)


def render_demo(summary: dict, console: Console) -> None:
    render_program(summary["program"], console)
    render_drift(summary["drift"], console)
    infer = summary["infer"]
    render_infer(
        {
            "network": summary["network"],
            "fp_accuracy": infer["fp_accuracy"],
            "chips": infer["points"][0]["chips"] if infer["points"] else 0,
            "points": infer["points"],
            "elapsed_s": summary["elapsed_s"],
            "status": summary["status"],
        },
        console,
    )
    program, infer = summary["program"], summary["infer"]
    year = [
        p for p in infer["points"] if p["t_s"] >= 365 * 86400.0 and p["weights"] == "noise-aware"
    ]
    best = max(year, key=lambda p: p["accuracy_mean"]) if year else None
    nus = [level["nu_mean"] for level in summary["drift"]["levels"]]
    console.print(
        f"[bold]Demo:[/] {program['devices']:,} devices programmed to 16 levels "
        f"({program['converged_fraction']:.1%} converged, error std {program['error_std_uS']:.2f} µS); "
        f"drift ν {min(nus):.3f}…{max(nus):.3f} over a virtual year"
        + (
            f"; digits {summary['network']} after a year: {best['accuracy_mean']:.1%} "
            f"(noise-aware, {best['compensation']}) vs {infer['fp_accuracy']:.1%} in software"
            if best
            else ""
        )
        + f"; {summary['elapsed_s']:.0f} s."
    )


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


def render_train(summary: dict, console: Console) -> None:
    table = Table(
        title="Mixed-precision training with the weights on the chip (digits)", show_header=False
    )
    for key in (
        "fp_accuracy",
        "chip_accuracy",
        "epochs",
        "pulses_applied",
        "refreshed_pairs",
        "elapsed_s",
    ):
        if key in summary:
            value = summary[key]
            table.add_row(
                key,
                f"{value:.2%}"
                if key.endswith("accuracy")
                else f"{value:,.4g}"
                if isinstance(value, float)
                else f"{value:,}",
            )
    console.print(table)
