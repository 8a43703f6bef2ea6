"""The digital twin end to end: what the characterization campaign costs, and how well the fit
recovers a chip — printed side by side in one run.

1. **The campaign's cost.** ``pcm-hil characterize campaign`` on the embedded emulator
   (profile ``small``, default plan), for ``--devices`` per measurement: its wall time here,
   and what it sends — commands, pulses, reads, and the chip-clock time it waits (each
   read ``settle_s`` after its pulse; the drift reads out to ``drift_end_s``). From these, the
   time on a real chip, with the per-operation costs stated (``--command-ms``, ``--pulse-us``,
   ``--read-us``: a SCPI round trip, one device's pulse and one device's read, serial).
2. **Recovery.** For each of ``--seeds`` chips whose device model is the default with every
   fitted parameter scaled by a factor in 0.7…1.3 (seeded), the campaign (768 devices per
   measurement) and ``twin fit``: how many parameters were fitted and kept, and those fitted
   but not within ±10% or three stated uncertainties of the truth.
3. **Twin against chip.** For the first ``--compare`` seeds, ``twin compare`` on 128×128
   tiles (2,048 devices per level, 8 levels): the range over levels of twin/chip of the
   program-and-verify error std, ν mean and std, and read noise.

    python benchmarks/bench_twin.py [--devices 256 768] [--seeds 16] [--compare 6] [--json]
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
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.records.store import RunStore
from pcm_hil.twin.campaign import Campaign, run_campaign
from pcm_hil.twin.compare import ComparePlan, compare
from pcm_hil.twin.fit import fit_twin, perturbed


class Counted:
    """A chip that counts what is sent to it: commands, devices pulsed and read, clock
    time advanced."""

    def __init__(self, chip: PcmChip) -> None:
        self._chip = chip
        self.commands = self.pulsed = self.read_devices = 0
        self.pulse_commands = self.read_commands = 0
        self.advanced_s = 0.0

    def __getattr__(self, name: str):
        return getattr(self._chip, name)

    def pulse(self, tile, addresses, amplitude_uA, width_ns):
        self.commands += 1
        self.pulse_commands += 1
        self.pulsed += int(np.size(addresses))
        return self._chip.pulse(tile, addresses, amplitude_uA, width_ns)

    def read(self, tile, addresses):
        self.commands += 1
        self.read_commands += 1
        self.read_devices += int(np.size(addresses))
        return self._chip.read(tile, addresses)

    def read_tile(self, tile):
        self.commands += 1
        self.read_commands += 1
        self.read_devices += int(self._chip.config.devices_per_tile)
        return self._chip.read_tile(tile)

    def advance(self, seconds):
        self.commands += 1
        self.advanced_s += float(seconds)
        return self._chip.advance(seconds)


def opened(model: PcmModel = DEFAULT_MODEL, seed: int = 0, **geometry) -> PcmChip:
    chip = make_chip("small", seed=seed, model=model, **geometry)
    return PcmChip(InProcessTransport("emulator", WireInterface(chip)))


def campaign_cost(devices: int, args: argparse.Namespace) -> dict:
    plan = Campaign(devices=devices)
    chip = Counted(opened(seed=1))
    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder) / "runs.sqlite") as store:
        started = time.perf_counter()
        ids = run_campaign(chip, plan, store=store)
        wall = time.perf_counter() - started
    assert len(ids) == 5
    waits = chip.advanced_s
    operations = (
        chip.commands * args.command_ms / 1e3
        + chip.pulsed * args.pulse_us / 1e6
        + chip.read_devices * args.read_us / 1e6
    )
    # the drift reads' own schedule overlaps nothing: the chip waits them out; the settle
    # waits of every other measurement add up
    return {
        "devices": devices,
        "wall_s": wall,
        "commands": chip.commands,
        "pulse_commands": chip.pulse_commands,
        "read_commands": chip.read_commands,
        "devices_pulsed": chip.pulsed,
        "devices_read": chip.read_devices,
        "clock_waits_s": waits,
        "drift_end_s": plan.drift_end_s,
        "settle_waits_s": waits - plan.drift_end_s,
        "operations_s": operations,
        "real_chip_s": waits + operations,
    }


def recovery(seed: int) -> dict:
    model = perturbed(seed)
    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder) / "runs.sqlite") as store:
        ids = run_campaign(opened(model, seed), Campaign(devices=768), store=store)
        twin = fit_twin(ids, store=store)
    missed = {}
    for name, e in twin.estimates.items():
        true = getattr(model, name)
        if name not in twin.kept and abs(e.value - true) > max(0.1 * abs(true), 3 * e.uncertainty):
            missed[name] = {"true": true, "fitted": e.value, "uncertainty": e.uncertainty}
    return {"seed": seed, "model": model, "twin": twin, "missed": missed}


def comparison(found: dict) -> dict:
    seed, model, twin = found["seed"], found["model"], found["twin"]
    big = {"rows": 128, "columns": 128}
    result = compare(
        opened(model, 100 + seed, **big), opened(twin.model, 200 + seed, **big), ComparePlan(16384)
    )
    quantities = ("program error std µS", "ν mean", "ν std", "read noise (relative)")
    return {
        q: (min(r.ratio for r in result.of(q)), max(r.ratio for r in result.of(q)))
        for q in quantities
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--compare", type=int, default=6)
    parser.add_argument("--command-ms", type=float, default=2.0)
    parser.add_argument("--pulse-us", type=float, default=1.0)
    parser.add_argument("--read-us", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    costs = [campaign_cost(n, args) for n in args.devices]
    found = [recovery(seed) for seed in range(1, args.seeds + 1)]
    compared = {f["seed"]: comparison(f) for f in found[: args.compare]}
    if args.json:
        print(
            json.dumps(
                {
                    "campaign": costs,
                    "recovery": [
                        {
                            "seed": f["seed"],
                            "fitted": len(f["twin"].fitted),
                            "kept": sorted(f["twin"].kept),
                            "missed": f["missed"],
                        }
                        for f in found
                    ],
                    "compare": compared,
                }
            )
        )
        return
    console = Console()
    table = Table(title="The characterization campaign: here, and on a real chip (estimated)")
    for column in ("devices/measurement", *(str(c["devices"]) for c in costs)):
        table.add_column(column, justify="right")
    rows = [
        ("wall time here (emulator, in-process)", lambda c: f"{c['wall_s']:.2f} s"),
        ("commands (pulse / read)", lambda c: f"{c['pulse_commands']} / {c['read_commands']}"),
        ("device pulses", lambda c: f"{c['devices_pulsed']:,}"),
        ("device reads", lambda c: f"{c['devices_read']:,}"),
        (
            "waits: settle (each read t0 after its pulse)",
            lambda c: f"{c['settle_waits_s'] / 3600:.2f} h",
        ),
        ("waits: drift, to its last read", lambda c: f"{c['drift_end_s'] / 86400:.1f} d"),
        (
            f"operations ({args.command_ms:g} ms/command, {args.pulse_us:g} µs/pulse, "
            f"{args.read_us:g} µs/read)",
            lambda c: f"{c['operations_s']:.1f} s",
        ),
        ("real chip, in all", lambda c: f"{c['real_chip_s'] / 86400:.2f} d"),
        (
            "real chip, without the drift's wait",
            lambda c: f"{(c['real_chip_s'] - c['drift_end_s']) / 3600:.2f} h",
        ),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(c) for c in costs))
    console.print(table)

    table = Table(title=f"Recovery of {len(found)} perturbed chips (±10% or 3 uncertainties)")
    for column in ("seed", "fitted", "kept", "missed", "compare: twin/chip ranges over 8 levels"):
        table.add_column(column)
    for f in found:
        ranges = compared.get(f["seed"])
        text = (
            "; ".join(f"{q} {lo:.2f}–{hi:.2f}" for q, (lo, hi) in ranges.items()) if ranges else ""
        )
        missed = ", ".join(
            f"{n} {m['fitted']:.3g}±{m['uncertainty']:.2g} (true {m['true']:.3g})"
            for n, m in f["missed"].items()
        )
        table.add_row(
            str(f["seed"]),
            str(len(f["twin"].fitted)),
            ", ".join(sorted(f["twin"].kept)),
            missed,
            text,
        )
    console.print(table)
    recovered = sum(not f["missed"] for f in found)
    console.print(f"{recovered} of {len(found)} chips: every fitted parameter recovered")


if __name__ == "__main__":
    main()
