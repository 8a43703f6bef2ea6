"""Recording a session: the cassette's size per MB of wire traffic, and what recording costs
the 1,048,576-device program-and-verify (16 tiles of 256×256, 16 levels) in-process — and what
replaying it costs, against the same run on the emulator.

Each wall time is the best of ``--repeats`` runs in one process (the cassette is removed
between them). The cassette is written to a temporary folder on the machine's disk.

    python benchmarks/bench_record.py [--tiles 16] [--repeats 3] [--json]

Target (issue #17): recording costs at most 10% of the program-and-verify.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.drivers import PcmChip
from pcm_hil.drivers.transports.recording import RecordingTransport
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.protocols.cassette import read_cassette

ROWS = COLUMNS = 256


def plan(tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = ROWS * COLUMNS
    targets = level_targets(16, 25.0)[np.arange(n) % 16]
    return np.repeat(np.arange(tiles), n), np.tile(np.arange(n), tiles), np.tile(targets, tiles)


def one_run(tiles: int, cassette: Path | None) -> tuple[float, object]:
    """Program-and-verify on a fresh seeded chip (recorded into ``cassette`` if given)."""
    transport = InProcessTransport("emulator", WireInterface(make_chip("default", 0, tiles=tiles)))
    driver = PcmChip(RecordingTransport.start(transport, cassette) if cassette else transport)
    tile_of, addresses, targets = plan(tiles)
    started = time.perf_counter()
    result = program_and_verify(driver, tile_of, addresses, targets)
    wall = time.perf_counter() - started
    driver.close()
    return wall, result


def replay_run(tiles: int, cassette: Path) -> float:
    driver = PcmChip.open(f"replay:{cassette}")
    tile_of, addresses, targets = plan(tiles)
    started = time.perf_counter()
    program_and_verify(driver, tile_of, addresses, targets)
    wall = time.perf_counter() - started
    assert driver.transport.remaining == 0
    driver.close()
    return wall


def measure(tiles: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cassette = Path(folder) / "session.cassette"
        plain, recorded, replayed = [], [], []
        for _ in range(repeats):
            plain.append(one_run(tiles, None)[0])
            cassette.unlink(missing_ok=True)
            wall, _result = one_run(tiles, cassette)
            recorded.append(wall)
            replayed.append(replay_run(tiles, cassette))
        tape = read_cassette(cassette)
        size = cassette.stat().st_size
    return {
        "devices": tiles * ROWS * COLUMNS,
        "plain_s": min(plain),
        "recorded_s": min(recorded),
        "replayed_s": min(replayed),
        "overhead": min(recorded) / min(plain) - 1,
        "records": len(tape.records),
        "wire_bytes": tape.wire_bytes,
        "cassette_bytes": size,
        "bytes_per_wire_mb": size / (tape.wire_bytes / 1e6),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    found = measure(args.tiles, args.repeats)
    if args.json:
        print(json.dumps(found))
        return 0
    console = Console()
    table = Table(title=f"Program-and-verify of {found['devices']:,} devices, in-process")
    for column in ("", "wall s", "vs plain", "target"):
        table.add_column(column, justify="right")
    table.add_row("on the emulator", f"{found['plain_s']:.2f}", "1.00", "")
    met = "met" if found["overhead"] <= 0.10 else "NOT met"
    table.add_row(
        "recorded",
        f"{found['recorded_s']:.2f}",
        f"{1 + found['overhead']:.2f}",
        f"≤ 1.10 {met}",
    )
    table.add_row(
        "replayed from the cassette",
        f"{found['replayed_s']:.2f}",
        f"{found['replayed_s'] / found['plain_s']:.2f}",
        "",
    )
    console.print(table)
    console.print(
        f"cassette: {found['cassette_bytes'] / 1e6:.1f} MB for {found['wire_bytes'] / 1e6:.1f} MB "
        f"of wire traffic in {found['records']:,} records — "
        f"{found['bytes_per_wire_mb'] / 1e6:.4f} MB per MB (blocks as binary, 17 bytes a record)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
