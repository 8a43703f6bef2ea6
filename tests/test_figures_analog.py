"""Figures of networks on the chip hold what the run store holds: inference accuracy per
weights × compensation (mean over chips, bars min–max over chips, the demo's software
baseline) and in-situ training per epoch (test accuracy, update pulses). Runs are recorded
through the CLI (inference, training) or ``run_demo`` with a ``Recorder`` (the demo), read
back from the store, and the figures' artists compared with the stored documents."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pcm_hil.cli.main import main
from pcm_hil.demo import run_demo
from pcm_hil.documents.analog import (
    InferAccuracy,
    InferStart,
    TrainEnd,
    TrainEpoch,
    TrainStart,
)
from pcm_hil.documents.demo import DemoStage
from pcm_hil.drivers import PcmChip
from pcm_hil.figures.analog import analog_figures
from pcm_hil.records.store import Recorder, RunStore


def stored_documents(path) -> list:
    with RunStore(path, readonly=True) as store:
        run = store.latest()
        assert run is not None and run.status == "completed"
        return [event.document for event in store.events(run.id)]


@pytest.fixture(scope="module")
def infer_documents(tmp_path_factory) -> list:
    """Three chips (so min–max differs from mean ± std), two times, plain and noise-aware."""
    path = tmp_path_factory.mktemp("infer") / "runs.sqlite"
    argv = ["infer", "--chips", "3", "--times", "1", "100", "--runs", str(path), "--quiet"]
    assert main(argv) == 0
    return stored_documents(path)


@pytest.fixture(scope="module")
def train_documents(tmp_path_factory) -> list:
    path = tmp_path_factory.mktemp("train") / "runs.sqlite"
    argv = ["train", "--resource", "emulator?profile=small&seed=2", "--epochs", "3"]
    argv += ["--hidden", "32", "--runs", str(path), "--quiet"]
    assert main(argv) == 0
    return stored_documents(path)


@pytest.fixture(scope="module")
def demo_documents(tmp_path_factory) -> list:
    """The demo, small: programming and drift on a small chip, inference on two chips."""
    path = tmp_path_factory.mktemp("demo") / "runs.sqlite"
    with RunStore(path) as store:
        run_id = store.start_run("demo")
        with PcmChip.open("emulator?profile=small") as chip:
            run_demo(
                chip,
                lambda i: PcmChip.open(f"emulator?seed={i}"),
                chips=2,
                drift_devices=256,
                listeners=[Recorder(store, run_id, "demo")],
            )
    return stored_documents(path)


def per_chip(documents: list) -> dict[tuple[str, str], dict[float, list[float]]]:
    """Each chip's stored accuracy by (weights, compensation) and time after programming."""
    found: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for d in documents:
        if isinstance(d, InferAccuracy):
            for compensation, accuracy in d.accuracy.items():
                found[(d.weights, compensation)][d.t_s].append(accuracy)
    return found


def line(figure: Figure, gid: str) -> Line2D:
    (ax,) = figure.axes[:1]
    (found,) = [a for a in ax.get_lines() if a.get_gid() == gid]
    return found


def spread(figure: Figure, gid: str) -> np.ndarray:
    """The error bars with ``gid`` as (bars, 2 ends, x/y), in data coordinates."""
    ax = figure.axes[0]
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    assert isinstance(found, LineCollection)
    return np.array(found.get_segments())


def render(figure: Figure) -> None:
    figure.savefig(io.BytesIO(), format="png")


# --- inference ------------------------------------------------------------------------------


def test_infer_lines_are_the_stored_mean_over_chips_per_combination(infer_documents):
    stored = per_chip(infer_documents)
    assert set(stored) == {(w, c) for w in ("plain", "noise-aware") for c in ("none", "gdc")}
    figure = analog_figures(infer_documents)["infer-accuracy"]
    ax = figure.axes[0]
    drawn = [a.get_gid() for a in ax.get_lines() if (a.get_gid() or "").startswith("infer:")]
    assert sorted(drawn) == sorted(f"infer:{w}:{c}" for w, c in stored)
    for (weights, compensation), by_time in stored.items():
        times = sorted(by_time)
        assert times == [1.0, 100.0]
        assert all(len(by_time[t]) == 3 for t in times)  # one value per chip
        drawn_line = line(figure, f"infer:{weights}:{compensation}")
        np.testing.assert_array_equal(drawn_line.get_xdata(), times)
        np.testing.assert_allclose(
            drawn_line.get_ydata(), [np.mean(by_time[t]) for t in times], rtol=0, atol=1e-15
        )
    names = {"none": "uncompensated", "gdc": "GDC"}
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert sorted(legend) == sorted(f"{w}, {names[c]}" for w, c in stored)
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "time after programming (s)"
    assert ax.get_ylabel() == "test accuracy (%)"


