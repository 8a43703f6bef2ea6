"""``pcm-hil twin …``: the digital twin of a chip. ``twin export MODEL`` writes a device model
for another simulator (``pcm_hil.twin.aihwkit``)."""

from __future__ import annotations

import argparse

from pcm_hil.cli.options import non_negative_int, positive_float, positive_int
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


def add_campaign(kinds) -> None:
    """``pcm-hil characterize campaign``."""
    from pcm_hil.cli.parser import _add_bench, _add_json, _add_labels, _add_resource, _add_runs
    from pcm_hil.twin.campaign import Campaign

    plan = Campaign()
    campaign = _command(
        kinds,
        "campaign",
        "every measurement a chip's digital twin is fitted from — programming curve, "
        "accumulation, program-and-verify with drift, read noise vs time — each its own run",
    )
    campaign.add_argument(
        "--devices",
        type=positive_int,
        default=plan.devices,
        help="devices per measurement (a tile each on a chip of four, else interleaved)",
    )
    campaign.add_argument(
        "--drift-end",
        type=positive_float,
        default=plan.drift_end_s,
        metavar="S",
        help="the last drift read, s after programming (real time on a chip)",
    )
    _add_resource(campaign)
    _add_bench(campaign)
    _add_json(campaign)
    _add_runs(campaign)
    _add_labels(campaign)


def campaign(args: argparse.Namespace) -> int:
    """Run the campaign on the chip of ``--resource``; print its runs."""
    from pcm_hil.cli.chips import open_target
    from pcm_hil.cli.output import print_json
    from pcm_hil.records.metadata import run_labels
    from pcm_hil.twin.campaign import MEASUREMENTS, Campaign, run_campaign

    labels = run_labels(args.meta, args.note, args.tag)
    plan = Campaign(devices=args.devices, drift_end_s=args.drift_end, meta=labels.meta)
    if args.drift_end <= plan.drift_start_s:
        raise ValueError(f"--drift-end {args.drift_end:g} s must be after {plan.drift_start_s:g} s")
    if getattr(args, "bench", None):
        args.resource = f"bench:{args.bench}"
    with open_target(args) as chip:
        ids = run_campaign(chip, plan, store=args.runs)
    runs = dict(zip(MEASUREMENTS, ids, strict=False))
    if args.json:
        print_json({"campaign": ids[0] if ids else None, "runs": runs})
    else:
        for name, run_id in runs.items():
            print(f"{name}: run {run_id}")
        print(f"campaign {ids[0]}: pcm-hil runs list --meta campaign={ids[0]}")
    return 0 if len(ids) == len(MEASUREMENTS) else 130
