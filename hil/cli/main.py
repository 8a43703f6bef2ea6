"""The lab CLI, ``pcm-hil``: parse the options, run the command, turn errors into one line.

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.

Where things are: the options in ``parser`` (those of ``runs`` and ``dashboard`` in
``runs_options``), their types and ranges in ``options``; every option is checked before a
chip is opened or a run recorded — by its type, then by ``commands.check`` and, once the chip
is open, ``commands.check_on_chip``. The command bodies are in ``commands`` (devices chosen by
``devices``, chips opened by ``chips``, ``--resume`` read back by ``resume``); the recorded
runs in ``recording``, their tables in ``tables``, JSON in ``output``, figures in ``plots``;
``runs`` and ``dashboard`` in ``runs``; ``emulator serve|bench`` in ``serve``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from rich.console import Console

from pcm_hil.cli import commands, tables
from pcm_hil.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, emit
from pcm_hil.cli.parser import build_parser
from pcm_hil.cli.recording import run_procedure, run_report
from pcm_hil.cli.runs import dashboard, runs
from pcm_hil.cli.serve import emulator
from pcm_hil.drivers import PcmHilError
from pcm_hil.protocols.transport import ReplayMismatchError

# command: (procedure body, renderer), each run on one chip as a recorded run
PROCEDURES = {
    "demo": (commands.demo, tables.render_demo),
    "program": (commands.program, tables.render_program),
    "train": (commands.train, tables.render_train),
    "drift": (commands.drift, tables.render_drift),
    "characterize": (commands.characterize, tables.render_curve),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("pcm-hil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PcmHilError, OSError, ValueError, KeyError, RuntimeError, sqlite3.Error) as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, ReplayMismatchError):  # where a replay departed: all of it
            message = str(error)
        print(f"pcm-hil: error: {message}", file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "infer":
        return run_report(args, commands.infer, tables.render_infer)
    if args.command == "characterize" and args.kind == "campaign":
        from pcm_hil.cli.twin import campaign

        return campaign(args)
    if args.command in PROCEDURES:
        return run_procedure(args, *PROCEDURES[args.command])
    if args.command == "runs":
        return runs(args)
    if args.command == "dashboard":
        return dashboard(args)
    if args.command == "tour":
        return _tour(args)
    if args.command == "info":
        return _info(args)
    if args.command == "twin":
        from pcm_hil.cli.twin import twin

        return twin(args)
    if args.command == "sweep":
        from pcm_hil.cli.sweep import sweep

        return sweep(args)
    return emulator(args)


def _tour(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json)  # the spinner off stdout with --json
    emit(args, commands.tour(args, console), tables.render_tour, console)
    return 0


def _info(args: argparse.Namespace) -> int:
    info = commands.info(args)
    emit(args, info, lambda summary, console: tables.render_info(summary, console, args.resource))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
