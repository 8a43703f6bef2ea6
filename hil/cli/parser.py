"""The options of ``pcm-hil``: ``build_parser()`` and the option groups its commands share.

Every option has a help text; ``HelpFormatter`` adds its default to it where it has one.
Every number is checked as it is parsed (``positive_int``, ``port``, … of ``options``: a usage
error before anything runs); what needs two options or the chip is checked by
``pcm_hil.cli.commands.check`` and ``check_on_chip``, before a run is recorded.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
from importlib import metadata
from typing import NoReturn

from pcm_hil.analog.insitu import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_HIDDEN, DEFAULT_LR
from pcm_hil.cli.models import add_model_options
from pcm_hil.cli.options import (
    float_range,
    int_range,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from pcm_hil.procedures.program import (
    SETTLE_S,
    TOLERANCE_FLOOR_US,
    TOLERANCE_REL,
    TOLERANCE_US,
)
from pcm_hil.procedures.tour import run_tour

YEAR_S = 365 * 86400.0
#: At most this many read times, currents, pulses or reads in one measurement.
MAX_POINTS = 10_000
#: The longest transport timeout, s (a day).
MAX_TIMEOUT_S = 86400.0
#: Devices per tile that ``drift`` and ``characterize`` use unless told (fewer on a smaller
#: tile: all of it).
DRIFT_DEVICES = 4096
CHARACTERIZE_DEVICES = 1024
#: Devices a tile has at most: the protocol's device addresses are 32-bit unsigned (``<u4``).
MAX_TILE_DEVICES = 2**32
#: The melt-quench currents of ``tour``: it programs ``--devices-per-level`` devices at each,
#: on one tile (checked against the chip's tile by ``commands.check_on_chip``).
TOUR_CURRENTS_UA: tuple[float, ...] = inspect.signature(run_tour).parameters["currents_uA"].default


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: …)`` to an option's help unless the help tells its default already
    or it has none (None, False, "")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "(default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == ""
            or default == []  # a repeatable option given no times
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser that, for a mistyped command or choice, names the nearest one."""

    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group(2))
            near = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.6)
            if near:
                message += f"; did you mean '{near[0]}'?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from pcm_hil.cli.emulator_options import add_emulator
    from pcm_hil.cli.runs_options import add_dashboard, add_runs_commands
    from pcm_hil.cli.sweep import add_sweep
    from pcm_hil.cli.twin import add_twin

    parser = Parser(
        prog="pcm-hil",
        description="Drive PCM test chips and their emulator.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_tour(commands)
    _add_program(commands)
    _add_drift(commands)
    _add_characterize(commands)
    _add_demo(commands)
    _add_infer(commands)
    add_runs_commands(commands)
    add_dashboard(commands)
    _add_train(commands)
    _add_info(commands)
    add_emulator(commands)
    add_twin(commands)
    add_sweep(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("pcm-hil")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def _command(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A (sub)command whose ``--help`` starts with its one-line help."""
    return commands.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)


# --- option groups ------------------------------------------------------------------------------


def _add_resource(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resource",
        default="emulator",
        help="chip to use: a VISA resource (TCPIP0::host::port::SOCKET, ASRL/dev/…::INSTR), "
        "serial:/dev/…, 'replay:FILE' for a recorded session (--record), or 'emulator' for the "
        "embedded emulator; 'emulator?seed=3&profile=tiny' picks its seed and shape",
    )
    parser.add_argument(
        "--timeout",
        type=float_range(0.0, MAX_TIMEOUT_S),
        default=10.0,
        help="transport timeout, s",
    )
    parser.add_argument(
        "--visa-library",
        default=None,
        help="VISA implementation for VISA resources: '@py' (pyvisa-py) or a vendor library "
        "path (default: a plain socket for TCPIP…::SOCKET resources, pyvisa-py for others)",
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="record every byte exchanged with the chip into FILE, a new cassette (several "
        "chips: FILE, then FILE's name with .1, .2, … before its suffix); play it back with "
        "--resource replay:FILE",
    )


def _add_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bench",
        metavar="SMU_RESOURCE,PULSE_RESOURCE",
        default=None,
        help="run on discrete devices on a bench (SMU + pulse generator, e.g. the two "
        "resources 'pcm-hil emulator bench' prints) instead of a chip (pcm_hil.BenchTarget)",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")


def _add_output(parser: argparse.ArgumentParser) -> None:
    _add_json(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--dashboard", action="store_true", help="show the live dashboard")
    parser.add_argument(
        "--plot",
        metavar="DIR",
        help="write the run's figures into DIR (made if missing) when it ends",
    )
    _add_runs(parser)
    _add_labels(parser)


def _add_labels(parser: argparse.ArgumentParser) -> None:
    """The run's metadata: defaults from the config file and $PCM_HIL_META
    (``pcm_hil.records.metadata``)."""
    parser.add_argument(
        "--meta",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="experiment metadata recorded with the run (sample=W12, die=7, operator=jd); "
        "repeatable; defaults from $PCM_HIL_META and the [meta] of ~/.config/pcm-hil/config.toml; "
        "KEY= drops a default",
    )
    parser.add_argument("--note", metavar="TEXT", default=None, help="a note recorded with the run")
    parser.add_argument(
        "--tag",
        metavar="WORD",
        action="append",
        default=[],
        help="a tag to find the run by (runs list --tag WORD); repeatable",
    )


def _add_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        default=None,
        help="run store file (default: $PCM_HIL_RUNS, else $XDG_DATA_HOME/pcm-hil/runs.sqlite, "
        "else ~/.local/share/pcm-hil/runs.sqlite)",
    )


def _add_devices(parser: argparse.ArgumentParser, tiles: str, devices: int | None = None) -> None:
    parser.add_argument("--tiles", default=tiles, help="tiles to use: 'all' or indices a,b,…")
    parser.add_argument(
        "--devices",
        type=positive_int,
        help="devices per tile, spread over it, at most the tile's "
        + (
            "(default: all)"
            if devices is None
            else f"(default: {devices}, or all of a smaller tile)"
        ),
    )


def _add_tolerance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tolerance",
        type=positive_float,
        default=TOLERANCE_US,
        help="widest programming tolerance, µS: each device's is --tolerance-rel of its target, "
        f"at least {TOLERANCE_FLOOR_US:g} µS and at most this; the levels must be at least "
        f"their tolerance apart (default: {TOLERANCE_US:g})",
    )
    parser.add_argument(
        "--tolerance-rel",
        type=non_negative_float,
        default=TOLERANCE_REL,
        help=f"tolerance as a fraction of the target (default: {TOLERANCE_REL:g}); "
        "0: --tolerance for every device",
    )
    parser.add_argument(
        "--settle",
        type=non_negative_float,
        default=SETTLE_S,
        metavar="SECONDS",
        help="wait from each iteration's pulses to its verify read, s (default: "
        f"{SETTLE_S:g}, the published σ_prog's reference time; a virtual clock skips it)",
    )


def _add_programming(parser: argparse.ArgumentParser) -> None:
    _add_tolerance(parser)
    parser.add_argument(
        "--max-iterations",
        type=int_range(1, MAX_POINTS),
        default=30,
        help="program-and-verify iterations at most",
    )
    parser.add_argument(
        "--strategy",
        choices=("amplitude", "partial-set"),
        default="amplitude",
        help="amplitude: melt-quench current search; partial-set: RESET then SET steps",
    )


def _add_network(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        choices=("mlp", "cnn"),
        default="mlp",
        help="network for the digits: a multilayer perceptron or a small convolutional one",
    )


# --- commands -----------------------------------------------------------------------------------


def _add_tour(commands) -> None:
    tour = _command(commands, "tour", "program a few devices, read them back, watch them drift")
    _add_resource(tour)
    tour.add_argument("--tile", type=non_negative_int, default=0, help="tile to use")
    tour.add_argument(
        "--devices-per-level",
        type=int_range(1, MAX_TILE_DEVICES // len(TOUR_CURRENTS_UA)),
        default=64,
        help=f"devices per programming current; {len(TOUR_CURRENTS_UA)} currents, all on the tile",
    )
    _add_json(tour)


def _add_program(commands) -> None:
    program = _command(
        commands, "program", "program-and-verify devices to target levels over 0…g_max"
    )
    _add_resource(program)
    _add_bench(program)
    _add_output(program)
    _add_devices(program, tiles="0")
    program.add_argument("--levels", type=positive_int, default=16, help="target levels")
    _add_programming(program)
    program.add_argument(
        "--resume",
        type=positive_int,
        metavar="RUN",
        help="finish recorded run RUN: program only its devices that had not converged",
    )


def _add_drift(commands) -> None:
    drift = _command(
        commands, "drift", "program levels, read at log-spaced times, fit the drift exponent ν"
    )
    _add_resource(drift)
    _add_bench(drift)
    _add_output(drift)
    _add_devices(drift, tiles="0", devices=DRIFT_DEVICES)
    drift.add_argument("--levels", type=positive_int, default=8, help="target levels")
    drift.add_argument(
        "--start", type=positive_float, default=1.0, help="first read, s after programming"
    )
    drift.add_argument(
        "--end",
        type=positive_float,
        default=YEAR_S,
        help="last read, s after programming (default: %(default).0f, a year)",
    )
    drift.add_argument(
        "--points", type=int_range(2, MAX_POINTS), default=25, help="read times, log-spaced"
    )
    drift.add_argument(
        "--reads-per-point",
        type=int_range(1, MAX_POINTS),
        default=4,
        help="reads averaged per read time",
    )
    drift.add_argument(
        "--fit-from",
        type=positive_float,
        default=20.0,
        help="fit ν to the reads from this time on, s; at least 3 read times from there to --end",
    )
    _add_tolerance(drift)
    drift.add_argument(
        "--resume",
        type=positive_int,
        metavar="RUN",
        help="continue the drift measurement of recorded run RUN (cut off by a dropped "
        "connection, say): no programming, only the reads it had not taken yet",
    )


def _add_characterize(commands) -> None:
    characterize = _command(commands, "characterize", "device characterization")
    kinds = characterize.add_subparsers(
        dest="kind", required=True, metavar="KIND", help="what to measure"
    )
    curve = _command(kinds, "programming-curve", "conductance vs melt-quench current")
    curve.add_argument(
        "--current-min",
        type=positive_float,
        default=200.0,
        help="lowest melt-quench current, µA, below --current-max",
    )
    curve.add_argument(
        "--current-max",
        type=positive_float,
        default=560.0,
        help="highest melt-quench current, µA, within the chip's pulse limit",
    )
    curve.add_argument(
        "--points", type=int_range(1, MAX_POINTS), default=19, help="currents, evenly spaced"
    )
    accumulation = _command(kinds, "accumulation", "conductance vs partial-SET pulses")
    accumulation.add_argument(
        "--pulses", type=int_range(1, MAX_POINTS), default=20, help="partial-SET pulses"
    )
    accumulation.add_argument(
        "--amplitude",
        type=positive_float,
        default=90.0,
        help="partial-SET pulse amplitude, µA, within the chip's pulse limit",
    )
    for parser in (curve, accumulation):
        parser.add_argument(
            "--width",
            type=positive_float,
            default=50.0,
            help="pulse width, ns, within the chip's pulse limits",
        )
        parser.add_argument(
            "--settle",
            type=non_negative_float,
            default=0.0,
            metavar="SECONDS",
            help="wait from each pulse to its read, s (default: 0; 20, t0, for twin fit: a "
            "read sooner sees the device above its programmed conductance)",
        )
    noise = _command(kinds, "read-noise", "relative read noise vs conductance")
    noise.add_argument(
        "--reads",
        type=int_range(2, MAX_POINTS),
        default=20,
        help="reads per device (a spread needs two)",
    )
    noise.add_argument(
        "--times",
        type=positive_float,
        nargs="+",
        metavar="S",
        help="read again at these times after programming, s, increasing: read noise grows "
        "with time (default: once, right after programming)",
    )
    from pcm_hil.cli.twin import add_campaign

    add_campaign(kinds)
    for parser in (curve, accumulation, noise):
        _add_resource(parser)
        _add_bench(parser)
        _add_output(parser)
        parser.add_argument("--tile", type=non_negative_int, default=0, help="tile to use")
        parser.add_argument(
            "--devices",
            type=positive_int,
            help="devices, spread over the tile, at most the tile's "
            f"(default: {CHARACTERIZE_DEVICES}, or all of a smaller tile)",
        )


def _add_demo(commands) -> None:
    demo = _command(
        commands,
        "demo",
        "the main job: program a tile, drift over a virtual year, chip-in-the-loop "
        "inference with and without compensation; dashboard live, run recorded",
    )
    _add_resource(demo)
    _add_output(demo)
    demo.add_argument("--no-dashboard", action="store_true", help="a progress bar instead")
    demo.add_argument(
        "--report",
        metavar="FILE.html",
        help="where to write the demo's report (default: reports/run-ID.html beside the run store)",
    )
    _add_network(demo)
    demo.add_argument(
        "--chips", type=positive_int, default=2, help="chips for the inference experiment"
    )


def _add_infer(commands) -> None:
    infer = _command(
        commands,
        "infer",
        "chip-in-the-loop inference: accuracy vs time after programming, of a bundled network "
        "on the digits or your own torch model",
    )
    _add_resource(infer)
    _add_output(infer)
    add_model_options(infer)  # --network, --model, --weights, --data (cli.models)
    infer.add_argument(
        "--chips", type=positive_int, default=3, help="chips (emulator seeds) to average"
    )
    infer.add_argument(
        "--times",
        type=positive_float,
        nargs="+",
        default=[1.0, 3600.0, 86400.0, 2592000.0, 31536000.0],
        help="seconds after programming, increasing (default: 1 s, 1 h, 1 d, 1 month, 1 year)",
    )
    infer.add_argument(
        "--seed", type=non_negative_int, default=0, help="training and first chip seed"
    )
    infer.add_argument(
        "--data-seed", type=non_negative_int, default=0, help="train/test split seed"
    )


def _add_train(commands) -> None:
    train = _command(
        commands,
        "train",
        "mixed-precision training of an MLP on the digits with its weights on the chip",
    )
    _add_resource(train)
    _add_output(train)
    train.add_argument(
        "--hidden",
        type=positive_int,
        help=f"hidden units of the MLP, as the chip's tiles hold (default: {DEFAULT_HIDDEN})",
    )
    train.add_argument(
        "--epochs", type=positive_int, help=f"training epochs (default: {DEFAULT_EPOCHS})"
    )
    train.add_argument("--lr", type=positive_float, help=f"learning rate (default: {DEFAULT_LR:g})")
    train.add_argument(
        "--batch", type=positive_int, help=f"mini-batch size (default: {DEFAULT_BATCH})"
    )
    train.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the initial weights and the shuffles",
    )


def _add_info(commands) -> None:
    info = _command(commands, "info", "identity and configuration of a chip")
    _add_resource(info)
    _add_json(info)
