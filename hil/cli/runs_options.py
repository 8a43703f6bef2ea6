"""The options of ``pcm-hil runs …`` and ``pcm-hil dashboard``: what is done with recorded
runs (``build_parser`` in ``parser`` adds them)."""

from __future__ import annotations

from pcm_hil.cli.options import duration, non_negative_int, positive_int
from pcm_hil.cli.parser import _add_json, _add_runs, _command

#: ``runs export --format``: the formats of ``pcm_hil.data.export_run``, and bluesky's
#: event-model documents (``pcm_hil.adapters.bluesky``).
EXPORT_FORMATS = ("netcdf", "hdf5", "parquet", "csv", "bluesky")


def add_runs_commands(commands) -> None:
    """``pcm-hil runs …``: list, show, tag, export, plot, report, delete, prune, vacuum."""
    runs = _command(
        commands,
        "runs",
        "recorded runs: list, show, tag, export, plot, report, delete, prune, vacuum",
    )
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    listing = _command(runs_commands, "list", "recorded runs, newest first")
    listing.add_argument("--limit", type=positive_int, default=20, help="runs to list at most")
    listing.add_argument(
        "--meta",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only runs whose metadata has this value (compared as text); repeatable: all must hold",
    )
    listing.add_argument(
        "--tag",
        metavar="WORD",
        action="append",
        default=[],
        help="only runs with this tag; repeatable",
    )
    listing.add_argument(
        "--procedure", metavar="NAME", default=None, help="only runs of this procedure, e.g. drift"
    )
    _add_json(listing)
    show = _command(
        runs_commands, "show", "one run: its record and its result tables (--events: its events)"
    )
    show.add_argument("id", type=positive_int, help="run id")
    show.add_argument(
        "--events", action="store_true", help="the raw stream of events instead of the results"
    )
    _add_json(show)
    tag = _command(
        runs_commands, "tag", "label a recorded run: add or remove tags, set metadata or its note"
    )
    tag.add_argument("id", type=positive_int, help="run id")
    tag.add_argument("tags", nargs="*", metavar="WORD", help="tags to add")
    tag.add_argument(
        "--remove", metavar="WORD", action="append", default=[], help="a tag to remove; repeatable"
    )
    tag.add_argument(
        "--meta",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set a metadata value (KEY= removes it); repeatable",
    )
    tag.add_argument("--note", metavar="TEXT", default=None, help="replace the run's note")
    _add_json(tag)
    export = _command(
        runs_commands,
        "export",
        "write a run's tables, self-describing: NetCDF-4 (HDF5), Parquet or CSV; or the run as "
        "bluesky event-model documents",
    )
    export.add_argument("id", type=positive_int, help="run id")
    export.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        required=True,
        help="netcdf: one .nc file, a group per table (hdf5: the same file, .h5); parquet and "
        "csv: a folder, one file per table; bluesky: JSON lines, [name, document] each",
    )
    export.add_argument(
        "--output",
        help="the file (netcdf, hdf5, bluesky) or folder (parquet, csv) (default: run-ID.nc, "
        "run-ID.h5, run-ID-parquet/, run-ID-csv/ or run-ID.bluesky.jsonl in this directory)",
    )
    plot = _command(
        runs_commands,
        "plot",
        "draw a run's figures (also of a run still being written) and print the files written",
    )
    plot.add_argument("id", type=positive_int, help="run id")
    plot.add_argument(
        "--figure", metavar="NAME", help="one figure by name, e.g. program-levels (default: all)"
    )
    plot.add_argument(
        "--output",
        help="a folder for all figures (NAME.png each), or with --figure a file: .png, .svg "
        "or .pdf (default: run-ID-figures/ in this directory)",
    )
    report = _command(
        runs_commands,
        "report",
        "write a run's report: one self-contained HTML file (figures embedded) and print its path",
    )
    report.add_argument("id", type=positive_int, help="run id")
    report.add_argument("--output", help="the .html file (default: run-ID.html in this directory)")
    delete = _command(
        runs_commands, "delete", "delete runs, their events and arrays (never a running run)"
    )
    delete.add_argument("ids", type=positive_int, nargs="+", metavar="ID", help="run ids")
    prune = _command(
        runs_commands,
        "prune",
        "delete the runs started longer ago than --older-than (never a running run)",
    )
    prune.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="e.g. 30d, 12h, 90m, 3600s",
    )
    vacuum = _command(
        runs_commands, "vacuum", "give the space of deleted runs back to the file system"
    )
    for parser in (listing, show, tag, export, plot, report, delete, prune, vacuum):
        _add_runs(parser)


def add_dashboard(commands) -> None:
    """``pcm-hil dashboard [ID]``."""
    dashboard = _command(
        commands, "dashboard", "watch a run live from another terminal, or look at a finished one"
    )
    dashboard.add_argument("id", type=positive_int, nargs="?", help="run id (default: the newest)")
    dashboard.add_argument("--once", action="store_true", help="draw once and return")
    dashboard.add_argument(
        "--tile",
        type=non_negative_int,
        default=None,
        help="the tile the conductance map shows (default: the tile of the newest values read)",
    )
    _add_runs(dashboard)
