"""``pcm-hil twin …``: the digital twin of a chip. ``twin export MODEL`` writes a device model
for another simulator (``pcm_hil.twin.aihwkit``)."""

from __future__ import annotations

import argparse

from pcm_hil.cli.options import non_negative_int
from pcm_hil.cli.output import print_new_file
from pcm_hil.cli.parser import _command


def add_twin(commands) -> None:
    """``pcm-hil twin export``."""
    twin = _command(commands, "twin", "the digital twin of a chip: export its device model")
    twin_commands = twin.add_subparsers(dest="twin_command", required=True, metavar="COMMAND")
    export = _command(
        twin_commands,
        "export",
        "write a device model (a TOML model file) for IBM's analog hardware kit: a Python "
        "module building its PCM noise model with the model's coefficients, or them as JSON",
    )
    export.add_argument("model", metavar="MODEL", help="the model file (pcm-hil emulator model)")
    export.add_argument(
        "--format", choices=("aihwkit", "json"), default="aihwkit", help="what to write"
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="the file (default: print it); never over one",
    )
    export.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the emulated chip the programming noise is measured on",
    )


def twin(args: argparse.Namespace) -> int:
    from pcm_hil.emulator.model_file import load_model
    from pcm_hil.twin.aihwkit import export

    model = load_model(args.model).model
    text = export(model, args.format, source=args.model, seed=args.seed)
    return print_new_file(text, args.output)
