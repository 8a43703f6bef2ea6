"""The characterization figures hold the run's stored values, read back from the figure
objects: the programming curve's points with the melting threshold marked, the accumulation
curve's mean and std; and read noise, from each device's mean and std the run stores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pcm_hil.documents.characterize import (
    AccumulationPoint,
    AccumulationStart,
    ProgrammingCurvePoint,
    ProgrammingCurveStart,
    ReadNoiseEnd,
    ReadNoiseRead,
)
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.devices import read_noise_relative_std
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.figures.characterize import (
    READ_NOISE_TIMES_S,
    binned_read_noise,
    characterization_figures,
    device_read_noise,
    read_noise_figure,
)
from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
from pcm_hil.records.store import Recorder, RunStore

CURRENTS_UA = np.linspace(200.0, 560.0, 10)
PULSES = 12


def _chip(seed):
    chip = make_chip("tiny", seed)
    return PcmChip(InProcessTransport("emulator", WireInterface(chip)))


def _record(store, procedure, measure, *args, **kwargs):
    """Run ``measure`` recorded into a new run of ``store``; its documents as stored."""
    run = store.start_run(procedure)
    measure(*args, listeners=[Recorder(store, run, procedure)], **kwargs)
    return [event.document for event in store.events(run)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A programming curve, an accumulation curve and a read-noise run of 256 devices each,
    recorded: their documents, by procedure."""
    driver, addresses = _chip(21), np.arange(256)
    with RunStore(tmp_path_factory.mktemp("characterize") / "runs.sqlite") as store:
        return {
            "programming-curve": _record(
                store, "programming-curve", programming_curve, driver, 0, addresses, CURRENTS_UA
            ),
            "accumulation": _record(
                store, "accumulation", accumulation_curve, driver, 1, addresses, pulses=PULSES
            ),
            "read-noise": _record(store, "read-noise", read_noise, driver, 0, addresses, reads=5),
        }


def _points(documents, kind):
    return [d for d in documents if isinstance(d, kind)]


def test_programming_curve_holds_the_stored_points_and_the_melting_threshold(recorded):
    documents = recorded["programming-curve"]
    figures = characterization_figures(documents)
    assert list(figures) == ["programming-curve"]
    figure = figures["programming-curve"]
    (ax,) = figure.axes
    points = _points(documents, ProgrammingCurvePoint)
    (container,) = ax.containers
    line = container.lines[0]
    assert line.get_gid() == "measured"
    np.testing.assert_array_equal(line.get_xdata(), [p.current_uA for p in points])
    np.testing.assert_array_equal(line.get_xdata(), CURRENTS_UA)
    np.testing.assert_array_equal(line.get_ydata(), [p.mean_uS for p in points])
    bars = np.array(container.lines[2][0].get_segments())  # (x, mean − std) to (x, mean + std)
    np.testing.assert_allclose(bars[:, 0, 1], [p.mean_uS - p.std_uS for p in points])
    np.testing.assert_allclose(bars[:, 1, 1], [p.mean_uS + p.std_uS for p in points])
    (threshold,) = [ln for ln in ax.lines if ln.get_gid() == "melting-threshold"]
    assert threshold.get_xdata()[0] == DEFAULT_MODEL.i_melt_uA == 200.0
    assert "a choice" in threshold.get_label() and "200 ± 8 µA" in threshold.get_label()
    assert "(µA)" in ax.get_xlabel() and "(µS)" in ax.get_ylabel()
    start = next(d for d in documents if isinstance(d, ProgrammingCurveStart))
    assert f"{start.devices} devices of tile 0, 50 ns" in figure.get_suptitle()


