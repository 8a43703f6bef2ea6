"""``pcm-hil runs plot`` and ``--plot DIR``: a run's figures (``pcm_hil.figures``), drawn from
the run store, written as files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pcm_hil.records.store import RunStore


def plot_run(args: argparse.Namespace, store: RunStore) -> int:
    """``pcm-hil runs plot ID [--figure NAME] [--output PATH]``: write the run's figures
    (into ``run-ID-figures/`` unless told) and print each path written."""
    from pcm_hil.figures import run_figures

    store.run(args.id)  # an unknown run is one line
    figures = run_figures(store, args.id)
    if not figures:
        raise ValueError(f"run {args.id} holds nothing to draw yet")
    output = Path(args.output) if args.output else Path(f"run-{args.id}-figures")
    for path in write(figures, output, args.figure):
        print(path)
    return 0


def plot_after(args: argparse.Namespace, run_id: int) -> list[Path]:
    """``--plot DIR`` on a procedure: its run's figures, into DIR, once it has ended."""
    from pcm_hil.figures import run_figures

    with RunStore(args.runs, readonly=True) as store:
        figures = run_figures(store, run_id)
    return write(figures, Path(args.plot))


def check_plot_folder(args: argparse.Namespace) -> None:
    """Refuse a ``--plot`` folder that cannot be made, and a ``--report`` file that cannot be
    written, before anything runs."""
    report = getattr(args, "report", None)
    if report is not None:
        from pcm_hil.report import check_report_path

        try:
            check_report_path(Path(report))
        except ValueError as error:
            raise ValueError(f"--report {error}") from None
    folder = getattr(args, "plot", None)
    if folder is None:
        return
    path = Path(folder)
    if path.suffix or (path.exists() and not path.is_dir()):
        raise ValueError(f"--plot {folder}: the figures of a run go into a folder, not a file")
    _writable_folder(path if path.exists() else path.parent, f"--plot {folder}")


def _writable_folder(folder: Path, option: str) -> None:
    """Refuse a folder that does not exist or cannot be written in."""
    if not folder.resolve().is_dir():
        raise ValueError(f"{option}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write in {folder}")


def write(figures, output: Path, only: str | None = None) -> list[Path]:
    """Save figures (``pcm_hil.figures.save_figures``), making the folder if needed."""
    from pcm_hil.figures import save_figures

    folder = output.parent if output.suffix else output
    if not (folder if folder.exists() else folder.parent).resolve().is_dir():
        raise ValueError(f"{output}: the folder {folder.parent} does not exist")
    if not output.suffix:
        output.mkdir(exist_ok=True)
    try:
        return save_figures(figures, output, only)
    finally:
        for figure in figures.values():
            figure.clear()  # free the figures' memory at once: a run may have many
