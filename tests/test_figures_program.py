"""The program-and-verify figures hold the run's stored values, read back from the figure
objects; ``runs plot`` and ``--plot`` write them."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.figures import figures_of, run_figures
from pcm_hil.figures.program import program_figures
from pcm_hil.procedures.program import published_programming_sigma
from pcm_hil.records.store import RunStore

RESOURCE = "emulator?profile=small&seed=5"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One program-and-verify run of 512 devices on 8 levels, recorded, and its documents."""
    folder = tmp_path_factory.mktemp("program")
    store_path = folder / "runs.sqlite"
    argv = ["program", "--resource", RESOURCE, "--devices", "512", "--levels", "8"]
    assert main([*argv, "--runs", str(store_path), "--quiet", "--plot", str(folder / "plots")]) == 0
    with RunStore(store_path, readonly=True) as store:
        documents = [event.document for event in store.events(1)]
        figures = run_figures(store, 1)
    return folder, store_path, documents, figures


def _parts(documents):
    start = next(d for d in documents if isinstance(d, ProgramStart))
    end = next(d for d in documents if isinstance(d, ProgramEnd))
    iterations = [d for d in documents if isinstance(d, ProgramIteration)]
    return start, iterations, end


def test_plot_writes_every_figure_of_the_run(recorded):
    folder, _store, _documents, figures = recorded
    assert list(figures) == ["program-levels", "program-errors", "program-iterations"]
    assert sorted(p.name for p in (folder / "plots").iterdir()) == sorted(
        f"{name}.png" for name in figures
    )


def test_levels_figure_holds_each_levels_read_after_programming(recorded):
    _folder, _store, documents, figures = recorded
    start, _iterations, end = _parts(documents)
    (ax,) = figures["program-levels"].axes
    curves = [line for line in ax.lines if line.get_gid() != "target"]
    targets = np.unique(start.target_uS)
    assert len(curves) == targets.size == 8
    for line, target in zip(curves, targets, strict=True):
        mine = np.sort(np.asarray(end.final_uS, dtype=np.float64)[start.target_uS == target])
        np.testing.assert_array_equal(line.get_xdata(), mine)
        np.testing.assert_allclose(line.get_ydata(), np.arange(1, mine.size + 1) / mine.size)
    marks = [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "target"]
    np.testing.assert_allclose(marks, targets)
    assert f"{end.stuck_devices} stuck" in figures["program-levels"].get_suptitle()
    assert "read after programming" in ax.get_xlabel() and "(µS)" in ax.get_xlabel()


def test_errors_figure_holds_histograms_and_sigma_beside_the_published_one(recorded):
    _folder, _store, documents, figures = recorded
    start, _iterations, end = _parts(documents)
    hist, sigma = figures["program-errors"].axes
    error = np.asarray(end.final_uS, np.float64) - np.asarray(start.target_uS, np.float64)
    converged = np.asarray(end.converged, dtype=bool)
    targets = np.unique(start.target_uS)
    stairs = hist.patches
    assert len(stairs) == targets.size
    stds = []
    for patch, target in zip(stairs, targets, strict=True):
        counts, edges, _ = patch.get_data()
        mine = error[(start.target_uS == target) & converged]
        np.testing.assert_array_equal(counts, np.histogram(mine, bins=edges)[0])
        stds.append(mine.std())
    (measured,) = [line for line in sigma.lines if line.get_gid() == "measured"]
    np.testing.assert_allclose(measured.get_xdata(), targets)
    np.testing.assert_allclose(measured.get_ydata(), stds)
    (published,) = [line for line in sigma.lines if line.get_gid() == "published"]
    np.testing.assert_allclose(
        published.get_ydata(), published_programming_sigma(published.get_xdata())
    )
    # the summary recorded in the end document is the same statistic
    assert end.error_std_uS == pytest.approx(error[converged].std(), rel=1e-6)


def test_iterations_figure_is_the_cdf_of_the_iterations_of_the_converged(recorded):
    _folder, _store, documents, figures = recorded
    start, iterations, end = _parts(documents)
    (ax,) = figures["program-iterations"].axes
    (line,) = ax.lines
    converged = np.asarray(end.converged, dtype=bool)
    taken = np.sort(np.asarray(end.iterations)[converged]).astype(float)
    np.testing.assert_array_equal(line.get_xdata(), taken)
    # the iterations documents tell the same story: each converged device first finished then
    trace = ProgramTrace(start.devices)
    for iteration in iterations:
        trace.add(iteration)
    np.testing.assert_array_equal(trace.finished_iteration[converged], end.iterations[converged])
    # each iteration records only the devices it read: the converged ones drop out
    assert all(it.conductance_uS.size == it.is_read.sum() for it in iterations)
    assert [int(it.is_read.sum()) for it in iterations[1:]] == [
        int((~it.finished).sum()) for it in iterations[:-1]
    ]