def test_accumulation_holds_the_stored_mean_and_std_per_pulse(recorded):
    documents = recorded["accumulation"]
    figure = characterization_figures(documents)["accumulation"]
    mean_ax, std_ax = figure.axes
    points = _points(documents, AccumulationPoint)
    assert [p.pulses for p in points] == list(range(PULSES + 1))
    (mean,) = mean_ax.lines
    (std,) = std_ax.lines
    for line, values in ((mean, [p.mean_uS for p in points]), (std, [p.std_uS for p in points])):
        np.testing.assert_array_equal(line.get_xdata(), [p.pulses for p in points])
        np.testing.assert_array_equal(line.get_ydata(), values)
    assert "(µS)" in mean_ax.get_ylabel() and "(µS)" in std_ax.get_ylabel()
    start = next(d for d in documents if isinstance(d, AccumulationStart))
    assert f"{start.amplitude_uA:g} µA, {start.width_ns:g} ns" in figure.get_suptitle()


def test_curves_cut_off_or_cancelled_draw_what_was_measured(recorded, tmp_path):
    documents = recorded["programming-curve"]
    cut = documents[:4]  # the start and three points, no end
    figure = characterization_figures(cut)["programming-curve"]
    assert "cut off after 3 points" in figure.get_suptitle()
    (container,) = figure.axes[0].containers
    np.testing.assert_array_equal(container.lines[0].get_xdata(), CURRENTS_UA[:3])
    assert characterization_figures(documents[:1]) == {} == characterization_figures([])

    def stop_after_five(event):
        if event.kind == "step" and event.done == 5:
            raise KeyboardInterrupt

    with RunStore(tmp_path / "runs.sqlite") as store:
        run = store.start_run("accumulation")
        accumulation_curve(
            _chip(22), 0, np.arange(64), pulses=PULSES,
            listeners=[Recorder(store, run, "accumulation"), stop_after_five],
        )  # fmt: skip
        cancelled = [event.document for event in store.events(run)]
    figure = characterization_figures(cancelled)["accumulation"]
    assert "cancelled after 5 points" in figure.get_suptitle()
    np.testing.assert_array_equal(figure.axes[0].lines[0].get_xdata(), range(5))


def test_a_read_noise_run_is_drawn_from_its_devices_stored_mean_and_std(recorded):
    """The end document keeps each device's mean and std of its reads: the figure's device
    points are std/mean of those, at the mean."""
    documents = recorded["read-noise"]
    reads = _points(documents, ReadNoiseRead)
    assert [r.read for r in reads] == [1, 2, 3, 4, 5]
    (end,) = [d for d in documents if isinstance(d, ReadNoiseEnd)]
    assert end.reads == 5 and end.mean_uS.shape == end.std_uS.shape == (256,)
    figure = characterization_figures(documents)["read-noise"]
    (devices,) = [ln for ln in figure.axes[0].lines if ln.get_gid() == "devices"]
    keep = end.mean_uS > 0
    np.testing.assert_allclose(devices.get_xdata(), end.mean_uS[keep])
    np.testing.assert_allclose(
        devices.get_ydata(), end.std_uS[keep].astype(float) / end.mean_uS[keep].astype(float)
    )
    older = [replace(d, mean_uS=None, std_uS=None) if d is end else d for d in documents]
    assert "read-noise" not in characterization_figures(older)  # version 1: nothing to draw


class KeepReads:
    """A chip that keeps what every read returned."""

    def __init__(self, chip):
        self.chip, self.reads = chip, []

    def pulse(self, *args):
        return self.chip.pulse(*args)

    def read(self, tile, addresses):
        self.reads.append(np.array(self.chip.read(tile, addresses)))
        return self.reads[-1]


