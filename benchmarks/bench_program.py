"""Program-and-verify at scale: 1,048,576 devices (16 tiles of 256×256) to 16 levels.

Prints, side by side, the wall time in-process now and at the revision before issue #16's
speed work (``--before REV``, default ``baseline.BEFORE``; its library exported and run in a
process of its own by ``baseline.measure_at``), and over TCP (the emulator served by a
separate process, as a chip would be), split into emulator physics, protocol (encoding,
framing, the transport) and host algorithm (with one listener, as a recorded run has: the
start and end documents and the end's summary are built); with the precision reached beside
the published σ_prog. In-process figures are the best of ``--repeats`` runs in one process (the first pays
the imports and the first touch of every array).

    python benchmarks/bench_program.py [--tiles 16] [--seed 0] [--repeats 2] [--before REV]
                                       [--json]

Targets: ≤ 1.2 s in-process, with the host algorithm at most half the physics (issue #16);
TCP within 1.5× of in-process.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager

import baseline
import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.testing.serve import served_emulator

ROWS = COLUMNS = 256


class Timed:
    """A chip wrapper that adds up the time spent inside its calls."""

    def __init__(self, chip) -> None:
        self.chip = chip
        self.config = chip.config
        self.seconds = 0.0

    def _timed(self, name, *args):
        started = time.perf_counter()
        try:
            return getattr(self.chip, name)(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def pulse(self, *args):
        return self._timed("pulse", *args)

    def read(self, *args):
        return self._timed("read", *args)

    def read_tile(self, *args):
        return self._timed("read_tile", *args)

    def time(self):  # the chip's clock, for program-and-verify's settle wait
        return self._timed("time")

    def clock_mode(self):
        return self._timed("clock_mode")

    def advance(self, seconds):
        return self._timed("advance", seconds)


@contextmanager
def physics_timer(chip):
    """Time spent in the emulated chip's physics (pulses and reads), in-process only."""
    spent = {"s": 0.0}
    originals = {name: getattr(chip, name) for name in ("pulse", "read_tile", "read_devices")}

    def wrap(function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["s"] += time.perf_counter() - started

        return timed

    for name, function in originals.items():
        setattr(chip, name, wrap(function))
    try:
        yield spent
    finally:
        for name, function in originals.items():
            setattr(chip, name, function)


def plan(tiles: int):
    n = ROWS * COLUMNS
    targets = level_targets(16, 25.0)[np.arange(n) % 16]
    return np.repeat(np.arange(tiles), n), np.tile(np.arange(n), tiles), np.tile(targets, tiles)


def run(driver, tiles: int):
    tile_of, addresses, targets = plan(tiles)
    timed = Timed(driver)
    documents: list = []  # one listener, as a recorded run has: the documents are built
    started = time.perf_counter()
    result = program_and_verify(timed, tile_of, addresses, targets, listeners=[documents.append])
    wall = time.perf_counter() - started
    return result, wall, timed.seconds


def in_process(tiles: int, seed: int) -> dict:
    chip = make_chip("default", seed, tiles=tiles)
    driver = PcmChip(InProcessTransport("emulator", WireInterface(chip)))
    with physics_timer(chip) as physics:
        result, wall, in_chip = run(driver, tiles)
    return {
        "result": result,
        "wall_s": wall,
        "physics_s": physics["s"],
        "protocol_s": in_chip - physics["s"],
        "host_s": wall - in_chip,
    }


def in_process_figures(tiles: int, seed: int, repeats: int) -> dict:
    """The best of ``repeats`` in-process runs (by wall time), as plain numbers: what
    ``baseline.measure_at`` carries back from an earlier revision."""
    runs = [in_process(tiles, seed) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    summary = best["result"].summary()
    return {
        **{k: v for k, v in best.items() if k != "result"},
        "converged_fraction": summary["converged_fraction"],
        "iterations_mean": summary["iterations_mean"],
    }


def over_tcp(tiles: int, seed: int) -> dict:
    options = ("--seed", str(seed), "--tiles", str(tiles), "--rows", str(ROWS), "--columns", str(COLUMNS))  # fmt: skip
    with served_emulator(*options) as served, PcmChip.open(served.resource, timeout_s=60) as driver:
        result, wall, in_chip = run(driver, tiles)
    return {"result": result, "wall_s": wall, "chip_calls_s": in_chip, "host_s": wall - in_chip}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", default=baseline.BEFORE, help="the revision to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    before = baseline.measure_at(
        args.before, "bench_program", "in_process_figures", args.tiles, args.seed, args.repeats
    )
    runs = [in_process(args.tiles, args.seed) for _ in range(args.repeats)]
    local = min(runs, key=lambda r: r["wall_s"])
    remote = over_tcp(args.tiles, args.seed)
    same = all(
        np.array_equal(getattr(local["result"], k), getattr(remote["result"], k))
        for k in ("converged", "iterations", "final_uS")
    )
    summary = local["result"].summary()
    report = {
        "devices": summary["devices"],
        "before": {"revision": baseline.revision(args.before), **before},
        "in_process": {k: v for k, v in local.items() if k != "result"},
        "tcp": {k: v for k, v in remote.items() if k != "result"},
        "tcp_over_in_process": remote["wall_s"] / local["wall_s"],
        "identical_results": same,
        "converged_fraction": summary["converged_fraction"],
        "iterations_mean": summary["iterations_mean"],
        "iterations_p99": summary["iterations_p99"],
        "levels": [
            {
                k: level[k]
                for k in (
                    "target_uS",
                    "error_mean_uS",
                    "error_std_uS",
                    "read_noise_uS",
                    "programmed_spread_uS",
                    "published_sigma_uS",
                    "converged_fraction",
                )
            }
            for level in summary["levels"]
        ],
    }
    if args.json:
        print(json.dumps(report))
        return 0
    console = Console()
    table = Table(title=f"Program-and-verify of {summary['devices']:,} devices to 16 levels")
    for column in ("", "wall s", "physics s", "protocol s", "host algorithm s", "target"):
        table.add_column(column, justify="right")
    now = local
    host_ok = now["host_s"] <= 0.5 * now["physics_s"]
    table.add_row(
        f"in-process, before ({report['before']['revision']})",
        f"{before['wall_s']:.2f}",
        f"{before['physics_s']:.2f}",
        f"{before['protocol_s']:.2f}",
        f"{before['host_s']:.2f}",
        "",
    )
    table.add_row(
        f"in-process, now ({baseline.revision()})",
        f"{now['wall_s']:.2f}",
        f"{now['physics_s']:.2f}",
        f"{now['protocol_s']:.2f}",
        f"{now['host_s']:.2f}",
        ("≤ 1.2 s met" if now["wall_s"] <= 1.2 else "≤ 1.2 s NOT met")
        + (", host ≤ ½ physics met" if host_ok else ", host ≤ ½ physics NOT met"),
    )
    table.add_row(
        "now / before",
        *(f"{now[k] / before[k]:.2f}×" for k in ("wall_s", "physics_s", "protocol_s", "host_s")),
        "",
    )
    table.add_row(
        "TCP, now",
        f"{remote['wall_s']:.2f}",
        "(server)",
        f"{remote['chip_calls_s']:.2f} incl. physics",
        f"{remote['host_s']:.2f}",
        f"{report['tcp_over_in_process']:.2f}× in-process (≤ 1.5× "
        + ("met" if report["tcp_over_in_process"] <= 1.5 else "NOT met")
        + ")",
    )
    console.print(table)
    console.print(
        f"in-process: best of {args.repeats} runs in one process. Converged "
        f"{summary['converged_fraction']:.2%} (before {before['converged_fraction']:.2%}), "
        f"iterations mean {summary['iterations_mean']:.1f} (before "
        f"{before['iterations_mean']:.1f}), p99 {summary['iterations_p99']:.0f}; identical "
        f"results in-process and over TCP: {same}"
    )
    levels = Table(
        title="Programmed spread per level (20 s after programming) vs the published σ_prog"
    )
    for column in (
        "target µS",
        "bias µS",
        "error std µS",
        "read noise µS",
        "spread µS",
        "published σ µS",
        "spread / σ",
        "converged",
    ):
        levels.add_column(column, justify="right")
    for level in summary["levels"]:
        levels.add_row(
            f"{level['target_uS']:.2f}",
            f"{level['error_mean_uS']:+.3f}",
            f"{level['error_std_uS']:.3f}",
            f"{level['read_noise_uS']:.3f}",
            f"{level['programmed_spread_uS']:.3f}",
            f"{level['published_sigma_uS']:.3f}",
            f"{level['programmed_spread_uS'] / level['published_sigma_uS']:.2f}",
            f"{level['converged_fraction']:.2%}",
        )
    console.print(levels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
