"""Programming a real network's weights: a trained MLP of ~1.06 million devices (continuous
targets, nearly one per device) programmed onto an in-process emulator, per million devices
and part by part — now and at the revision before issue #16's speed work, in one run.

The network: Dense(64, 1024) → ReLU → Dense(1024, 448) → ReLU → Dense(448, 10), trained on
the digits for 8 epochs (``pcm_hil.nn.train``, seed 0): 528,768 weights, 1,057,536 devices as
differential pairs on a default-profile chip of 32 tiles. ``AnalogNetwork.program`` with one
listener (as ``pcm-hil`` records a run: the documents and the run's summary are built).

The parts: emulator physics (pulses, reads, the GDC reference's MVMs), protocol (the chip
calls less the physics), bookkeeping (the device plan, the stuck devices' notes and the
run's summary for its end document) and the rest of the host algorithm (the documents'
arrays among it). Each revision's figures come from its own library (``baseline.measure_at``),
measured by this file's code.

    python benchmarks/bench_weights.py [--before REV] [--seed 0] [--json]

Targets (issue #16): ≤ 1.5 s per million devices, bookkeeping under 10% of it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from contextlib import ExitStack

import baseline
import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.nn.data import load_digits_split
from pcm_hil.nn.layers import Dense, Flatten, ReLU
from pcm_hil.nn.network import Network
from pcm_hil.nn.train import train
from pcm_hil.procedures import program as program_module

HIDDEN = (1024, 448)
TILES = 32
EPOCHS = 8


def network(seed: int) -> Network:
    """The MLP of HIDDEN, trained on the digits."""
    rng = np.random.default_rng(seed)
    sizes = (64, *HIDDEN, 10)
    layers: list = [Flatten()]
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(Dense(n_in, n_out, rng=rng))
        if k < len(HIDDEN):
            layers.append(ReLU())
    net = Network(layers)
    x_train, y_train, _x, _y = load_digits_split(seed=0)
    train(
        net, x_train, y_train, epochs=EPOCHS, lr=0.02, batch=64, rng=np.random.default_rng(seed + 1)
    )
    return net


class Stopwatch:
    """Seconds spent inside wrapped callables, by label (nested calls count once, outermost)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._depth = 0

    def wrap(self, owner, name: str, label: str, stack: ExitStack) -> None:
        function = getattr(owner, name)

        def timed(*args, **kwargs):
            if self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)
        stack.callback(setattr, owner, name, function)


def program_weights(seed: int) -> dict:
    """Program the trained MLP's weights; the time of each part, s."""
    net = network(seed)
    chip = make_chip("default", seed, tiles=TILES)
    driver = PcmChip(InProcessTransport("emulator", WireInterface(chip)))
    analog = AnalogNetwork(driver, net)
    x_train = load_digits_split(seed=0)[0]
    analog.calibrate_inputs(x_train[:512])
    chip_calls, physics, bookkeeping = Stopwatch(), Stopwatch(), Stopwatch()
    documents: list = []
    with ExitStack() as stack:
        for name in ("pulse", "read", "read_tile", "mvm", "time", "advance", "clock_mode"):
            chip_calls.wrap(driver, name, "chip", stack)
        for name in ("pulse", "read_tile", "read_devices", "mvm"):
            physics.wrap(chip, name, "physics", stack)
        bookkeeping.wrap(AnalogNetwork, "device_plan", "device plan", stack)
        bookkeeping.wrap(AnalogNetwork, "_note_stuck", "stuck notes", stack)
        bookkeeping.wrap(program_module.ProgramResult, "summary", "summaries", stack)
        started = time.perf_counter()
        result = analog.program(listeners=[documents.append])
        wall = time.perf_counter() - started
    devices = int(result.target_uS.size)
    in_chip = chip_calls.seconds.get("chip", 0.0)
    kept = bookkeeping.seconds
    booked = sum(kept.values())
    return {
        "devices": devices,
        "distinct_targets": int(np.unique(result.target_uS).size),
        "wall_s": wall,
        "physics_s": physics.seconds.get("physics", 0.0),
        "protocol_s": in_chip - physics.seconds.get("physics", 0.0),
        "bookkeeping_s": booked,
        "bookkeeping": kept,
        "host_s": wall - in_chip - booked,
        "converged_fraction": float(result.converged.mean()),
        "iterations_mean": float(result.iterations.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=baseline.BEFORE, help="the revision to compare with")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    before = baseline.measure_at(args.before, "bench_weights", "program_weights", args.seed)
    now = program_weights(args.seed)
    revisions = {"before": baseline.revision(args.before), "now": baseline.revision()}
    if args.json:
        print(json.dumps({"revisions": revisions, "before": before, "now": now}))
        return 0
    console = Console()
    million = now["devices"] / 1e6
    table = Table(
        title=f"Programming a trained MLP's weights: {now['devices']:,} devices, "
        f"{now['distinct_targets']:,} distinct targets; s per million devices"
    )
    for column in ("", "wall", "physics", "protocol", "host algorithm", "bookkeeping", "target"):
        table.add_column(column, justify="right")
    for label, figures in (("before", before), ("now", now)):
        per = {k: figures[k] / million for k in ("wall_s", "physics_s", "protocol_s", "host_s")}
        book = figures["bookkeeping_s"] / million
        share = figures["bookkeeping_s"] / figures["wall_s"]
        target = ""
        if label == "now":
            target = ("≤ 1.5 s met" if per["wall_s"] <= 1.5 else "≤ 1.5 s NOT met") + (
                ", bookkeeping < 10% met" if share < 0.1 else ", bookkeeping < 10% NOT met"
            )
        table.add_row(
            f"{label} ({revisions[label]})",
            f"{per['wall_s']:.2f}",
            f"{per['physics_s']:.2f}",
            f"{per['protocol_s']:.2f}",
            f"{per['host_s']:.2f}",
            f"{book:.2f} ({share:.0%})",
            target,
        )
    table.add_row(
        "now / before",
        *(
            f"{now[k] / before[k]:.2f}×"
            for k in ("wall_s", "physics_s", "protocol_s", "host_s", "bookkeeping_s")
        ),
        "",
    )
    console.print(table)
    parts = Table(title="Bookkeeping, s (whole run)")
    parts.add_column("part")
    parts.add_column("before", justify="right")
    parts.add_column("now", justify="right")
    for part in sorted(set(before["bookkeeping"]) | set(now["bookkeeping"])):
        parts.add_row(
            part,
            f"{before['bookkeeping'].get(part, 0.0):.3f}",
            f"{now['bookkeeping'].get(part, 0.0):.3f}",
        )
    console.print(parts)
    console.print(
        f"converged {now['converged_fraction']:.2%} (before {before['converged_fraction']:.2%}); "
        f"iterations mean {now['iterations_mean']:.1f} (before {before['iterations_mean']:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
