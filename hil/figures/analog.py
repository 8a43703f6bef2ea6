"""Figures of networks on the chip: inference accuracy vs time after programming, and in-situ
training per epoch.

What the documents hold, and so what is drawn:

- ``infer-accuracy``: each ``InferAccuracy`` is one chip's test accuracy with one set of
  weights at one time after programming, per compensation; a line per weights ×
  compensation is the mean over the chips recorded at each time, its bar the chips' min–max.
  The software (floating-point) baseline is the start's ``fp_accuracy`` (recorded since
  ``infer.start`` version 2; a demo of before records it in its ``DemoStage("infer")``).
- ``train-accuracy`` and ``train-pulses``: each ``TrainEpoch`` holds the test accuracy on the
  chip after the epoch, the partial-SET update pulses applied and the pairs refreshed since
  training began; the start holds the floating-point reference (each since version 2; a run
  recorded before says it was not recorded).

Accuracies are drawn as the fractions (0…1) the documents hold, shown in % by the axis
formatter, so the artists' data are the stored values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter
from matplotlib.transforms import ScaledTranslation

from pcm_hil.documents.analog import (
    InferAccuracy,
    InferEnd,
    InferStart,
    TrainEnd,
    TrainEpoch,
    TrainStart,
)
from pcm_hil.documents.base import Document, End
from pcm_hil.documents.demo import DemoStage
from pcm_hil.figures.style import SIZE, new_figure

#: How each compensation is named in a legend, and drawn (line style, marker).
COMPENSATIONS = {
    "none": ("uncompensated", ":", "o"),
    "gdc": ("GDC", "--", "s"),
    "gdc+bn": ("GDC + batch norm recalibrated", "-", "^"),
}

#: Points between the error bars of neighbouring lines at one time (display only: the data
#: stay the stored times).
DODGE_PT = 3.0

#: A day, s.
DAY_S = 86400.0

#: Times after programming named on the top axis, s.
NAMED_TIMES = {
    "1 min": 60.0,
    "1 h": 3600.0,
    "1 d": DAY_S,
    "1 month": 30 * DAY_S,
    "1 y": 365 * DAY_S,
}


def analog_figures(documents: list[Document]) -> dict[str, Figure]:
    """``infer-accuracy`` of the last inference experiment the documents hold, and
    ``train-accuracy`` and ``train-pulses`` of the last in-situ training; each only once at
    least one of its steps was recorded (``train-accuracy`` only with a test accuracy)."""
    figures: dict[str, Figure] = {}
    inference = last_inference(documents)
    if inference is not None and inference.accuracy:
        figures["infer-accuracy"] = _inference_figure(inference)
    training = last_training(documents)
    if training is not None and training.epochs:
        if any(epoch.test_accuracy is not None for epoch in training.epochs):
            figures["train-accuracy"] = _training_accuracy_figure(training)
        figures["train-pulses"] = _training_pulses_figure(training)
    return figures


# --- inference --------------------------------------------------------------------------------


@dataclass
class Inference:
    """One inference experiment as recorded: its start, each chip's accuracy (0…1) per
    (weights, compensation) and time after programming (s), and the software baseline
    (0…1) if the run recorded one."""

    start: InferStart
    accuracy: dict[tuple[str, str], dict[float, list[float]]] = field(default_factory=dict)
    baseline: float | None = None
    end: InferEnd | None = None

    def chips(self) -> tuple[int, int]:
        """The fewest and most chips behind any plotted point."""
        counts = [len(v) for per_time in self.accuracy.values() for v in per_time.values()]
        return min(counts), max(counts)


def last_inference(documents: list[Document]) -> Inference | None:
    """The last inference experiment of the documents (None without one); the software
    baseline is its start's ``fp_accuracy``, else a demo's ``DemoStage("infer")`` one."""
    found: Inference | None = None
    for document in documents:
        if isinstance(document, InferStart):
            found = Inference(document, baseline=document.fp_accuracy)
        elif isinstance(document, InferAccuracy) and found is not None:
            for compensation, value in document.accuracy.items():
                per_time = found.accuracy.setdefault((document.weights, compensation), {})
                per_time.setdefault(float(document.t_s), []).append(float(value))
        elif isinstance(document, InferEnd) and found is not None:
            found.end = document
        elif (
            isinstance(document, DemoStage)
            and document.stage == "infer"
            and document.fp_accuracy is not None
            and found is not None
            and found.baseline is None
        ):
            found.baseline = float(document.fp_accuracy)
    return found


def _combinations(inference: Inference) -> list[tuple[str, str]]:
    """(weights, compensation) in the start's order of weights, then none, gdc, gdc+bn."""
    weights = list(inference.start.weights)
    order = list(COMPENSATIONS)

    def key(combination: tuple[str, str]) -> tuple[int, int, str]:
        w, c = combination
        return (
            weights.index(w) if w in weights else len(weights),
            order.index(c) if c in order else len(order),
            w + c,
        )

    return sorted(inference.accuracy, key=key)


