"""Chip-in-the-loop inference under drift: accuracy vs time after programming.

For each chip (seed) and each set of weights (plainly trained, noise-aware), the network is
programmed once; then at each time after programming the test set is classified with every
weight layer's product on the chip and everything else in software, without compensation,
with global drift compensation (GDC) and, where the network has batch norm, with GDC plus
batch-norm statistics recalibrated through the chip (AdaBS).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from pcm_hil.analog.network import AnalogNetwork, ChipNetwork
from pcm_hil.documents.analog import InferAccuracy, InferChip, InferEnd, InferStart
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.nn.network import Network, recalibrate_batchnorm
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import OpenedChip

DAY_S = 86400.0
#: 1 s, 1 hour, 1 day, 1 month (30 days), 1 year after programming.
TIMES_S = (1.0, 3600.0, DAY_S, 30 * DAY_S, 365 * DAY_S)


def evaluate(analog: AnalogNetwork, x: np.ndarray, y: np.ndarray, batch: int = 1024) -> float:
    """Accuracy (0…1) with every weight layer's product on the chip."""
    return analog.network.accuracy(x, y, batch=batch, matmul=analog.matmul)


def evaluate_with_recalibrated_batchnorm(
    analog: AnalogNetwork, x: np.ndarray, y: np.ndarray, x_calibration: np.ndarray
) -> float:
    """AdaBS: batch-norm statistics recomputed through the chip, then evaluated; the
    network's own statistics are left untouched."""
    original = analog.network
    recalibrated = copy.deepcopy(original)
    analog.network = recalibrated
    try:
        if isinstance(recalibrated, Network):
            recalibrate_batchnorm(recalibrated, x_calibration, matmul=analog.matmul)
        else:  # a torch model (pcm_hil.torch.TorchNetwork) recalibrates itself
            recalibrated.recalibrate_batchnorm(x_calibration, matmul=analog.matmul)  # type: ignore[attr-defined]
        return evaluate(analog, x, y)
    finally:
        analog.network = original


def in_float32(network: ChipNetwork) -> ChipNetwork:
    """The network to run around the chip's products: a numpy ``Network`` in float32 (the
    products come from 8-bit converters; float64 doubles what every layer moves — the bundled
    CNN's software part takes 1.5× as long), any other as it is."""
    return network.astype(np.float32) if isinstance(network, Network) else network


def has_batchnorm(network: ChipNetwork) -> bool:
    return bool(network.batchnorm_layers())


@dataclass
class DriftAccuracy:
    """Accuracies per (t, weights, compensation), one value per chip."""

    fp_accuracy: float
    times_s: tuple[float, ...]
    accuracies: dict[tuple[float, str, str], list[float]] = field(default_factory=dict)
    programming: list[dict] = field(default_factory=list)
    status: str = "completed"
    elapsed_s: float = 0.0

    def points(self) -> list[dict]:
        """One point per (t, weights, compensation): mean and std over chips."""
        return [
            {
                "t_s": t,
                "weights": weights,
                "compensation": compensation,
                "accuracy_mean": float(np.mean(values)),
                "accuracy_std": float(np.std(values)),
                "chips": len(values),
            }
            for (t, weights, compensation), values in sorted(self.accuracies.items())
        ]


def drift_experiment(
    open_chip: Callable[[int], OpenedChip],
    networks: dict[str, ChipNetwork],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    fp_accuracy: float,
    times_s: Iterable[float] = TIMES_S,
    chips: int = 3,
    calibration_images: int = 512,
    weight_percentile: float = 99.5,
    listeners: Iterable[Listener] = (),
) -> DriftAccuracy:
    """For chip 0…chips−1 (``open_chip(i)`` returns an open chip; it is closed here) and each
    named set of weights, program the network and measure accuracy at ``times_s`` after
    programming. ``data`` is (x_train, y_train, x_test, y_test); the training images calibrate
    input ranges and batch norm."""
    x_train, _y_train, x_test, y_test = data
    x_calibration = x_train[:calibration_images]
    times = tuple(float(t) for t in times_s)
    result = DriftAccuracy(fp_accuracy, times)
    emitter = Emitter(listeners, total=chips * len(networks) * len(times))
    started = time.perf_counter()
    start = InferStart(
        chips=chips, weights=list(networks), times_s=list(times), fp_accuracy=fp_accuracy
    )
    with cancellable(emitter, start, InferEnd) as run:
        for index in range(chips):
            for name, network in networks.items():
                chip = open_chip(index)
                try:
                    emitter.emit(chip_document(index, name, chip))
                    _measure_one(
                        index,
                        chip,
                        name,
                        network,
                        result,
                        x_calibration,
                        x_test,
                        y_test,
                        weight_percentile,
                        emitter,
                    )
                finally:
                    chip.close()
    result.status = run.status
    result.elapsed_s = time.perf_counter() - started
    emitter.end(InferEnd(status=run.status, points=len(result.accuracies)))
    return result


def chip_document(index: int, weights: str, chip: OpenedChip) -> InferChip:
    """What chip ``index`` (to be programmed with ``weights``) reported of itself."""
    config = asdict(chip.config)
    identity = config.pop("identity")
    return InferChip(
        chip=index,
        weights=weights,
        identity=identity,
        config=config,
        resource=getattr(chip, "resource", None),
    )


def _measure_one(
    index, chip, name, network, result, x_calibration, x_test, y_test, weight_percentile, emitter
):
    analog = AnalogNetwork(chip, network, weight_percentile=weight_percentile)
    analog.calibrate_inputs(x_calibration)
    programming = analog.program()
    result.programming.append(
        {"weights": name, **{k: v for k, v in programming.summary().items() if k != "levels"}}
    )
    analog.network = in_float32(network)  # the software around the products
    clock = ChipClock(chip)
    programmed_at = clock.now()
    for t in result.times_s:
        clock.wait_until(programmed_at + t)
        analog.no_compensation()
        found = {"none": evaluate(analog, x_test, y_test)}
        analog.compensate_drift()
        found["gdc"] = evaluate(analog, x_test, y_test)
        if has_batchnorm(network):
            found["gdc+bn"] = evaluate_with_recalibrated_batchnorm(
                analog, x_test, y_test, x_calibration
            )
        for compensation, accuracy in found.items():
            result.accuracies.setdefault((t, name, compensation), []).append(accuracy)
        emitter.step(InferAccuracy(chip=index, t_s=t, weights=name, accuracy=found))
