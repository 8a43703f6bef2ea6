"""A sweep on the dashboard: its progress, the grid, the points per worker and the newest
points with their results — live and read back from the run store."""

from __future__ import annotations

from pcm_hil.documents.events import Emitter
from pcm_hil.documents.sweep import SweepEnd, SweepPoint, SweepStart
from pcm_hil.records.session import record
from pcm_hil.records.store import RunStore
from pcm_hil.ui.dashboard import DashboardState, render_text
from pcm_hil.ui.dashboard.sweep import KEPT

T0 = 1_000_000.0


def sweep_documents(points: int, done: int):
    """A sweep of 'infer' over seed × tolerance: its start, ``done`` points (two workers
    taking turns, 2 s each, accuracy 0.90 + index/100, a curve of 3 values) and, when all
    are done, its end."""
    yield SweepStart(
        function="infer",
        axes={"seed": list(range(points // 2)), "tolerance_rel": [0.1, 0.2]},
        fixed={"levels": 16},
        seed=7,
        points=points,
    )
    for i in range(done):
        yield SweepPoint(
            index=i,
            parameters={"seed": i // 2, "tolerance_rel": [0.1, 0.2][i % 2]},
            result={"accuracy": 0.9 + i / 100, "curve": [0.1, 0.2, 0.6]},
            worker=f"tcp://127.0.0.1:4{i % 2}000",
            seconds=2.0,
        )
    if done == points:
        yield SweepEnd(status="completed", points_done=points - 2, points_resumed=2)


def fed(points: int, done: int) -> DashboardState:
    state = DashboardState()
    emitter = Emitter([state.update], total=points)
    for n, document in enumerate(sweep_documents(points, done)):
        if document.kind == "step":
            emitter.step(document)
        elif document.kind == "end":
            emitter.end(document)
        else:
            emitter.emit(document)
        assert state.events == n + 1
    return state


def test_a_running_sweep_shows_its_progress_grid_workers_and_newest_points():
    state = fed(points=8, done=5)
    text = render_text(state, 80, 24, now=T0)
    assert "5/8" in text  # the progress panel: points done of all
    assert "infer over seed (4), tolerance_rel (2)" in text
    assert "by worker: 127.0.0.1:40000 3, 127.0.0.1:41000 2 · 2.00 s a point" in text
    lines = [line for line in text.splitlines() if "accuracy" in line]
    # newest first: points 4, 3, 2, 1, 0 with their parameters and results
    assert [line.split("│")[1].split()[0] for line in lines] == ["4", "3", "2", "1", "0"]
    assert "seed 2 tolerance_rel 0.1" in lines[0] and "accuracy 0.94" in lines[0]
    assert "curve ⟨0.3⟩×3" in lines[0]  # a list: its mean and length
    assert "5 computed" in text


def test_the_panel_keeps_the_newest_points_only_and_says_what_was_resumed():
    state = fed(points=2 * KEPT + 2, done=2 * KEPT + 2)
    assert len(state.sweep.points) == KEPT
    assert state.sweep.points[0].index == KEPT + 2  # the oldest kept
    assert state.sweep.computed == 2 * KEPT + 2
    text = render_text(state, 100, 30, now=T0)
    assert f"{2 * KEPT + 2} computed, 2 resumed" in text
    assert str(2 * KEPT + 1) in text and "completed" in text


def test_a_recorded_sweep_reads_back_into_the_same_panel(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:
        with record("sweep", store=store) as run:
            emitter = Emitter(run.listeners, total=6)
            for document in sweep_documents(6, 4):
                if document.kind == "step":
                    emitter.step(document)
                else:
                    emitter.emit(document)
        state = DashboardState()
        for event in store.events(run.id):
            state.update(event)
    assert state.sweep is not None and state.sweep.computed == 4
    assert isinstance(state.sweep.start, SweepStart)
    assert "infer over seed (3), tolerance_rel (2)" in render_text(state, 80, 24, now=T0)