def test_infer_error_bars_span_the_chips_min_to_max(infer_documents):
    stored = per_chip(infer_documents)
    figure = analog_figures(infer_documents)["infer-accuracy"]
    for (weights, compensation), by_time in stored.items():
        times = sorted(by_time)
        bars = spread(figure, f"infer:{weights}:{compensation}:spread")
        np.testing.assert_array_equal(bars[:, 0, 0], times)  # vertical bars at the times
        np.testing.assert_array_equal(bars[:, 1, 0], times)
        ends = np.sort(bars[:, :, 1], axis=1)  # (bottom, top) of each bar
        np.testing.assert_allclose(ends[:, 0], [min(by_time[t]) for t in times], atol=1e-15)
        np.testing.assert_allclose(ends[:, 1], [max(by_time[t]) for t in times], atol=1e-15)
        # three chips: min–max is not mean ± std, so the figure says which it shows
        std = np.array([np.std(by_time[t]) for t in times])
        mean = np.array([np.mean(by_time[t]) for t in times])
        if np.any(std > 0):
            assert not np.allclose(ends[:, 1], mean + std)
    title = figure.legends[0].get_title().get_text()
    assert "mean over 3 chips" in title and "bars: min–max over chips" in title


def test_infer_baseline_is_the_stored_software_accuracy(infer_documents):
    """The start records the network's floating-point accuracy: the baseline line is it; a
    run recorded before it was (version 1) has no line, and the legend says so."""
    start = next(d for d in infer_documents if isinstance(d, InferStart))
    assert start.fp_accuracy is not None and 0.5 < start.fp_accuracy <= 1.0
    figure = analog_figures(infer_documents)["infer-accuracy"]
    np.testing.assert_array_equal(line(figure, "baseline").get_ydata(), [start.fp_accuracy] * 2)
    older = [replace(d, fp_accuracy=None) if d is start else d for d in infer_documents]
    figure = analog_figures(older)["infer-accuracy"]
    assert not [a for a in figure.axes[0].get_lines() if a.get_gid() == "baseline"]
    assert "baseline: not recorded" in figure.legends[0].get_title().get_text()


def test_demo_baseline_is_its_stored_software_accuracy(demo_documents):
    (stage,) = [d for d in demo_documents if isinstance(d, DemoStage) and d.stage == "infer"]
    figures = analog_figures(demo_documents)
    assert set(figures) == {"infer-accuracy"}  # the demo trains no network on the chip
    figure = figures["infer-accuracy"]
    baseline = line(figure, "baseline")
    np.testing.assert_array_equal(baseline.get_ydata(), [stage.fp_accuracy] * 2)
    stored = per_chip(demo_documents)
    for (weights, compensation), by_time in stored.items():
        times = sorted(by_time)
        assert times == [1.0, 86400.0, 365 * 86400.0]
        drawn = line(figure, f"infer:{weights}:{compensation}")
        np.testing.assert_array_equal(drawn.get_xdata(), times)
        np.testing.assert_allclose(
            drawn.get_ydata(), [np.mean(by_time[t]) for t in times], atol=1e-15
        )
    render(figure)


