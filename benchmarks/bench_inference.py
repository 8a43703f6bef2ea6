"""Chip-in-the-loop inference speed, and the time of the accuracy-vs-time experiment.

Prints side by side, for the MLP and the small CNN on the digits test set: images/s in plain
numpy float32, on the embedded emulator (in-process) and on the emulator served over TCP by a
separate process, with the ratios; and the wall time of one full experiment (3 chips, 1 s …
1 year, plain and noise-aware weights, every compensation), as ``pcm-hil infer`` runs it.

    python benchmarks/bench_inference.py [--json] [--skip-experiment]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.analog.inference import TIMES_S, drift_experiment
from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.analog.recipes import NOISE_ETA, trained
from pcm_hil.drivers import PcmChip
from pcm_hil.nn.data import load_digits_split
from pcm_hil.testing.serve import served_emulator


def float32_copy(network):
    """The network with float32 parameters: the plain-numpy baseline."""
    import copy

    clone = copy.deepcopy(network)
    for layer in clone.layers:
        for name in ("weight", "bias", "gamma", "beta", "running_mean", "running_var"):
            if hasattr(layer, name):
                setattr(layer, name, getattr(layer, name).astype(np.float32))
    return clone


def images_per_s(run, images: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return images / best


def measure(name: str, data, skip_experiment: bool) -> dict:
    x_train, _y_train, x_test, y_test = data
    network = trained(name, data, noise_eta=NOISE_ETA)
    baseline = float32_copy(network)
    numpy_rate = images_per_s(lambda: baseline.accuracy(x_test, y_test, batch=1024), len(x_test))
    rates = {"numpy float32": numpy_rate}
    with PcmChip.open("emulator?seed=1") as chip:
        analog = AnalogNetwork(chip, network)
        analog.calibrate_inputs(x_train[:512])
        analog.program()
        rates["emulator in-process"] = images_per_s(
            lambda: network.accuracy(x_test, y_test, batch=1024, matmul=analog.matmul), len(x_test)
        )
    with served_emulator() as served, PcmChip.open(served.resource, timeout_s=60) as chip:
        analog = AnalogNetwork(chip, network)
        analog.calibrate_inputs(x_train[:512])
        analog.program()
        rates["emulator over TCP"] = images_per_s(
            lambda: network.accuracy(x_test, y_test, batch=1024, matmul=analog.matmul),
            len(x_test),
        )
    report = {"network": name, "images_per_s": rates}
    if not skip_experiment:
        started = time.perf_counter()
        plain = trained(name, data)
        fp = plain.accuracy(x_test, y_test)
        result = drift_experiment(
            lambda i: PcmChip.open(f"emulator?seed={i}"),
            {"plain": plain, "noise-aware": network},
            data,
            fp_accuracy=fp,
            times_s=TIMES_S,
            chips=3,
        )
        report["experiment_s"] = time.perf_counter() - started
        report["experiment_chip_s"] = result.elapsed_s
        report["fp_accuracy"] = fp
        report["points"] = result.points()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-experiment", action="store_true")
    args = parser.parse_args(argv)
    data = load_digits_split(seed=0)
    reports = [measure(name, data, args.skip_experiment) for name in ("mlp", "cnn")]
    if args.json:
        print(json.dumps(reports))
        return 0
    console = Console()
    table = Table(title="Inference on the 540 digits test images")
    for column in (
        "network",
        "numpy float32 img/s",
        "in-process img/s",
        "ratio",
        "TCP img/s",
        "ratio",
        "experiment s",
    ):
        table.add_column(column, justify="right")
    for r in reports:
        rate = r["images_per_s"]
        base = rate["numpy float32"]
        table.add_row(
            r["network"],
            f"{base:,.0f}",
            f"{rate['emulator in-process']:,.0f}",
            f"{rate['emulator in-process'] / base:.3f}",
            f"{rate['emulator over TCP']:,.0f}",
            f"{rate['emulator over TCP'] / base:.3f}",
            f"{r['experiment_s']:.1f}" if "experiment_s" in r else "—",
        )
    console.print(table)
    console.print(
        "ratio: chip-in-the-loop images/s over plain numpy float32 (the emulator computes the "
        "device physics of every product); experiment: training both weight sets, then 3 chips × "
        "5 times × every compensation."
    )
    for r in reports:
        if "points" not in r:
            continue
        curve = Table(title=f"{r['network']}: accuracy − software ({r['fp_accuracy']:.2%}), points")
        curve.add_column("weights")
        curve.add_column("compensation")
        times = sorted({p["t_s"] for p in r["points"]})
        for t in times:
            curve.add_column(f"{t:g} s", justify="right")
        rows: dict = {}
        for p in r["points"]:
            rows.setdefault((p["weights"], p["compensation"]), {})[p["t_s"]] = p
        for key, by_t in sorted(rows.items()):
            curve.add_row(
                *key,
                *(f"{100 * (by_t[t]['accuracy_mean'] - r['fp_accuracy']):+.2f}" for t in times),
            )
        console.print(curve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