def test_a_run_cut_off_draws_from_its_last_verify_reads(recorded):
    _folder, _store, documents, _figures = recorded
    start, iterations, _end = _parts(documents)
    cut = [start, *iterations[:3]]
    figures = program_figures(cut)
    (ax,) = figures["program-levels"].axes
    assert "last verify read" in ax.get_xlabel()
    first = next(line for line in ax.lines if line.get_gid() != "target")
    level = start.target_uS == np.unique(start.target_uS)[0]
    trace = ProgramTrace(start.devices)
    for iteration in iterations[:3]:
        trace.add(iteration)
    last = trace.conductance_uS.astype(np.float64)[level]
    np.testing.assert_array_equal(first.get_xdata(), np.sort(last[np.isfinite(last)]))
    assert "not ended: at iteration 3 of 30" in figures["program-levels"].get_suptitle()
    # converged so far: finished with the last verify read within the tolerance (not stuck)
    read = trace.conductance_uS.astype(np.float64)
    error = read - start.target_uS
    converged = trace.finished & (np.abs(error) <= start.tolerance_uS)
    hist = figures["program-errors"].axes[0]
    assert sum(patch.get_data()[0].sum() for patch in hist.patches) == converged.sum()
    (line,) = figures["program-iterations"].axes[0].lines
    assert line.get_xdata().size == converged.sum()
    assert program_figures([start]) == {} and figures_of([]) == {}


def test_runs_plot_writes_one_figure_as_svg_and_refuses_unknown_names(recorded, tmp_path, capsys):
    _folder, store, _documents, _figures = recorded
    target = tmp_path / "levels.svg"
    argv = ["runs", "plot", "1", "--runs", str(store)]
    assert main([*argv, "--figure", "program-levels", "--output", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_text().lstrip().startswith("<?xml")
    assert main([*argv, "--figure", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no figure 'nope'" in err and "program-levels" in err
    assert main([*argv, "--output", str(tmp_path / "all.png")]) == 1
    assert "3 figures go to a folder" in capsys.readouterr().err
    assert main(["runs", "plot", "7", "--runs", str(store)]) == 1
    assert "no run 7" in capsys.readouterr().err


def test_plot_folder_that_cannot_be_made_is_refused_before_the_run(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    argv = ["program", "--resource", RESOURCE, "--devices", "16", "--runs", str(store)]
    assert main([*argv, "--plot", str(tmp_path / "no" / "such" / "dir")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([*argv, "--plot", str(tmp_path / "figures.png")]) == 1
    assert "go into a folder, not a file" in capsys.readouterr().err
    assert main(["demo", "--runs", str(store), "--report", str(tmp_path / "no" / "r.html")]) == 1
    assert "--report" in capsys.readouterr().err
    assert not store.exists()  # nothing ran, nothing was recorded


def test_a_large_cdf_is_drawn_at_evenly_spread_ranks_of_the_data():
    from pcm_hil.figures.style import ecdf

    values = np.random.default_rng(3).normal(10.0, 1.0, 100_000)
    values[5] = np.nan
    x, y = ecdf(values, points=1000)
    data = np.sort(values[np.isfinite(values)])
    ranks = np.round(y * data.size).astype(int) - 1
    assert x.size == 1000 and ranks[0] == 0 and ranks[-1] == data.size - 1
    np.testing.assert_array_equal(x, data[ranks])  # each point is a step of the data's CDF
    small_x, _ = ecdf(values[:100])
    np.testing.assert_array_equal(small_x, np.sort(values[:100][np.isfinite(values[:100])]))


def test_each_programming_of_a_run_gets_its_figures(recorded):
    """A demo programs its network, then its drift devices: both are drawn, in order."""
    _folder, _store, documents, _figures = recorded
    twice = [*documents, *documents]
    names = list(program_figures(twice))
    assert names == [
        "program-levels",
        "program-errors",
        "program-iterations",
        "program-levels-2",
        "program-errors-2",
        "program-iterations-2",
    ]
