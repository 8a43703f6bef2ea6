"""``pcm-hil twin …``: the digital twin of a chip. ``twin fit RUN…`` fits the device model to
a chip's characterization runs (``pcm_hil.twin.fit``), ``twin compare`` runs the same
procedures on a chip and on its twin side by side (``pcm_hil.twin.compare``), ``twin export
MODEL`` writes a device model for another simulator (``pcm_hil.twin.aihwkit``)."""

from __future__ import annotations

import argparse
import os
from urllib.parse import quote

from pcm_hil.cli.options import int_range, non_negative_int, positive_float, positive_int
from pcm_hil.cli.output import print_new_file
from pcm_hil.cli.parser import _command


def add_twin(commands) -> None:
    """``pcm-hil twin fit|compare|export``."""
    from pcm_hil.cli.parser import _add_json, _add_resource, _add_runs
    from pcm_hil.twin.compare import ComparePlan

    twin = _command(
        commands, "twin", "the digital twin of a chip: fit its device model, compare, export"
    )
    twin_commands = twin.add_subparsers(dest="twin_command", required=True, metavar="COMMAND")
    fit = _command(
        twin_commands,
        "fit",
        "fit the emulator's device model to a chip's characterization runs (pcm-hil "
        "characterize campaign): every parameter the runs identify, with its uncertainty",
    )
    fit.add_argument("run", metavar="RUN", nargs="+", type=positive_int, help="run ids")
    fit.add_argument(
        "--output", metavar="FILE", default=None, help="the model file (default: print it)"
    )
    fit.add_argument(
        "--start",
        metavar="MODEL",
        default=None,
        help="model file the parameters not fitted are taken from (default: the default model)",
    )
    _add_runs(fit)
    _add_json(fit)
    compare = _command(
        twin_commands,
        "compare",
        "run the same procedures on a chip and on its twin (an emulator of the model), and "
        "print their figures side by side with twin/chip ratios",
    )
    compare.add_argument(
        "--model", metavar="MODEL", required=True, help="the twin's model file (twin fit)"
    )
    plan = ComparePlan()
    compare.add_argument(
        "--devices",
        type=positive_int,
        default=plan.devices,
        help="devices programmed for drift and for read noise, each (default: %(default)s, "
        "or all of a smaller tile)",
    )
    compare.add_argument(
        "--levels", type=int_range(1, 64), default=plan.levels, help="programmed levels"
    )
    compare.add_argument(
        "--drift-end",
        type=positive_float,
        default=plan.drift_end_s,
        metavar="S",
        help="the last drift read, s after programming (real time on a chip)",
    )
    compare.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the twin's emulated chip"
    )
    _add_resource(compare)
    _add_json(compare)
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
    if args.twin_command == "fit":
        return twin_fit(args)
    if args.twin_command == "compare":
        return twin_compare(args)
    from pcm_hil.emulator.model_file import load_model
    from pcm_hil.twin.aihwkit import export

    model = load_model(args.model).model
    text = export(model, args.format, source=args.model, seed=args.seed)
    return print_new_file(text, args.output)


def twin_fit(args: argparse.Namespace) -> int:
    """Fit, print what was fitted and what was kept, write or print the model file."""
    from pcm_hil.cli.output import print_json
    from pcm_hil.emulator.calibration import DEFAULT_MODEL
    from pcm_hil.emulator.model_file import load_model
    from pcm_hil.records.store import RunStore, default_path
    from pcm_hil.twin.fit import fit_twin

    if args.output is not None and os.path.exists(args.output):
        raise ValueError(f"{args.output} exists: give a new file")
    start = load_model(args.start).model if args.start else DEFAULT_MODEL
    path = args.runs or str(default_path())
    if not os.path.exists(path):
        raise ValueError(f"no run store at {path}")
    with RunStore(path, readonly=True) as store:
        for run in args.run:
            store.run(run)  # UnknownRunError, one line, for a run not in the store
        fitted = fit_twin(args.run, store=store, start=start)
    if args.json:
        print_json(
            {
                "fitted": {
                    n: {"value": e.value, "uncertainty": e.uncertainty, "runs": list(e.runs)}
                    for n, e in fitted.estimates.items()
                    if n not in fitted.kept
                },
                "kept": fitted.kept,
                "output": args.output,
                **({"model": fitted.text()} if args.output is None else {}),
            }
        )
        if args.output is not None:  # written; the JSON above names it
            with open(args.output, "x", encoding="utf-8") as file:
                file.write(fitted.text())
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Device model fitted to runs {', '.join(map(str, args.run))}")
    for column in ("parameter", "fitted", "±", "default", "fitted/default"):
        table.add_column(column, justify="right" if column != "parameter" else "left")
    for name, e in fitted.estimates.items():
        if name in fitted.kept:
            continue
        default = getattr(DEFAULT_MODEL, name)
        ratio = f"{e.value / default:.3f}" if default else ""
        table.add_row(name, f"{e.value:.5g}", f"{e.uncertainty:.2g}", f"{default:.5g}", ratio)
    console = Console(stderr=args.output is None)
    console.print(table)
    for name, why in fitted.kept.items():
        console.print(f"kept {name} = {getattr(fitted.model, name):.5g}: {why}")
    return print_new_file(fitted.text(), args.output)


def twin_compare(args: argparse.Namespace) -> int:
    """The comparison, as a table or JSON."""
    from pcm_hil.cli.chips import check_resource, open_chip
    from pcm_hil.cli.output import print_json
    from pcm_hil.drivers import PcmChip
    from pcm_hil.emulator.model_file import load_model
    from pcm_hil.procedures.program import SETTLE_S
    from pcm_hil.twin.compare import ComparePlan, compare

    load_model(args.model)  # a bad model file: one line, before anything is opened
    check_resource(args.resource)
    if args.drift_end <= SETTLE_S:
        raise ValueError(
            f"--drift-end {args.drift_end:g} s must be after the first drift read, {SETTLE_S:g} s"
        )
    with open_chip(args) as chip:
        config = chip.config
        geometry = f"tiles={config.tiles}&rows={config.rows}&columns={config.columns}"
        model = quote(os.path.abspath(args.model), safe="/")
        resource = f"emulator?seed={args.seed}&{geometry}&model={model}"
        plan = ComparePlan(
            devices=min(args.devices, config.devices_per_tile),
            curve_devices=min(ComparePlan.curve_devices, config.devices_per_tile),
            levels=args.levels,
            drift_end_s=args.drift_end,
        )
        with PcmChip.open(resource, timeout_s=args.timeout) as twin:
            result = compare(chip, twin, plan)
    if args.json:
        print_json({"chip": args.resource, "model": args.model, **result.as_dict()})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.resource} beside its twin ({args.model})")
    for column in ("quantity", "at", "chip", "twin", "twin/chip"):
        table.add_column(column, justify="left" if column == "quantity" else "right")
    for row in result.rows:
        table.add_row(
            row.quantity, f"{row.at:g}", f"{row.chip:.4g}", f"{row.twin:.4g}", f"{row.ratio:.3f}"
        )
    Console().print(table)
    return 0


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
