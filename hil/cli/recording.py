"""Running a command as a recorded run: its start, events and end go to the run store
(``--runs``), a progress bar or the live dashboard shows it, and its summary is printed as
one JSON object or as tables.

``run_procedure`` runs a procedure on one chip (or bench) opened here; ``run_report`` runs
a command that opens its own chips (``infer``). Both go through ``run_recorded``, after the
options are checked (``commands.check``, and ``commands.check_on_chip`` once the chip is
open): an option refused records no run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from pcm_hil.cli.chips import open_target
from pcm_hil.cli.commands import check, check_on_chip
from pcm_hil.cli.output import EXIT_INTERRUPTED, emit
from pcm_hil.cli.plots import plot_after
from pcm_hil.documents.analog import InferChip
from pcm_hil.protocols.chip import ChipInfo, Identity
from pcm_hil.records.metadata import run_labels
from pcm_hil.records.session import emulator_parameters
from pcm_hil.records.store import Recorder, RunStore, default_path
from pcm_hil.ui.progress import ProgressBar

Render = Callable[[dict, Console], None]


def run_report(args: argparse.Namespace, run, render: Render) -> int:
    """A command that opens its own chips (one per repetition): ``run(args, listeners)``.
    The run records the first chip's identity as its own (each chip's is in its documents)."""
    check(args)

    def body(listeners, store, run_id):
        described: list[bool] = []

        def describe(event):
            if isinstance(event.document, InferChip) and not described:
                identity, config = event.document.identity, event.document.config
                store.describe_chip(run_id, ChipInfo(identity=Identity(**identity), **config))
                described.append(True)

        return run(args, [describe, *listeners])

    return run_recorded(args, body, render)


def run_procedure(args: argparse.Namespace, run, render: Render) -> int:
    """A command that runs a procedure on one chip: ``run(chip, args, listeners)``. The chip
    is opened, and the options checked against it, before the run is recorded; the run
    records the chip's clock mode among its parameters (``--resume`` compares it)."""
    check(args)
    if getattr(args, "bench", None):
        args.resource = f"bench:{args.bench}"  # what the run records
    with open_target(args) as chip:
        check_on_chip(chip, args)

        def on_chip(listeners, store, run_id):
            store.describe_chip(run_id, chip.config)
            for listener in listeners:
                if hasattr(listener, "set_run"):  # the dashboard: show the chip it runs on
                    listener.set_run(store.run(run_id))
            return run(chip, args, listeners)

        return run_recorded(args, on_chip, render, {"clock_mode": chip.clock_mode()})


def run_recorded(
    args: argparse.Namespace, body, render: Render, recorded: dict | None = None
) -> int:
    """Run ``body(listeners, store, run_id)`` as a recorded run, with a progress bar or the
    dashboard (unless --json or --quiet), then print its summary: one JSON object, or tables.
    ``recorded`` joins the options among the run's parameters. A run that raises is marked
    failed (cancelled on Ctrl-C) with what it measured kept."""
    procedure = getattr(args, "kind", None) or args.command
    labels = run_labels(args.meta, args.note, args.tag)  # refused before anything is recorded
    # infer seeds its chips from --seed; elsewhere --seed is not the chip's (train: weights)
    chip_seed = getattr(args, "seed", None) if args.command == "infer" else None
    emulator = emulator_parameters(args.resource, chip_seed)
    store = RunStore(args.runs)
    try:
        run_id = store.start_run(
            procedure,
            resource=args.resource,
            parameters={**parameters(args), **(recorded or {}), **emulator},
            seed=emulator["emulator"]["seed"] if emulator else chip_seed,
            meta=labels.meta,
            note=labels.note,
            tags=labels.tags,
        )
    except BaseException:
        store.close()  # the store's side files go with its connection
        raise
    recorder = Recorder(store, run_id, procedure)
    display = [] if (args.json or args.quiet) else [_display(args, store.run(run_id))]
    try:
        summary = body([recorder, *display], store, run_id)
        store.set_summary(run_id, summary)  # what runs show prints again
    except BaseException as error:
        if store.run(run_id).status == "running":
            if isinstance(error, KeyboardInterrupt):
                store.finish_run(run_id, "cancelled", "interrupted")
            else:
                recorder.fail(error)
        raise
    finally:
        for listener in display:
            listener.close()
        store.close()
    summary["resource"] = args.resource
    summary["run_id"] = run_id
    if args.command == "demo":  # the demo ends with its report, beside the run store
        summary["report"] = str(demo_report_path(args, run_id))
    emit(args, summary, render)
    if not args.json:
        Console(stderr=True).print(f"recorded as run {run_id}", style="dim")
    if getattr(args, "plot", None):
        written = plot_after(args, run_id)
        if not args.json:
            figures = f"{len(written)} figure{'s' if len(written) != 1 else ''}"
            Console(stderr=True).print(f"{figures} in {args.plot}", style="dim", highlight=False)
    if "report" in summary:  # written once the summary is out: a failure loses nothing shown
        write_demo_report(args, run_id, Path(summary["report"]))
        if not args.json:
            Console(stderr=True).print(f"report: {summary['report']}", highlight=False)
    return 0 if summary.get("status", "completed") == "completed" else EXIT_INTERRUPTED


def demo_report_path(args: argparse.Namespace, run_id: int) -> Path:
    """Where the demo's report goes: ``--report``, else ``reports/run-ID.html`` beside the
    run store."""
    if args.report:
        return Path(args.report)
    store = Path(args.runs) if args.runs else default_path()
    return store.parent / "reports" / f"run-{run_id}.html"


def write_demo_report(args: argparse.Namespace, run_id: int, path: Path) -> Path:
    """Write the demo's report to ``path`` (its ``reports`` folder made when it is the
    default one)."""
    from pcm_hil.report import write_report

    if not args.report:
        path.parent.mkdir(exist_ok=True)
    with RunStore(args.runs, readonly=True) as store:
        return write_report(store, run_id, path)


def _display(args: argparse.Namespace, info=None):
    """The live dashboard (``--dashboard``, and ``demo`` unless ``--no-dashboard``), else a
    progress bar."""
    if args.dashboard or (args.command == "demo" and not args.no_dashboard):
        from pcm_hil.ui.dashboard import LiveDashboard

        dashboard = LiveDashboard()
        dashboard.set_run(info, args.resource)
        return dashboard
    return ProgressBar()


def parameters(args: argparse.Namespace) -> dict:
    """The options a run records as its parameters: all but those about output and transport
    and the labels (recorded as the run's meta, note and tags)."""
    skip = {
        "json", "quiet", "dashboard", "runs", "debug", "command", "timeout", "plot", "report",
        "meta", "note", "tag",
    }  # fmt: skip
    return {k: v for k, v in vars(args).items() if k not in skip}
