"""The options of ``pcm-hil emulator serve|bench|model`` (``build_parser`` in ``parser``
adds them)."""

from __future__ import annotations

import argparse

from pcm_hil.cli.options import networks, non_negative_int, port, positive_float, positive_int
from pcm_hil.cli.parser import _command


def add_emulator(commands) -> None:
    """``pcm-hil emulator serve|bench|model``."""
    emulator = _command(commands, "emulator", "serve the chip emulator")
    emulator_commands = emulator.add_subparsers(
        dest="emulator_command", required=True, metavar="COMMAND"
    )
    serve = _command(
        emulator_commands,
        "serve",
        "serve an emulated chip over TCP (default) or a pty serial port; prints the "
        "resource string on a line of its own",
    )
    serve.add_argument("--serial", action="store_true", help="serve on a pseudo-terminal")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    _add_allow(serve)
    serve.add_argument(
        "--port", type=port, default=5025, help="TCP port, 1…65535; 0: any free port"
    )
    serve.add_argument("--seed", type=non_negative_int, default=0, help="seed of the emulated chip")
    serve.add_argument(
        "--profile",
        default="default",
        help="chip shape: tiny, small, default (4×256×256), hermes",
    )
    for dimension in ("tiles", "rows", "columns"):
        serve.add_argument(
            f"--{dimension}",
            type=positive_int,
            help=f"{dimension} of the chip, as many as fit in memory (default: the profile's)",
        )
    serve.add_argument("--real-time", action="store_true", help="wall-clock time, not virtual")
    _add_model(serve)
    _add_serving_limits(serve)
    serve.add_argument(
        "--faults",
        default="",
        metavar="PLAN",
        help="inject faults (TCP only, except the device faults stuck_fraction and "
        "drift_factor): comma-separated key=value, e.g. 'drop_after=100,delay_s=2,delay_from=5'; "
        "keys: delay_s, delay_from, drop_after, drop_mid_block, corrupt_block, corrupt_bytes, "
        "truncate_block, error_reply=MSG:CODE, temperature_excursion=MSGS:KELVIN, reset_after, "
        "stuck_fraction, drift_factor, seed; counts are messages (or block replies) per "
        "connection, see emulator/faults.py (default: none)",
    )
    bench = _command(
        emulator_commands,
        "bench",
        "serve an emulated bench: an SMU (with the switch matrix) and a pulse generator, "
        "each on its own TCP port, wired to the same emulated PCM devices; prints two lines, "
        "'SMU <resource>' then 'PULSE <resource>' (see emulator/bench/)",
    )
    bench.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the emulated devices"
    )
    bench.add_argument(
        "--devices", type=positive_int, default=16, help="devices on the switch matrix"
    )
    bench.add_argument(
        "--smu-port", type=port, default=5100, help="SMU TCP port, 1…65535; 0: any free port"
    )
    bench.add_argument(
        "--pulse-port",
        type=port,
        default=5101,
        help="pulse generator TCP port, 1…65535; 0: any free port",
    )
    bench.add_argument("--host", default="127.0.0.1", help="address to bind")
    _add_allow(bench)
    _add_model(bench)
    model = _command(
        emulator_commands,
        "model",
        "write the emulator's device model as a TOML file to edit or fit (every parameter "
        "with its unit and source), or check one",
    )
    model.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="the file to write (default: print it); refused if it exists",
    )
    model.add_argument(
        "--check",
        metavar="FILE",
        default=None,
        help="read a model file and print its parameters that differ from the default",
    )


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="FILE",
        default=None,
        help="the device model: a TOML file (pcm-hil emulator model writes the default to "
        "start from; default: the built-in model)",
    )


def _add_serving_limits(parser: argparse.ArgumentParser) -> None:
    """The timeouts of ``protocols.limits.ServingLimits``, with its defaults."""
    from pcm_hil.protocols.limits import DEFAULT_LIMITS

    parser.add_argument(
        "--partial-timeout",
        type=positive_float,
        default=DEFAULT_LIMITS.partial_timeout_s,
        help="a connection holding part of a message, and sending nothing more for this long, "
        "is closed and the chip freed, s",
    )
    parser.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=DEFAULT_LIMITS.idle_timeout_s,
        help="a connection sending nothing between messages for this long is closed, s "
        "(default: none, it may stay open)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=positive_float,
        default=DEFAULT_LIMITS.send_stall_timeout_s,
        help="a client reading nothing of a reply for this long is dropped, s",
    )


def _add_allow(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow",
        type=networks,
        default=(),
        metavar="CIDR[,CIDR…]",
        help="clients that may connect, e.g. 192.168.1.0/24,10.0.0.7; a --host other than "
        "loopback needs it (default: none, loopback only)",
    )