def test_read_noise_figure_holds_the_reads_statistics_and_the_procedures_bins():
    chip = KeepReads(_chip(23))
    result = read_noise(chip, 0, np.arange(256), reads=10, bins=6)
    reads = np.array(chip.reads, dtype=np.float64)
    mean, relative = device_read_noise(reads)
    # computed here from the reads alone
    np.testing.assert_allclose(mean, reads.mean(axis=0))
    np.testing.assert_allclose(relative, reads.std(axis=0, ddof=1) / reads.mean(axis=0))
    # binned as the procedure bins them
    centres, binned = binned_read_noise(mean, relative, 6)
    np.testing.assert_allclose(centres, result.conductance_uS)
    np.testing.assert_allclose(binned, result.relative_std)
    figure = read_noise_figure(mean, relative, reads=10, bins=6)
    (ax,) = figure.axes
    lines = {gid: [ln for ln in ax.lines if ln.get_gid() == gid] for gid in ("devices", "measured")}
    np.testing.assert_array_equal(lines["devices"][0].get_xdata(), mean)
    np.testing.assert_array_equal(lines["devices"][0].get_ydata(), relative)
    np.testing.assert_allclose(lines["measured"][0].get_xdata(), result.conductance_uS)
    np.testing.assert_allclose(lines["measured"][0].get_ydata(), result.relative_std)
    published = [ln for ln in ax.lines if ln.get_gid() == "published"]
    assert len(published) == len(READ_NOISE_TIMES_S)  # not known when: drawn at each
    for line, t in zip(published, READ_NOISE_TIMES_S, strict=True):
        expected = read_noise_relative_std(DEFAULT_MODEL, line.get_xdata(), t)
        np.testing.assert_allclose(line.get_ydata(), expected)
        assert f"{t:g} s after programming" in line.get_label()
    assert "time not recorded" in figure.get_suptitle() and "(µS)" in ax.get_xlabel()
    (one,) = [
        ln
        for ln in read_noise_figure(mean, relative, 10, elapsed_s=60.0).axes[0].lines
        if ln.get_gid() == "published"
    ]
    assert "60 s after programming" in one.get_label()


def test_read_noise_at_times_since_programming_is_drawn_per_conductance_bin(tmp_path):
    """``--times``: the reads are taken again at each time after programming; the figure's
    lines are each bin's mean relative std at those times, beside the published fit."""
    from pcm_hil.cli.main import main
    from pcm_hil.records.store import RunStore

    store = tmp_path / "runs.sqlite"
    argv = ["characterize", "read-noise", "--resource", "emulator?profile=small", "--reads", "5"]
    argv += ["--devices", "512", "--times", "0.1", "100", "100000", "--runs", str(store), "--quiet"]
    assert main(argv) == 0
    with RunStore(store, readonly=True) as runs:
        documents = [event.document for event in runs.events(1)]
    (end,) = [d for d in documents if isinstance(d, ReadNoiseEnd)]
    np.testing.assert_array_equal(end.times_s, [0.1, 100.0, 100000.0])
    assert end.mean_by_time_uS.shape == end.std_by_time_uS.shape == (3, 512)
    assert [d.t_s for d in documents if isinstance(d, ReadNoiseRead)] == [0.1] * 5 + [100.0] * 5 + [
        100000.0
    ] * 5
    figure = characterization_figures(documents)["read-noise-vs-time"]
    (ax,) = figure.axes
    mean, std = end.mean_by_time_uS.astype(float), end.std_by_time_uS.astype(float)
    keep = (mean > 0).all(axis=0)
    edges = np.quantile(mean[0][keep], np.linspace(0, 1, 5))
    which = np.clip(np.searchsorted(edges, mean[0], side="right") - 1, 0, 3)
    for number in range(4):
        (line,) = [ln for ln in ax.lines if ln.get_gid() == f"bin-{number}"]
        members = keep & (which == number)
        np.testing.assert_array_equal(line.get_xdata(), end.times_s)
        np.testing.assert_allclose(
            line.get_ydata(), (std[:, members] / mean[:, members]).mean(axis=1)
        )
        (published,) = [ln for ln in ax.lines if ln.get_gid() == f"published-{number}"]
        g = mean[0][members].mean()
        np.testing.assert_allclose(
            published.get_ydata(),
            read_noise_relative_std(
                DEFAULT_MODEL, np.full(published.get_xdata().size, g), published.get_xdata()
            ),
        )
    # read noise grows with time since programming, as the published fit says
    top = next(ln for ln in ax.lines if ln.get_gid() == "bin-3").get_ydata()
    assert top[-1] > top[0]
