"""The drift figures hold the run's stored values, read back from the figure objects: each
level's mean and spread of the stored reads, the fitted power law with the ν the run reported,
the histograms of the per-device ν, and the published μ_ν(G) beside the measured one."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.devices import drift_exponent_stats
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.figures.drift import drift_figures
from pcm_hil.procedures.drift import fit_drift, log_times, measure_drift
from pcm_hil.procedures.program import level_targets
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock

LEVELS = 4
#: 1 s … 10⁶ s in 8 reads: 2 before the fit window (20 s on), 6 in it.
TIMES_S = log_times(1.0, 1e6, 8)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A drift measurement of 256 devices on 4 levels, recorded; its documents as stored.
    Programmed with no settle time, on a virtual clock: every device at once, at 0 s, and the
    reads at their times after it (2 of them before the fit window)."""
    chip = make_chip("tiny", 11)
    driver = PcmChip(InProcessTransport("emulator", WireInterface(chip)))
    n = driver.config.devices_per_tile
    targets = level_targets(LEVELS, driver.config.g_max_uS)[np.arange(n) % LEVELS]
    with RunStore(tmp_path_factory.mktemp("drift") / "runs.sqlite") as store:
        run = store.start_run("drift")
        measure_drift(
            driver, ChipClock(driver), 0, np.arange(n), targets, TIMES_S, settle_s=0,
            listeners=[Recorder(store, run, "drift")],
        )  # fmt: skip
        documents = [event.document for event in store.events(run)]
    return documents


def _parts(documents):
    start = next(d for d in documents if isinstance(d, DriftStart))
    reads = [d for d in documents if isinstance(d, DriftRead)]
    end = next((d for d in documents if isinstance(d, DriftEnd)), None)
    return start, reads, end


def _independent(start, reads):
    """From the stored documents alone: read times and reads (times × devices), each device's
    time since its programming, and the procedure's per-device ν and good fits."""
    read_at = np.array([r.read_at_s for r in reads])
    g = np.stack([r.conductance_uS for r in reads]).astype(np.float64)
    elapsed = read_at[:, None] - start.programmed_at_s[None, :]
    nu, _rms, error = fit_drift(elapsed, np.stack([r.conductance_uS for r in reads]), 20.0)
    return read_at, g, elapsed, nu, start.usable & (error <= 0.02)


def _band(collection, n):
    """(lower, upper) edges of a fill_between band of n points, from its outline."""
    vertices = collection.get_paths()[0].vertices
    lower, upper = vertices[1 : n + 1], vertices[n + 2 : 2 * n + 2][::-1]
    return lower, upper


def _gid(artists, gid):
    return [artist for artist in artists if artist.get_gid() == gid]


def test_curves_hold_each_levels_mean_and_spread_of_the_stored_reads(recorded):
    start, reads, _end = _parts(recorded)
    figures = drift_figures(recorded)
    assert list(figures) == ["drift-curves", "drift-nu", "drift-nu-vs-g"]
    (ax,) = figures["drift-curves"].axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "(s)" in ax.get_xlabel() and "(µS)" in ax.get_ylabel()
    _read_at, g, elapsed, _nu, _good = _independent(start, reads)
    means, bands = _gid(ax.lines, "mean"), _gid(ax.collections, "spread")
    targets = np.unique(start.target_uS)
    assert len(means) == len(bands) == targets.size == LEVELS
    for line, band, target in zip(means, bands, targets, strict=True):
        use = (start.target_uS == target) & start.usable
        t = np.median(elapsed[:, use], axis=1)
        # every device was programmed at once here: its time is the read's time after programming
        np.testing.assert_allclose(t, [r.t_s for r in reads])
        np.testing.assert_array_equal(line.get_xdata(), t)
        np.testing.assert_allclose(line.get_ydata(), g[:, use].mean(axis=1), rtol=1e-12)
        lower, upper = _band(band, len(reads))
        np.testing.assert_allclose(lower, np.c_[t, np.percentile(g[:, use], 10, axis=1)])
        np.testing.assert_allclose(upper, np.c_[t, np.percentile(g[:, use], 90, axis=1)])
    (fit_from,) = _gid(ax.lines, "fit-from")
    assert fit_from.get_xdata()[0] == start.fit_from_s == 20.0


def test_fitted_power_law_has_the_nu_the_run_reported(recorded):
    start, reads, end = _parts(recorded)
    (ax,) = drift_figures(recorded)["drift-curves"].axes
    _read_at, g, elapsed, _nu, _good = _independent(start, reads)
    fits = _gid(ax.lines, "fit")
    assert len(fits) == len(end.levels) == LEVELS
    labels = [line.get_label() for line in _gid(ax.lines, "mean")]
    for line, level, label in zip(fits, end.levels, labels, strict=True):
        t, fitted = line.get_xdata(), line.get_ydata()
        slope, log_a = np.polyfit(np.log(t), np.log(fitted), 1)
        assert -slope == pytest.approx(level["nu_mean"], rel=1e-9)
        assert f"ν̄ = {level['nu_mean']:.3f}" in label
        # over the reads fitted, placed through the level's mean (least squares in log G)
        use = (start.target_uS == np.float32(level["target_uS"])) & start.usable
        times, mean = np.median(elapsed[:, use], axis=1), g[:, use].mean(axis=1)
        window = times >= 20.0
        assert t[0] == pytest.approx(times[window][0]) and t[-1] == pytest.approx(times[-1])
        expected = np.mean(np.log(mean[window]) + level["nu_mean"] * np.log(times[window]))
        assert log_a == pytest.approx(expected, rel=1e-9)


