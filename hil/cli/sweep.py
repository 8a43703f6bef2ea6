"""``pcm-hil sweep SPEC``: a sweep (``pcm_hil.sweep``) from a TOML spec, on a LocalCluster of
``--workers`` processes or on the Dask cluster of ``--scheduler``; recorded as one run, a
table of each result's mean and spread along each axis printed at the end."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

import numpy as np

from pcm_hil.cli.options import positive_int
from pcm_hil.cli.parser import _add_json, _add_runs, _command


def add_sweep(commands) -> None:
    sweep = _command(
        commands,
        "sweep",
        "run a function over a grid of chips, models and settings as tasks on Dask",
    )
    sweep.add_argument("spec", metavar="SPEC", help="the sweep, a TOML file (pcm_hil.sweep.spec)")
    sweep.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="worker processes of the local cluster (default: %(default)s)",
    )
    sweep.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="a running Dask scheduler (tcp://host:8786) instead of a local cluster",
    )
    sweep.add_argument(
        "--resume",
        metavar="RUN",
        type=positive_int,
        default=None,
        help="a killed or cancelled sweep run of the same spec: compute only what it lacks",
    )
    sweep.add_argument(
        "--dashboard",
        action="store_true",
        help="show the live dashboard (the points as they complete) instead of a progress bar",
    )
    _add_runs(sweep)
    _add_json(sweep)


def sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from pcm_hil.cli.output import print_json
    from pcm_hil.records.store import RunStore
    from pcm_hil.sweep import load_spec, load_sweep, run_sweep
    from pcm_hil.sweep.functions import point_function

    spec = load_spec(args.spec)
    point_function(spec.function)  # an unknown function: one line, before a cluster starts
    with RunStore(args.runs) as store, ExitStack() as shown:
        if args.dashboard and not args.json:
            from pcm_hil.ui.dashboard import LiveDashboard

            display = LiveDashboard()
            display.set_run(None, resource=args.scheduler or f"local cluster of {args.workers}")
            shown.callback(display.close)
            listeners: list = [display]
        else:
            progress = shown.enter_context(Progress(transient=True, disable=args.json))
            task = progress.add_task("sweep", total=spec.size)

            def advance(event) -> None:
                progress.update(task, completed=event.done)

            listeners = [advance]
        result = run_sweep(
            spec,
            scheduler=args.scheduler,
            workers=args.workers,
            store=store,
            resume=args.resume,
            listeners=listeners,
        )
        data = load_sweep(result.run_id, store)
    summary = summarize(data)
    if args.json:
        print_json({"run": result.run_id, "status": result.status, "summary": summary})
    else:
        console = Console()
        from rich.table import Table

        table = Table(title=f"sweep of {spec.function} over {', '.join(spec.axes)}")
        for column in ("result", "axis", "value", "mean", "std"):
            table.add_column(column, justify="left" if column in ("result", "axis") else "right")
        for row in summary:
            table.add_row(
                row["result"],
                row["axis"],
                str(row["value"]),
                "–" if row["mean"] is None else f"{row['mean']:.4g}",
                "–" if row["std"] is None else f"{row['std']:.3g}",
            )
        console.print(table)
        console.print(f"recorded as run {result.run_id} ({result.status})")
    return 0 if result.status == "completed" else 130


def summarize(data) -> list[dict]:
    """Each number-valued result's mean and std over the other axes, per value of each axis."""
    rows = []
    axes = [str(d) for d in data.coords if d in data.dims]
    for name, variable in data.data_vars.items():
        if name in ("computed", "seconds") or set(variable.dims) - set(axes):
            continue
        for axis in axes:
            for value in data[axis].values:
                picked = np.asarray(variable.sel({axis: value}), np.float64)
                rows.append(
                    {
                        "result": str(name),
                        "axis": axis,
                        "value": value.item() if hasattr(value, "item") else value,
                        "mean": _finite(picked, np.nanmean),
                        "std": _finite(picked, np.nanstd),
                    }
                )
    return rows


def _finite(values: np.ndarray, statistic) -> float | None:
    """``statistic`` of the values computed (None if none was: JSON has no NaN)."""
    values = values[np.isfinite(values)]
    return float(statistic(values)) if values.size else None
