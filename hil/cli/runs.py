"""Looking at recorded runs: ``runs list``, ``runs show``, ``runs export`` and ``dashboard``.

``runs show`` reads a run back in ``show_run``: its record and the result tables its
procedure printed (``--events``: ``run_document`` is the events' ``--json`` object,
``render_run`` their table). All of them only read the store: they open it read-only, so a store
they cannot write, or one not made yet, is read as it is and left so.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.cli.output import print_json
from pcm_hil.cli.tables import RENDERERS
from pcm_hil.records.metadata import check_tags, parse_pairs
from pcm_hil.records.store import RunStore
from pcm_hil.records.values import as_text


def runs(args: argparse.Namespace) -> int:
    """``pcm-hil runs list|show|tag|export|plot|report|delete|prune|vacuum``."""
    if args.runs_command in ("delete", "prune", "vacuum"):
        return keep_small(args)
    if args.runs_command == "tag":
        return tag_run(args)
    with RunStore(args.runs, readonly=True) as store:
        if args.runs_command == "list":
            return list_runs(args, store)
        if args.runs_command == "show":
            return show_run(args, store)
        if args.runs_command == "plot":
            from pcm_hil.cli.plots import plot_run

            return plot_run(args, store)
        if args.runs_command == "report":
            from pcm_hil.report import write_report

            store.run(args.id)  # an unknown run is one line
            print(write_report(store, args.id, args.output))
            return 0
        return export_run(args, store)


def keep_small(args: argparse.Namespace) -> int:
    """``runs delete ID…``, ``runs prune --older-than AGE``, ``runs vacuum``: one line each
    on what was done."""
    existing_store(args.runs)
    with RunStore(args.runs) as store:
        if args.runs_command == "delete":
            running = [i for i in args.ids if store.run(i).status == "running"]  # all known
            if running:
                raise ValueError(f"run(s) {', '.join(map(str, running))} running: none deleted")
            for run_id in args.ids:
                store.delete_run(run_id)
            print(f"deleted run(s) {', '.join(map(str, args.ids))} from {store.path}")
        elif args.runs_command == "prune":
            deleted = store.prune(args.older_than)
            print(
                f"deleted {len(deleted)} run(s) from {store.path}"
                + (f": {', '.join(map(str, deleted))}" if deleted else "")
            )
        else:
            before, after = store.vacuum()
            print(f"{store.path}: {before / 2**20:.1f} MiB → {after / 2**20:.1f} MiB")
    return 0


def existing_store(path: str | None) -> None:
    """Refuse a store file that does not exist (a mistyped ``--runs``) for commands that
    change a store: they would make an empty one."""
    from pcm_hil.records.store import default_path

    where = Path(path) if path else default_path()
    if not where.is_file():
        raise ValueError(f"no run store at {where}")


def tag_run(args: argparse.Namespace) -> int:
    """``runs tag ID [WORD…] [--remove WORD] [--meta K=V] [--note TEXT]``: the run's labels
    as they now are, one line (or JSON)."""
    meta = parse_pairs(args.meta)
    add, remove = check_tags(args.tags), check_tags(args.remove, "--remove")
    existing_store(args.runs)
    with RunStore(args.runs) as store:
        info = store.annotate(
            args.id,
            meta={k: (v if v != "" else None) for k, v in meta.items()},
            note=args.note,
            add_tags=add,
            remove_tags=remove,
        )
    if args.json:
        print_json({"id": info.id, "meta": info.meta, "note": info.note, "tags": info.tags})
    else:
        print(f"run {info.id}: {_labels(info) or 'no tags, metadata or note'}")
    return 0


def list_runs(args: argparse.Namespace, store: RunStore) -> int:
    found = store.runs(
        limit=args.limit,
        meta=parse_pairs(args.meta),
        tags=check_tags(args.tag),
        procedure=args.procedure,
    )
    if args.json:
        print_json({"runs": [r.as_dict() for r in found], "store": str(store.path)})
        return 0
    table = Table(title=f"Runs in {store.path}")
    for column in ("id", "procedure", "started", "status", "resource", "chip", "labels"):
        table.add_column(column)
    for r in found:
        chip = f"{r.identity['model']} {r.identity['serial']}" if r.identity else ""
        table.add_row(
            str(r.id), r.procedure, _when(r.started_at), r.status, r.resource or "", chip,
            _labels(r),
        )  # fmt: skip
    Console().print(table)
    return 0


def _labels(info) -> str:
    """A run's tags, metadata and note, short: ``#cal sample=W12 die=7 "first"``."""
    words = [f"#{t}" for t in info.tags] + [f"{k}={as_text(v)}" for k, v in info.meta.items()]
    if info.note:
        words.append(f'"{_short(info.note)}"')
    return " ".join(words)


def show_run(args: argparse.Namespace, store: RunStore) -> int:
    """One run: its record and its result tables — as the procedure printed them, or, for
    a run that kept no summary, its data tables described — or with ``--events`` its
    events; as one JSON object or as tables."""
    info = store.run(args.id)
    if args.events:
        events = list(store.events(args.id))
        if args.json:
            print_json(run_document(info, events))
        else:
            render_run(info, events, Console())
        return 0
    summary = store.summary(args.id)
    if args.json:
        print_json({"run": info.as_dict(), "summary": summary})
        return 0
    console = Console()
    render_record(info, console)
    if summary is not None:
        render_summary(info.procedure, summary, console)
    else:  # a script's run that kept no summary, or one cut off: its data
        from pcm_hil.data import run_tables

        render_tables(run_tables(args.id, store=store), console)
    return 0