def test_nu_histograms_are_the_per_device_fits_of_each_level(recorded):
    start, reads, end = _parts(recorded)
    figure = drift_figures(recorded)["drift-nu"]
    (ax,) = figure.axes
    _read_at, _g, _elapsed, nu, good = _independent(start, reads)
    targets = np.unique(start.target_uS)
    stairs = ax.patches
    assert len(stairs) == targets.size
    for patch, target, level in zip(stairs, targets, end.levels, strict=True):
        counts, edges, _baseline = patch.get_data()
        mine = nu[(start.target_uS == target) & good]
        np.testing.assert_array_equal(counts, np.histogram(mine, bins=edges)[0])
        # all of the level's good fits are counted: the bins span every ν
        assert counts.sum() == mine.size == level["n_devices"]
        assert mine.mean() == pytest.approx(level["nu_mean"], rel=1e-12)
    assert f"{int(good.sum())} good fits of {int(start.usable.sum())}" in figure.get_suptitle()
    assert "ν" in ax.get_xlabel() and ax.get_ylabel() == "devices"


def test_nu_vs_g_is_the_level_statistics_beside_the_published_fit(recorded):
    _start, _reads, end = _parts(recorded)
    (ax,) = drift_figures(recorded)["drift-nu-vs-g"].axes
    (container,) = ax.containers
    measured = container.lines[0]
    assert measured.get_gid() == "measured"
    np.testing.assert_allclose(measured.get_xdata(), [lv["target_uS"] for lv in end.levels])
    np.testing.assert_allclose(measured.get_ydata(), [lv["nu_mean"] for lv in end.levels])
    bars = np.array(container.lines[2][0].get_segments())
    np.testing.assert_allclose(
        (bars[:, 1, 1] - bars[:, 0, 1]) / 2, [lv["nu_std"] for lv in end.levels]
    )
    (published,) = _gid(ax.lines, "published")
    mu, sigma = drift_exponent_stats(DEFAULT_MODEL, published.get_xdata())
    np.testing.assert_allclose(published.get_ydata(), mu)
    lower, upper = _band(_gid(ax.collections, "published-std")[0], mu.size)
    np.testing.assert_allclose(lower[:, 1], mu - sigma, rtol=1e-6)
    np.testing.assert_allclose(upper[:, 1], mu + sigma, rtol=1e-6)
    assert published.get_xdata().max() >= DEFAULT_MODEL.g_max_uS
    assert "(µS)" in ax.get_xlabel() and ax.get_xscale() == "log"


def test_a_run_cut_off_before_the_fit_window_draws_its_curves_unfitted(recorded):
    start, reads, _end = _parts(recorded)
    at = recorded.index(start)
    figures = drift_figures(recorded[: at + 3])  # two reads, both before 20 s: nothing to fit
    assert list(figures) == ["drift-curves"]
    figure = figures["drift-curves"]
    (ax,) = figure.axes
    assert "cut off after 2 of 8 reads" in figure.get_suptitle()
    assert "not fitted" in figure.get_suptitle() and not _gid(ax.lines, "fit")
    g = np.stack([r.conductance_uS for r in reads[:2]]).astype(np.float64)
    for line, target in zip(_gid(ax.lines, "mean"), np.unique(start.target_uS), strict=True):
        use = (start.target_uS == target) & start.usable
        np.testing.assert_array_equal(line.get_xdata(), [r.read_at_s for r in reads[:2]])
        np.testing.assert_allclose(line.get_ydata(), g[:, use].mean(axis=1), rtol=1e-12)
    assert drift_figures([start]) == {} and drift_figures([]) == {}


def test_a_run_cut_off_in_the_fit_window_is_fitted_on_what_it_read(recorded):
    start, reads, _end = _parts(recorded)
    cut = recorded[: recorded.index(start) + 6]  # five reads: three of them from 20 s on
    figures = drift_figures(cut)
    assert list(figures) == ["drift-curves", "drift-nu", "drift-nu-vs-g"]
    assert "cut off, 5 of 8 reads" in figures["drift-curves"].get_suptitle()
    _read_at, _g, _elapsed, nu, good = _independent(start, reads[:5])
    (ax,) = figures["drift-nu"].axes
    for patch, target in zip(ax.patches, np.unique(start.target_uS), strict=True):
        counts, edges, _baseline = patch.get_data()
        mine = nu[(start.target_uS == target) & good]
        np.testing.assert_array_equal(counts, np.histogram(mine, bins=edges)[0])
        assert counts.sum() == mine.size > 0


def test_reads_with_no_good_fit_and_no_programming_times_draw_curves_only():
    """Devices whose reads scatter far more than they drift, one with no programming time: the
    curves, at the others' time since programming, and no ν figures."""
    times = log_times(1.0, 1e4, 6)
    start = DriftStart(
        tile=np.zeros(3, np.int32), address=np.arange(3, dtype=np.int32),
        target_uS=np.full(3, 10.0, np.float32), usable=np.ones(3, bool),
        programmed_at_s=np.array([0.0, 0.0, np.nan]), devices=3, times_s=times, fit_from_s=20.0,
        reads_per_point=1,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    reads = [
        DriftRead(t_s=t, read_at_s=t, conductance_uS=rng.uniform(5, 15, 3).astype(np.float32))
        for t in times
    ]
    figures = drift_figures([start, *reads, DriftEnd(status="completed", levels=[])])
    assert list(figures) == ["drift-curves"]
    assert "no good fit" in figures["drift-curves"].get_suptitle()
    (mean,) = _gid(figures["drift-curves"].axes[0].lines, "mean")
    np.testing.assert_array_equal(mean.get_xdata(), times)
