"""Chip-in-the-loop inference speed, and the time of the accuracy-vs-time experiment — now and
at the revision before issue #16's speed work, in one run.

Prints side by side, for the MLP and the small CNN on the digits test set: images/s in plain
numpy float32, on the embedded emulator (in-process) and on the emulator served over TCP by a
separate process, with the ratios; and the time of the accuracy-vs-time experiment (3 chips,
1 s … 1 year, plain and noise-aware weights, every compensation) as ``pcm-hil infer`` runs it:
programming, the drift waits, every evaluation — the two trainings apart. Each figure twice:
at ``--before REV`` (default ``baseline.BEFORE``: its library exported and run in a process of
its own by ``baseline.measure_at``) and now. Both use this file's measurement code; each
revision's own inference path (now: the software around the products in float32,
``inference.in_float32``; before: as the network came, float64).

    python benchmarks/bench_inference.py [--before REV] [--skip-experiment] [--json]

Targets (issue #16): in-process at ≥ 0.2× numpy for the MLP and ≥ 0.5× for the CNN; the MLP
experiment at least 3× faster than before.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import baseline
import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.analog import inference
from pcm_hil.analog.inference import TIMES_S, drift_experiment
from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.analog.recipes import NOISE_ETA, trained
from pcm_hil.drivers import PcmChip
from pcm_hil.nn.data import load_digits_split
from pcm_hil.testing.serve import served_emulator

NETWORKS = ("mlp", "cnn")


def float32_copy(network):
    """The network with float32 parameters: the plain-numpy baseline."""
    clone = copy.deepcopy(network)
    for layer in clone.layers:
        for name in ("weight", "bias", "gamma", "beta", "running_mean", "running_var"):
            if hasattr(layer, name):
                setattr(layer, name, getattr(layer, name).astype(np.float32))
    return clone


def images_per_s(run, images: int, repeats: int = 10) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return images / best


def _on_chip(chip, network, x_train) -> AnalogNetwork:
    """Programmed and ready as this revision's ``drift_experiment`` evaluates."""
    analog = AnalogNetwork(chip, network)
    analog.calibrate_inputs(x_train[:512])
    analog.program()
    if hasattr(inference, "in_float32"):  # now; before, the network as it came
        analog.network = inference.in_float32(network)
    return analog


def rates(name: str) -> dict:
    """Images/s of one pass over the 540 test images (best of 10): numpy float32, in-process, TCP."""
    data = load_digits_split(seed=0)
    x_train, _y_train, x_test, y_test = data
    network = trained(name, data, noise_eta=NOISE_ETA)
    baseline_network = float32_copy(network)
    found = {
        "numpy float32": images_per_s(
            lambda: baseline_network.accuracy(x_test, y_test, batch=1024), len(x_test)
        )
    }
    with PcmChip.open("emulator?seed=1") as chip:
        analog = _on_chip(chip, network, x_train)
        found["in-process"] = images_per_s(
            lambda: inference.evaluate(analog, x_test, y_test, batch=1024), len(x_test)
        )
    with served_emulator() as served, PcmChip.open(served.resource, timeout_s=60) as chip:
        analog = _on_chip(chip, network, x_train)
        found["TCP"] = images_per_s(
            lambda: inference.evaluate(analog, x_test, y_test, batch=1024), len(x_test)
        )
    return found


def experiment(name: str) -> dict:
    """The accuracy-vs-time experiment: its time (s) without the trainings, and its points."""
    data = load_digits_split(seed=0)
    _x_train, _y_train, x_test, y_test = data
    started = time.perf_counter()
    networks = {
        "plain": trained(name, data),
        "noise-aware": trained(name, data, noise_eta=NOISE_ETA),
    }
    training_s = time.perf_counter() - started
    fp = networks["plain"].accuracy(x_test, y_test)
    started = time.perf_counter()
    result = drift_experiment(
        lambda i: PcmChip.open(f"emulator?seed={i}"),
        networks,
        data,
        fp_accuracy=fp,
        times_s=TIMES_S,
        chips=3,
    )
    return {
        "experiment_s": time.perf_counter() - started,
        "training_s": training_s,
        "fp_accuracy": fp,
        "points": result.points(),
    }


