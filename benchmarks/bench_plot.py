"""How long a run's figures take: ``pcm-hil runs plot`` on a 1,048,576-device program-and-verify
(16 tiles of 256×256 to 16 levels, recorded as the CLI records it).

Prints, side by side: the recorded run (its wall time, the store's size), ``runs plot`` as a
command (a fresh process: imports included), and in-process the figures drawn from the store
(reading the documents, drawing, writing PNG), each as a ratio of the programming time.

    python benchmarks/bench_plot.py [--tiles 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pcm_hil.cli.main import main as cli
from pcm_hil.figures import figures_of, save_figures
from pcm_hil.records.store import RunStore


def measure(tiles: int, seed: int, folder: Path) -> list[tuple[str, float, str]]:
    store = folder / "runs.sqlite"
    devices = 256 * 256
    tile_list = ",".join(str(t) for t in range(tiles))
    started = time.perf_counter()
    argv = ["program", "--resource", f"emulator?tiles={tiles}&seed={seed}", "--tiles", tile_list]
    argv += ["--devices", str(devices), "--levels", "16", "--runs", str(store), "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):  # the run's JSON summary is not wanted
        status = cli([*argv, "--json"])
    if status != 0:
        raise SystemExit("programming failed")
    programmed = time.perf_counter() - started
    size = store.stat().st_size + sum(p.stat().st_size for p in folder.glob("runs.sqlite-*"))
    rows = [
        (
            "program-and-verify, recorded",
            programmed,
            f"{tiles * devices:,} devices, store {size / 2**20:.0f} MiB",
        )
    ]

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pcm_hil.cli", "runs", "plot", "1", "--runs", str(store),
         "--output", str(folder / "plots")],
        check=True, capture_output=True,
    )  # fmt: skip
    rows.append(
        ("runs plot 1 (a fresh process)", time.perf_counter() - started, "all figures, PNG")
    )

    started = time.perf_counter()
    with RunStore(store, readonly=True) as runs:
        documents = [event.document for event in runs.events(1)]
    read = time.perf_counter() - started
    rows.append(("  read the run's documents", read, f"{len(documents)} documents"))
    started = time.perf_counter()
    figures = figures_of(documents)
    rows.append(("  draw the figures", time.perf_counter() - started, ", ".join(figures)))
    started = time.perf_counter()
    save_figures(figures, folder / "plots")
    rows.append(("  write them as PNG", time.perf_counter() - started, ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(args.tiles, args.seed, Path(folder))
    table = Table(title="Figures of a program-and-verify run")
    for column in ("step", "wall time, s", "÷ programming", "notes"):
        table.add_column(column)
    programming = rows[0][1]
    for step, seconds, note in rows:
        table.add_row(step, f"{seconds:.2f}", f"{seconds / programming:.2f}", note)
    Console().print(table)


if __name__ == "__main__":
    main()