def render_summary(procedure: str, summary: dict, console: Console) -> None:
    """A run's summary as its command printed it, or — a script's (``pcm_hil.record``), or
    one its command's tables do not fit — as a table of its values."""
    render = RENDERERS.get(procedure)
    if render is not None:
        try:
            render(summary, console)
            return
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # not the command's summary: a script's run of the same name
    table = Table(title="Summary", show_header=False)
    for key, value in summary.items():
        table.add_row(
            key, _short(value) if not isinstance(value, (list, dict)) else _short(json.dumps(value))
        )
    console.print(table)


def render_record(info, console: Console) -> None:
    """The run's record, short: what, when, on what, labels, and its parameters."""
    header = Table(title=f"Run {info.id}: {info.procedure}", show_header=False)
    chip = info.identity or {}
    rows = {
        "status": info.status + (f" ({info.error})" if info.error else ""),
        "started": _when(info.started_at),
        "ended": _when(info.ended_at) if info.ended_at else "",
        "resource": info.resource or "",
        "chip": " ".join(str(chip[k]) for k in ("model", "serial", "firmware") if k in chip),
        "seed": "" if info.seed is None else str(info.seed),
        "labels": _labels(info),
        "parameters": ", ".join(
            f"{k}={_short(v)}"
            for k, v in info.parameters.items()
            if v is not None and k not in ("resource", "emulator")
        ),
    }
    for key, value in rows.items():
        if value:
            header.add_row(key, value)
    console.print(header)


def render_tables(tables: dict, console: Console) -> None:
    """Each data table of a run: its dimensions and, per variable, units and statistics."""
    if not tables:
        console.print("no data recorded")
    for name, table in tables.items():
        sizes = " × ".join(f"{n} {d}" for d, n in table.sizes.items())
        view = Table(title=f"{name}: {sizes}")
        for column in ("variable", "units", "dims", "mean", "min", "max"):
            view.add_column(column)
        for var in table.data_vars:
            values = table[var].values
            numeric = values.dtype.kind in "biuf" and values.size
            stats = (
                [
                    f"{np.nanmean(values):.4g}",
                    f"{np.nanmin(values):.4g}",
                    f"{np.nanmax(values):.4g}",
                ]
                if numeric and not np.isnan(values.astype(float)).all()
                else ["", "", ""]
            )
            units = table[var].attrs.get("units", "")
            view.add_row(str(var), units, ",".join(map(str, table[var].dims)), *stats)
        console.print(view)


def run_document(info, events: list) -> dict:
    """The ``runs show --json`` object: the run's record, and its events with arrays of more
    than 64 values shown by type and shape only."""
    return {
        "run": info.as_dict(),
        "events": [
            {
                "seq": e.seq,
                "document": e.document.name,
                "version": e.document.version,
                "kind": e.kind,
                "procedure": e.procedure,
                "done": e.done,
                "total": e.total,
                "wall_time_s": e.wall_time_s,
                "data": {k: _json_value(v) for k, v in e.document.values().items()},
            }
            for e in events
        ],
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"<array {value.dtype} {list(value.shape)}>"
    return value


def render_run(info, events: list, console: Console) -> None:
    """The run's record, then a table of its events with their data abridged."""
    header = Table(title=f"Run {info.id}: {info.procedure}", show_header=False)
    for key, value in info.as_dict().items():
        header.add_row(key, _when(value) if key.endswith("_at") and value else str(value))
    console.print(header)
    table = Table(title=f"{len(events)} events")
    for column in ("seq", "document", "progress", "data"):
        table.add_column(column)
    for e in events:
        shown = ", ".join(
            f"{k}=<{v.dtype}{list(v.shape)}>" if isinstance(v, np.ndarray) else f"{k}={_short(v)}"
            for k, v in e.document.values().items()
        )
        table.add_row(str(e.seq), e.document.name, f"{e.done}/{e.total}", shown)
    console.print(table)


def export_run(args: argparse.Namespace, store: RunStore) -> int:
    """Write the run's tables as NetCDF, Parquet or CSV, or its bluesky documents; print the
    path written."""
    store.run(args.id)  # an unknown run is one line
    if args.format == "bluesky":
        from pcm_hil.adapters.bluesky import export_bluesky

        print(export_bluesky(args.id, args.output, store=store))
        return 0
    from pcm_hil.data import export_run as export

    print(export(args.id, args.format, args.output, store=store))
    return 0


def dashboard(args: argparse.Namespace) -> int:
    """``pcm-hil dashboard``: follow a run live, or draw a finished one."""
    from pcm_hil.ui.dashboard import attach

    with RunStore(args.runs, readonly=True) as store:
        if store.latest() is None:
            raise ValueError(f"no runs recorded in {store.path}")
        attach(store, args.id, follow=not args.once, tile=args.tile)
    return 0


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