def measure(names: tuple[str, ...], with_experiment: bool) -> dict:
    """Every figure of this revision: rates per network, the experiment per network."""
    found: dict = {"rates": {name: rates(name) for name in names}}
    if with_experiment:
        found["experiment"] = {name: experiment(name) for name in names}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=baseline.BEFORE, help="the revision to compare with")
    parser.add_argument("--skip-experiment", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with_experiment = not args.skip_experiment
    before = baseline.measure_at(
        args.before, "bench_inference", "measure", NETWORKS, with_experiment
    )
    now = measure(NETWORKS, with_experiment)
    revisions = {"before": baseline.revision(args.before), "now": baseline.revision()}
    if args.json:
        print(json.dumps({"revisions": revisions, "before": before, "now": now}))
        return 0
    console = Console()
    table = Table(title="Inference on the 540 digits test images, images/s (ratio to numpy)")
    for column in ("network", "revision", "numpy float32", "in-process", "TCP", "target"):
        table.add_column(column, justify="right")
    targets = {"mlp": 0.2, "cnn": 0.5}
    for name in NETWORKS:
        for label, figures in (("before", before), ("now", now)):
            rate = figures["rates"][name]
            base = rate["numpy float32"]
            ratio = rate["in-process"] / base
            met = "met" if ratio >= targets[name] else "NOT met"
            table.add_row(
                name,
                f"{label} ({revisions[label]})",
                f"{base:,.0f}",
                f"{rate['in-process']:,.0f} ({ratio:.3f})",
                f"{rate['TCP']:,.0f} ({rate['TCP'] / base:.3f})",
                f"≥ {targets[name]} {met}" if label == "now" else "",
            )
    console.print(table)
    if not with_experiment:
        return 0
    timing = Table(title="Accuracy vs time: 3 chips × 5 times × 2 weight sets, every compensation")
    for column in ("network", "before s", "now s", "before / now", "trainings s (now)"):
        timing.add_column(column, justify="right")
    for name in NETWORKS:
        b, n = before["experiment"][name], now["experiment"][name]
        timing.add_row(
            name,
            f"{b['experiment_s']:.2f}",
            f"{n['experiment_s']:.2f}",
            f"{b['experiment_s'] / n['experiment_s']:.2f}×"
            + (" (≥ 3× " + ("met)" if b["experiment_s"] >= 3 * n["experiment_s"] else "NOT met)"))
            * (name == "mlp"),
            f"{n['training_s']:.2f}",
        )
    console.print(timing)
    for name in NETWORKS:
        result = now["experiment"][name]
        curve = Table(
            title=f"{name}: accuracy − software ({result['fp_accuracy']:.2%}), points; "
            "before's in brackets"
        )
        curve.add_column("weights")
        curve.add_column("compensation")
        times = sorted({p["t_s"] for p in result["points"]})
        for t in times:
            curve.add_column(f"{t:g} s", justify="right")
        rows: dict = {}
        for label in ("now", "before"):
            fp = (now if label == "now" else before)["experiment"][name]["fp_accuracy"]
            for p in (now if label == "now" else before)["experiment"][name]["points"]:
                key = (p["weights"], p["compensation"])
                rows.setdefault(key, {}).setdefault(p["t_s"], {})[label] = 100 * (
                    p["accuracy_mean"] - fp
                )
        for key, by_t in sorted(rows.items()):
            curve.add_row(
                *key,
                *(
                    f"{by_t[t].get('now', float('nan')):+.2f} "
                    f"[{by_t[t].get('before', float('nan')):+.2f}]"
                    for t in times
                ),
            )
        console.print(curve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