def _inference_figure(inference: Inference) -> Figure:
    fewest, most = inference.chips()
    chips = f"{most}" if fewest == most else f"{fewest}–{most}"
    figure, (ax,) = new_figure(f"Test accuracy vs time after programming{_ending(inference.end)}")
    combinations = _combinations(inference)
    weights = list(dict.fromkeys(w for w, _ in combinations))
    for index, (w, compensation) in enumerate(combinations):
        per_time = inference.accuracy[(w, compensation)]
        times = np.array(sorted(per_time))
        values = [np.asarray(per_time[t]) for t in times]
        mean = np.array([v.mean() for v in values])
        low = mean - np.array([v.min() for v in values])
        high = np.array([v.max() for v in values]) - mean
        name, style, marker = COMPENSATIONS.get(compensation, (compensation, "-.", "D"))
        container = ax.errorbar(
            times,
            mean,
            yerr=np.vstack([low, high]),
            color=f"C{weights.index(w)}",
            linestyle=style,
            marker=marker,
            markersize=4,
            capsize=2,
            label=f"{w}, {name}",
        )
        data_line, caps, (bars, *_) = container.lines
        data_line.set_gid(f"infer:{w}:{compensation}")
        bars.set_gid(f"infer:{w}:{compensation}:spread")
        # shifted on the page (after the data limits were taken from the stored times) so
        # that the bars at one time stand side by side
        dodge = (index - (len(combinations) - 1) / 2) * DODGE_PT / 72
        shifted = ax.transData + ScaledTranslation(dodge, 0, figure.dpi_scale_trans)
        for artist in (data_line, *caps, bars):
            artist.set_transform(shifted)
    if inference.baseline is not None:
        software = ax.axhline(
            inference.baseline,
            color="black",
            linewidth=1.0,
            gid="baseline",
            label=f"software (floating point, plain weights): {inference.baseline:.1%}",
        )
        # the baseline alone in the axes, where the data leave room
        ax.legend(handles=[software], loc="best", fontsize="small")
        baseline = ""
    else:
        baseline = "\nsoftware (floating-point) baseline: not recorded in this run"
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    _mark_times(ax)
    ax.set_ylabel("test accuracy (%)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, symbol=""))
    figure.set_size_inches(SIZE[0], SIZE[1] + 1.0)
    figure.legend(  # a column per set of weights, when each has the same compensations
        handles=ax.containers,
        loc="outside lower center",
        ncols=len(weights) if len(combinations) % len(weights) == 0 else 2,
        title=f"weights, drift compensation: mean over {chips} chip{'s' if most > 1 else ''}; "
        + ("bars: min–max over chips" if most > 1 else "one chip: no spread to show")
        + baseline,
        fontsize="small",
        title_fontsize="small",
    )
    return figure


def _mark_times(ax: Axes) -> None:
    """Name the familiar times after programming within the axis on a top axis."""
    low, high = ax.get_xlim()
    named = {label: t for label, t in NAMED_TIMES.items() if low <= t <= high}
    top = ax.secondary_xaxis("top")
    top.set_xticks(list(named.values()), list(named))
    top.tick_params(labelsize="small")
    top.xaxis.set_minor_locator(NullLocator())


def _ending(end: End | None) -> str:
    """How a procedure ended, for a title: nothing when it completed."""
    if end is None:
        return ", not ended: cut off or still running"
    return "" if end.status == "completed" else f", {end.status}"


# --- in-situ training -------------------------------------------------------------------------


@dataclass
class Training:
    """One in-situ training as recorded: its start and the epochs done."""

    start: TrainStart
    epochs: list[TrainEpoch] = field(default_factory=list)
    end: TrainEnd | None = None

    def pulses_per_epoch(self) -> np.ndarray:
        """Partial-SET pulses applied during each recorded epoch (the counter starts at 0
        when training starts)."""
        total = np.array([e.pulses_applied for e in self.epochs], dtype=np.int64)
        return np.diff(total, prepend=0)


def last_training(documents: list[Document]) -> Training | None:
    """The last in-situ training of the documents (None without one)."""
    found: Training | None = None
    for document in documents:
        if isinstance(document, TrainStart):
            found = Training(document)
        elif isinstance(document, TrainEpoch) and found is not None:
            found.epochs.append(document)
        elif isinstance(document, TrainEnd) and found is not None:
            found.end = document
    return found


def _recipe(start: TrainStart) -> str:
    """The training's parameters as recorded (its learning-rate schedule is not)."""
    return (
        f"initial learning rate {start.lr:g}, batch {start.batch}, "
        f"ε {start.epsilon_uS:g} µS per pulse"
    )


def _training_accuracy_figure(training: Training) -> Figure:
    epochs = np.array([e.epoch for e in training.epochs if e.test_accuracy is not None])
    accuracy = np.array([e.test_accuracy for e in training.epochs if e.test_accuracy is not None])
    figure, (ax,) = new_figure(
        f"In-situ training: test accuracy per epoch ({len(training.epochs)} of "
        f"{training.start.epochs} epochs{_ending(training.end)})\n{_recipe(training.start)}"
    )
    ax.plot(
        epochs,
        accuracy,
        "o-",
        color="C0",
        gid="chip",
        label="weights on the chip",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy after the epoch (%)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, symbol=""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    reference = training.start.fp_accuracy
    if reference is not None:  # known after all the epochs only: one point, not a line
        ax.plot(
            [training.start.epochs],
            [reference],
            "D",
            color="black",
            gid="floating-point",
            label=f"floating point, after all {training.start.epochs} epochs: {reference:.1%}",
        )
    ax.legend(
        title=None if reference is not None else "floating-point reference: not recorded",
        fontsize="small",
        title_fontsize="small",
        loc="best",
    )
    return figure


def _training_pulses_figure(training: Training) -> Figure:
    epochs = np.array([e.epoch for e in training.epochs])
    total = np.array([e.pulses_applied for e in training.epochs])
    refreshed = [e.refreshed_pairs for e in training.epochs]
    refreshes = (
        f"{refreshed[-1]:,} pairs refreshed"
        if refreshed and refreshed[-1] is not None
        else "refreshes: not recorded in this run"
    )
    figure, (per_epoch, cumulative) = new_figure(
        f"In-situ training: {total[-1]:,} update pulses in {len(epochs)} of "
        f"{training.start.epochs} epochs{_ending(training.end)}; {refreshes}\n"
        f"{_recipe(training.start)}",
        columns=2,
    )
    bars = per_epoch.bar(epochs, training.pulses_per_epoch(), color="C0")
    for bar in bars:
        bar.set_gid("pulses-per-epoch")
    per_epoch.set_xlabel("epoch")
    per_epoch.set_ylabel("update pulses in the epoch")
    cumulative.plot(epochs, total, "o-", color="C0", gid="pulses-total", label="update pulses")
    if refreshed and all(r is not None for r in refreshed):
        pairs = cumulative.twinx()
        pairs.step(
            epochs,
            np.asarray(refreshed, dtype=np.int64),
            where="post",
            color="C1",
            gid="refreshed-pairs",
        )
        pairs.set_ylabel("pairs refreshed since training began", color="C1")
        pairs.set_ylim(bottom=0)
    cumulative.set_xlabel("epoch")
    cumulative.set_ylabel("update pulses since training began")
    cumulative.set_ylim(bottom=0)
    for ax in (per_epoch, cumulative):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure
