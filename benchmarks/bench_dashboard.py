"""What the live dashboard costs a procedure: program-and-verify of 4 tiles of 256×256
(262,144 devices, 16 levels, ``emulator?seed=0`` in-process) with and without the
``LiveDashboard`` listener, side by side.

The dashboard draws to a terminal of the given size(s): by default a null file that rich
treats as a true-colour terminal (the cost of laying out and encoding frames, not of a
terminal emulator painting them); ``--tty`` draws on this terminal instead. Each
configuration runs ``--repeat`` times on a fresh chip, interleaved; medians are compared.
Also reported: the cost of ``DashboardState.update`` per event (µs; the tests check what
keeps it low, that it stores arrays by reference and does no array work) and of drawing a
plain-text frame of the final state.

    python benchmarks/bench_dashboard.py [--tiles 4] [--repeat 9] [--size 80x24 --size 160x48]
                                         [--tty] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.documents.program import ProgramStart
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.ui.dashboard import DashboardState, LiveDashboard, render_text


def plan(chip, tiles: int):
    n = chip.config.devices_per_tile
    targets = level_targets(16, chip.config.g_max_uS)[np.arange(n) % 16]
    return np.repeat(np.arange(tiles), n), np.tile(np.arange(n), tiles), np.tile(targets, tiles)


def one_run(seed: int, tiles: int, size: tuple[int, int] | None, tty: bool) -> dict:
    """One program-and-verify on a fresh chip; with the dashboard when ``size`` is given."""
    resource = f"emulator?seed={seed}"
    chip = PcmChip.open(resource)
    tile_of, addresses, targets = plan(chip, tiles)
    listeners, dashboard, sink = [], None, None
    if size is not None:
        if tty:
            console = Console(stderr=True)
        else:
            sink = open(os.devnull, "w")
            width, height = size
            console = Console(
                file=sink,
                width=width,
                height=height,
                force_terminal=True,
                color_system="truecolor",
            )
        dashboard = LiveDashboard(console)
        dashboard.set_run(None, resource, {"model": "PCM-EMULATOR", "serial": "EMU-0001"})
        listeners.append(dashboard)
    events = []
    listeners.append(events.append)
    started = time.perf_counter()
    try:
        result = program_and_verify(chip, tile_of, addresses, targets, listeners=listeners)
        if dashboard is not None:
            dashboard.close()
        wall = time.perf_counter() - started
    finally:
        chip.close()
        if sink is not None:
            sink.close()
    out = {
        "wall_s": wall,
        "events": len(events),
        "converged_fraction": float(result.converged.mean()),
        "_events": events,
    }
    if dashboard is not None:
        out.update(frames=dashboard.frames, draw_s=dashboard.draw_seconds)
    return out


def update_cost_us(events) -> float:
    """Mean cost of DashboardState.update per event, µs (no drawing)."""
    state = DashboardState()
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            state.update(event)
    return (time.perf_counter() - started) / (rounds * len(events)) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument(
        "--size",
        action="append",
        help="terminal size WxH for the dashboard (repeatable; default 80x24 and 160x48)",
    )
    parser.add_argument("--tty", action="store_true", help="draw on this terminal (stderr)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    args = parser.parse_args(argv)
    sizes = [
        tuple(int(v) for v in s.lower().split("x")) for s in (args.size or ["80x24", "160x48"])
    ]
    if args.tty:
        sizes = [tuple(Console(stderr=True).size)]
    configs: list[tuple[str, tuple[int, int] | None]] = [("none", None)]
    configs += [(f"{w}×{h}" + (" tty" if args.tty else ""), (w, h)) for w, h in sizes]
    runs: dict[str, list[dict]] = {name: [] for name, _ in configs}
    one_run(args.seed, args.tiles, None, False)  # warm-up: imports, caches
    for _ in range(args.repeat):
        for name, size in configs:
            runs[name].append(one_run(args.seed, args.tiles, size, args.tty))
    events = runs[configs[0][0]][0]["_events"]
    base = statistics.median(r["wall_s"] for r in runs[configs[0][0]])
    base_min = min(r["wall_s"] for r in runs[configs[0][0]])
    rows = []
    for name, size in configs:
        done = runs[name]
        wall = statistics.median(r["wall_s"] for r in done)
        row = {
            "configuration": name,
            "size": list(size) if size else None,
            "wall_s_median": wall,
            "wall_s_min": min(r["wall_s"] for r in done),
            "ratio": wall / base,
            "ratio_of_minima": min(r["wall_s"] for r in done) / base_min,
            "events": done[0]["events"],
        }
        if size is not None:
            row["frames_median"] = statistics.median(r["frames"] for r in done)
            row["draw_s_median"] = statistics.median(r["draw_s"] for r in done)
            row["draw_share"] = row["draw_s_median"] / wall
        rows.append(row)
    start = events[0].document  # program-and-verify's start: the devices it programs
    state = DashboardState()
    for event in events:
        state.update(event)
    frame_ms = {}
    for w, h in sizes:
        took = []
        for _ in range(5):
            started = time.perf_counter()
            render_text(state, w, h)
            took.append(time.perf_counter() - started)
        frame_ms[f"{w}x{h}"] = min(took) * 1e3
    report = {
        "devices": int(np.size(start.target_uS)) if isinstance(start, ProgramStart) else 0,
        "tiles": args.tiles,
        "repeat": args.repeat,
        "converged_fraction": runs[configs[0][0]][0]["converged_fraction"],
        "update_us_per_event": update_cost_us(events),
        "plain_frame_ms": frame_ms,
        "configurations": rows,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    console = Console()
    table = Table(
        title=f"Program-and-verify of {report['devices']:,} devices "
        f"({args.tiles} tiles), median of {args.repeat}"
    )
    columns = (
        "dashboard",
        "wall s",
        "min s",
        "ratio",
        "ratio of min",
        "frames",
        "drawing s",
        "share",
    )
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["configuration"],
            f"{row['wall_s_median']:.3f}",
            f"{row['wall_s_min']:.3f}",
            f"{row['ratio']:.3f}",
            f"{row['ratio_of_minima']:.3f}",
            f"{row['frames_median']:.0f}" if "frames_median" in row else "",
            f"{row['draw_s_median']:.3f}" if "draw_s_median" in row else "",
            f"{row['draw_share']:.1%}" if "draw_share" in row else "",
        )
    console.print(table)
    console.print(
        f"{rows[0]['events']} events; DashboardState.update {report['update_us_per_event']:.1f} µs "
        "per event; ratio: median wall with / without the dashboard (ratio of min: fastest "
        "with / fastest without); share: time in the dashboard's frames / wall; "
        "a plain-text frame of the final state: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in frame_ms.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