def test_cut_off_inference_draws_the_chips_recorded_so_far(infer_documents):
    """Cut after half the steps (chip 0, and chip 1 with its plain weights): each point is
    the mean over the chips it has, its bar their min–max."""
    steps = [i for i, d in enumerate(infer_documents) if isinstance(d, InferAccuracy)]
    cut = infer_documents[: steps[len(steps) // 2 - 1] + 1]  # 6 of 12 steps
    stored = per_chip(cut)
    assert {len(v) for by_time in stored.values() for v in by_time.values()} == {1, 2}
    figure = analog_figures(cut)["infer-accuracy"]
    for (weights, compensation), by_time in stored.items():
        times = sorted(by_time)
        drawn = line(figure, f"infer:{weights}:{compensation}")
        np.testing.assert_allclose(
            drawn.get_ydata(), [np.mean(by_time[t]) for t in times], atol=1e-15
        )
        bars = np.sort(spread(figure, f"infer:{weights}:{compensation}:spread")[:, :, 1], axis=1)
        np.testing.assert_allclose(bars[:, 1], [max(by_time[t]) for t in times], atol=1e-15)
    assert "mean over 1–2 chips" in figure.legends[0].get_title().get_text()
    render(figure)


# --- in-situ training -----------------------------------------------------------------------


def test_train_accuracy_is_the_stored_epochs(train_documents):
    epochs = [d for d in train_documents if isinstance(d, TrainEpoch)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    figures = analog_figures(train_documents)
    assert set(figures) == {"train-accuracy", "train-pulses"}
    ax = figures["train-accuracy"].axes[0]
    (chip,) = [a for a in ax.get_lines() if a.get_gid() == "chip"]
    np.testing.assert_array_equal(chip.get_xdata(), [e.epoch for e in epochs])
    np.testing.assert_array_equal(chip.get_ydata(), [e.test_accuracy for e in epochs])
    (start,) = [d for d in train_documents if isinstance(d, TrainStart)]
    (reference,) = [a for a in ax.get_lines() if a.get_gid() == "floating-point"]
    np.testing.assert_array_equal(reference.get_xdata(), [start.epochs])
    np.testing.assert_array_equal(reference.get_ydata(), [start.fp_accuracy])
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "test accuracy after the epoch (%)"


def test_train_pulses_are_the_stored_pulse_counts(train_documents):
    epochs = [d for d in train_documents if isinstance(d, TrainEpoch)]
    (end,) = [d for d in train_documents if isinstance(d, TrainEnd)]
    total = [e.pulses_applied for e in epochs]
    assert total[-1] == end.pulses_applied and total[0] > 0
    figure = analog_figures(train_documents)["train-pulses"]
    per_epoch, cumulative, pairs = figure.axes
    bars = [p for p in per_epoch.patches if p.get_gid() == "pulses-per-epoch"]
    centres = [p.get_x() + p.get_width() / 2 for p in bars]
    np.testing.assert_allclose(centres, [e.epoch for e in epochs])
    heights = [p.get_height() for p in bars]
    np.testing.assert_array_equal(heights, np.diff(total, prepend=0))
    (line_,) = [a for a in cumulative.get_lines() if a.get_gid() == "pulses-total"]
    np.testing.assert_array_equal(line_.get_xdata(), [e.epoch for e in epochs])
    np.testing.assert_array_equal(line_.get_ydata(), total)
    (refreshed,) = [a for a in pairs.get_lines() if a.get_gid() == "refreshed-pairs"]
    np.testing.assert_array_equal(refreshed.get_ydata(), [e.refreshed_pairs for e in epochs])
    assert f"{epochs[-1].refreshed_pairs:,} pairs refreshed" in figure.get_suptitle()
    render(figure)


def test_training_without_a_test_set_draws_pulses_only(train_documents):
    untested = [
        replace(d, test_accuracy=None) if isinstance(d, TrainEpoch) else d for d in train_documents
    ]
    assert set(analog_figures(untested)) == {"train-pulses"}


# --- cut off, empty -------------------------------------------------------------------------


def test_every_cut_off_run_draws_without_error(infer_documents, train_documents):
    for documents in (infer_documents, train_documents):
        for end in range(len(documents) + 1):
            figures = analog_figures(documents[:end])
            measured = (InferAccuracy, TrainEpoch)
            if not any(isinstance(d, measured) for d in documents[:end]):  # nothing measured yet
                assert figures == {}
            else:
                assert figures
        # a few drawn for real: the first step only, half the steps, all but the end
        for end in (2, len(documents) // 2, len(documents) - 1):
            for figure in analog_figures(documents[:end]).values():
                render(figure)


def test_cut_off_training_counts_its_epochs(train_documents):
    cut = [d for d in train_documents if not isinstance(d, TrainEnd)][:3]  # start + 2 epochs
    assert isinstance(cut[0], TrainStart)
    figure = analog_figures(cut)["train-pulses"]
    assert "in 2 of 3 epochs" in figure.get_suptitle()
    assert "not ended" in figure.get_suptitle()


def test_no_documents_no_figures(infer_documents):
    assert analog_figures([]) == {}
    assert analog_figures([d for d in infer_documents if not isinstance(d, InferStart)]) == {}
