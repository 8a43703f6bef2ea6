"""The live dashboard: panels and values for recorded program-and-verify, drift,
characterization, inference and training runs at 80×24 and 160×48; live events and events
read back from the run store draw the same; updates that keep arrays by reference and leave
the array work to drawing; throttled live drawing, on a clock the tests set; attaching to a
finished run and following one written by another process; and the dashboard in a real
terminal (tmux). Toy procedures of the tests declare their own documents, as a lab's own
procedure would, and the dashboard shows them; documents this process has no class for (as the
store returns them) show as well."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, replace
from io import StringIO

import numpy as np
import pytest
from rich.console import Console

from pcm_hil.documents.analog import InferAccuracy, InferEnd, InferStart, TrainEpoch, TrainStart
from pcm_hil.documents.base import End, Start, Step, UnknownDocument
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.characterize import programming_curve
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock
from pcm_hil.ui.dashboard import DashboardState, LiveDashboard, attach, layout, render, render_text

RESOURCE = "emulator?profile=small&seed=1"
SIZES = ((80, 24), (160, 48))


# --- toy procedures: their own documents, as a lab's procedure declares them -------------------


@dataclass(frozen=True)
class SweepStart(Start, name="sweep.start"):
    pass


@dataclass(frozen=True)
class SweepStep(Step, name="sweep.step"):
    x: int


@dataclass(frozen=True)
class FirstStart(Start, name="first.start"):
    pass


@dataclass(frozen=True)
class FirstStep(Step, name="first.step"):
    pass


@dataclass(frozen=True, kw_only=True)
class FirstEnd(End, name="first.end"):
    pass


@dataclass(frozen=True)
class SecondStart(Start, name="second.start"):
    pass


@dataclass(frozen=True)
class SecondStep(Step, name="second.step"):
    pass


def assert_fits(text: str, width: int, height: int) -> list[str]:
    lines = text.split("\n")
    assert len(lines) == height
    assert max(len(line) for line in lines) <= width
    return lines


def recorded(store: RunStore, procedure: str, body):
    """Run ``body(chip, listeners)`` as a recorded run; returns (run id, result, live state,
    the events as emitted)."""
    chip = PcmChip.open(RESOURCE)
    try:
        run_id = store.start_run(procedure, resource=RESOURCE, identity=asdict(chip.identity))
        state = DashboardState()
        state.set_run(None, RESOURCE, asdict(chip.identity))
        events: list[Event] = []
        result = body(chip, [Recorder(store, run_id, procedure), state.update, events.append])
    finally:
        chip.close()
    return run_id, result, state, events


def program_body(chip, listeners):
    n = chip.config.devices_per_tile
    addresses = np.arange(n)
    targets = level_targets(16, chip.config.g_max_uS)[addresses % 16]
    return program_and_verify(chip, 0, addresses, targets, listeners=listeners)


def drift_body(chip, listeners):
    n = chip.config.devices_per_tile
    addresses = np.unique(np.linspace(0, n - 1, 1024).round().astype(np.int64))
    targets = level_targets(8, chip.config.g_max_uS)[np.arange(addresses.size) % 8]
    return measure_drift(
        chip,
        ChipClock(chip),
        1,
        addresses,
        targets,
        log_times(1.0, 365 * 86400.0, 25),
        listeners=listeners,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dashboard") / "runs.sqlite"
    with RunStore(path) as opened:
        yield opened


@pytest.fixture(scope="module")
def program_run(store):
    run_id, result, state, events = recorded(store, "program", program_body)
    state.set_run(store.run(run_id))
    return run_id, result, state, events


@pytest.fixture(scope="module")
def drift_run(store):
    run_id, result, state, events = recorded(store, "drift", drift_body)
    state.set_run(store.run(run_id))
    return run_id, result, state, events


def stored_state(store: RunStore, run_id: int) -> DashboardState:
    state = DashboardState()
    state.set_run(store.run(run_id))
    for event in store.events(run_id):
        state.update(event)
    return state


# --- program-and-verify ----------------------------------------------------------------------


def test_program_run_at_80x24_shows_identity_progress_map_convergence_and_warnings(program_run):
    run_id, result, state, events = program_run
    summary = result.summary()
    lines = assert_fits(render_text(state, 80, 24), 80, 24)
    text = "\n".join(lines)
    assert RESOURCE in text
    assert "PCM-EMULATOR EMU-0001" in text
    assert f"run #{run_id} program · completed" in text
    progress = next(line for line in lines if "✓ program" in line)
    assert f"{events[-1].done}/30" in progress and "completed" in progress
    assert "tile 0" in text  # the map's panel
    assert any(cell in text for cell in ("··", "░░", "▒▒", "▓▓", "██"))
    assert "program-and-verify" in text
    assert f"converged {summary['converged_fraction']:.1%}" in text
    assert f"stuck {summary['stuck_devices']}" in text
    levels = level_targets(16, 25.0)
    assert f"{levels[0]:.1f}" in text  # levels grouped two a row at this size: "0.8–2.3"
    if summary["stuck_devices"]:
        assert f"{summary['stuck_devices']} stuck devices" in text


def test_program_run_at_160x48_has_every_panel_and_every_level(program_run):
    run_id, result, state, _ = program_run
    summary = result.summary()
    text = "\n".join(assert_fits(render_text(state, 160, 48), 160, 48))
    for title in (
        "pcm-hil",
        "progress",
        "tile 0 conductance · 64×64 devices",
        "program-and-verify",
        "drift",
        "accuracy",
        "errors & warnings",
    ):
        assert title in text
    assert "serial EMU-0001" in text and "firmware" in text
    assert f"run #{run_id} program · completed" in text
    assert f"converged {summary['converged_fraction']:.1%}" in text
    assert f"iterations {summary['iterations_mean']:.1f}" in text
    assert "no drift measurement yet" in text and "no inference or training yet" in text
    for level in summary["levels"]:
        # every level its own row, with its share of devices within the tolerance
        row = next(line for line in text.split("\n") if f" {level['target_uS']:.2f} " in line)
        assert f"{level['converged_fraction']:.1%}" in row
    assert f"program iteration {int(result.iterations.max())}" in text


def test_stored_events_draw_exactly_what_the_live_events_drew(store, program_run):
    run_id, _, live, _ = program_run
    replayed = stored_state(store, run_id)
    replayed.source = live.source
    for width, height in SIZES:
        assert render_text(replayed, width, height) == render_text(live, width, height)


def test_map_cells_follow_the_levels_and_leave_unread_devices_blank():
    n, columns = 64 * 64, 64
    state = DashboardState(geometry=(64, 64))
    address = np.arange(0, n, 2, dtype=np.int32)  # every other column only
    target = np.where((address % columns) < 32, 2.0, 23.0).astype(np.float32)
    start = ProgramStart(
        strategy="amplitude-search",
        tolerance_uS=0.5,
        max_iterations=5,
        devices=address.size,
        tiles=[3],
        tile=np.full(address.size, 3, np.int32),
        address=address,
        target_uS=target,
    )
    first = ProgramIteration(
        iteration=1,
        converged=0,
        stuck_devices=0,
        devices=address.size,
        conductance_uS=target.copy(),
        finished=np.zeros(address.size, dtype=bool),
    )
    state.update(Event(start, 0, 5))
    state.update(Event(first, 1, 5))
    image = state.tile_image()
    assert image.shape == (64, 64)
    assert np.isnan(image[:, 1::2]).all() and not np.isnan(image[:, 0::2]).any()
    lines = render_text(state, 100, 40).split("\n")
    top = next(k for k, line in enumerate(lines) if "─ tile 3 µS ─" in line)
    start_column = lines[top].index("╭─ tile 3")
    row = lines[top + 1][start_column + 2 :].split("│")[0].strip()
    # 32 of 64 columns read, levels by half: low shades, then the darkest; 4×4 cells
    assert row == "··" * 8 + "██" * 8
    assert "4×4/cell" in "\n".join(lines)


# --- drift -----------------------------------------------------------------------------------


def test_drift_run_shows_levels_against_log_time_and_fitted_nu(drift_run):
    run_id, result, state, _ = drift_run
    levels = result.summary()["levels"]
    large = "\n".join(assert_fits(render_text(state, 160, 48), 160, 48))
    assert f"run #{run_id} drift · completed" in large
    assert "25/25 reads, t = 1 s … 1 y" in large
    assert "drift t = 1 y" in large  # the map shows the last drift read
    assert "tile 1" in large
    for level in levels:  # each level's row: its sparkline and its fitted ν
        label = f" {level['target_uS']:.2f} "
        row = next(line for line in large.split("\n") if label in line and "→" in line)
        assert f"{level['nu_mean']:.4f}" in row and f"{level['nu_std']:.4f}" in row
    assert sum(f"{level['nu_mean']:.4f}" in large for level in levels) == len(levels)
    small = "\n".join(assert_fits(render_text(state, 80, 24), 80, 24))
    assert "drift" in small and "G vs log t" in small
    shown = sum(f"{level['nu_mean']:.4f}" in small for level in levels)
    assert shown == len(levels)  # all 8 levels fit at 80×24
    # the sparkline falls: conductance drifts down
    label = f"{levels[0]['target_uS']:.2f}"
    spark = next(line for line in small.split("\n") if label in line and "→" in line)
    bars = [c for c in spark.split(label)[1].split()[0]]
    assert bars[0] == "█" and bars[-1] == "▁"


def test_nu_appears_only_when_the_drift_measurement_ends(drift_run):
    _, result, _, events = drift_run
    before_end = DashboardState()
    for event in events[:-1]:
        before_end.update(event)
    text = render_text(before_end, 160, 48)
    for level in result.summary()["levels"]:
        assert f"{level['nu_mean']:.4f}" not in text
    assert "≈" in text  # the estimate from level means stands in


# --- characterization, inference, training, failures ---------------------------------------


def test_characterization_curve_panel():
    chip = PcmChip.open(RESOURCE)
    state = DashboardState()
    try:
        curve = programming_curve(
            chip, 0, np.arange(512), np.linspace(200, 560, 10), listeners=[state.update]
        )
    finally:
        chip.close()
    text = "\n".join(assert_fits(render_text(state, 80, 24), 80, 24))
    assert "programming-curve" in text and "current µA" in text
    assert f"{curve.mean_uS[-1]:.2f}" in text
    assert "10/10" in text
    # the progress line notes the newest point: the swept value first, then its mean
    progress = next(line for line in render_text(state, 160, 48).split("\n") if "10/10" in line)
    assert "current_uA=560 mean_uS=" in progress


def infer_events() -> list[Event]:
    times = [1.0, 86400.0, 365 * 86400.0]
    start = InferStart(chips=2, weights=["plain", "noise-aware"], times_s=times)
    events = [Event(start, 0, 12)]
    done = 0
    for chip in range(2):
        for weights in ("plain", "noise-aware"):
            for t in times:
                done += 1
                decay = math.log10(t) * (0.02 if weights == "plain" else 0.01)
                accuracy = {
                    "none": 0.90 - decay + 0.01 * chip,
                    "gdc": 0.95 - decay / 4,
                    "gdc+bn": 0.96,
                }
                events.append(Event(InferAccuracy(t, weights, accuracy, chip=chip), done, 12))
    events.append(Event(InferEnd(points=18), done, 12))
    return events


def test_inference_accuracy_table_averages_chips():
    state = DashboardState()
    for event in infer_events():
        state.update(event)
    for width, height in SIZES:
        text = "\n".join(assert_fits(render_text(state, width, height), width, height))
        assert "accuracy" in text and "mean over 2 chips" in text
        assert "gdc+bn" in text and "noise-aware" in text
        year = next(line for line in text.split("\n") if " 1 y " in line and "infer" not in line)
        plain_none = 0.90 - math.log10(365 * 86400.0) * 0.02 + 0.005  # mean over the 2 chips
        assert f"{plain_none:.1%}" in year
        assert "96.0%" in year
    assert "1 d" in text and "1 s" in text


def test_training_accuracy_per_epoch():
    state = DashboardState()
    state.update(Event(TrainStart(epochs=10, lr=0.1, batch=10, epsilon_uS=0.3), 0, 10))
    for epoch in range(1, 7):
        step = TrainEpoch(epoch, pulses_applied=1000 * epoch, test_accuracy=0.5 + 0.07 * epoch)
        state.update(Event(step, epoch, 10))
    text = "\n".join(assert_fits(render_text(state, 80, 24), 80, 24))
    assert "training epoch 6 · test accuracy 92.0%" in text
    assert "6000" in text and "57.0%" in text
    assert "6/10" in text and "ETA" in text


def anneal_events(status: str = "completed", error: str | None = None) -> list[Event]:
    """A lab's procedure, ``anneal``, whose document classes this process does not have: its
    events as the store gives them back (``UnknownDocument``), ending after 4 steps or, when
    it failed, after 2."""

    def document(kind: str, **fields) -> UnknownDocument:
        return UnknownDocument(f"test-anneal.{kind}", 1, kind, "anneal", fields)

    steps = 4 if status == "completed" else 2
    events = [Event(document("start", temperatures_K=[350.0, 400.0, 450.0, 500.0]), 0, 4)]
    for k in range(1, steps + 1):
        step = document("step", temperature_K=300.0 + 50 * k, hold_s=60 * k)
        events.append(Event(step, k, 4))
    events.append(Event(document("end", status=status, error=error), steps, 4))
    started = time.time() - len(events)  # one event a second, up to now
    return [replace(event, wall_time_s=started + seq, seq=seq) for seq, event in enumerate(events)]


def test_documents_without_a_class_here_still_show_their_procedures_progress_and_end():
    events = anneal_events()
    running = DashboardState()
    for event in events[:3]:
        running.update(event)
    lines = assert_fits(render_text(running, 160, 48), 160, 48)
    progress = next(line for line in lines if "▶ anneal" in line)
    assert "2/4" in progress and "temperature_K=400 hold_s=120" in progress
    assert running.procedures["anneal"].steps == 2 and running.status() == "running"
    done = DashboardState()
    for event in events:
        done.update(event)
    assert done.procedures["anneal"].status == "completed" and done.status() == "completed"
    progress = next(line for line in render_text(done, 80, 24).split("\n") if "4/4" in line)
    assert "✓ anneal" in progress and "completed" in progress
    failed = DashboardState()
    for event in anneal_events("failed", "RuntimeError: furnace tripped"):
        failed.update(event)
    assert failed.status() == "failed"
    text = render_text(failed, 80, 24)
    assert "✗ anneal" in text and "✗ anneal failed: RuntimeError: furnace tripped" in text


class FailingChip:
    """A chip whose reads fail after ``good`` of them."""

    def __init__(self, chip, good: int) -> None:
        self.chip, self.config, self.good = chip, chip.config, good

    def pulse(self, *args):
        return self.chip.pulse(*args)

    def _spend(self) -> None:
        self.good -= 1
        if self.good < 0:
            raise RuntimeError("ADC saturated on tile 0")

    def read(self, *args):
        self._spend()
        return self.chip.read(*args)

    def read_tile(self, *args):
        self._spend()
        return self.chip.read_tile(*args)


def test_failed_and_cancelled_runs_show_in_errors_and_warnings(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as store:

        def failing(chip, listeners):
            with pytest.raises(RuntimeError):
                program_body(FailingChip(chip, 2), listeners)

        failed_id, _, _, _ = recorded(store, "program", failing)

        def cancelling(chip, listeners):
            def stop(event):
                if event.kind == "step" and event.done == 2:
                    raise KeyboardInterrupt

            return program_body(chip, [*listeners, stop])

        cancelled_id, result, _, _ = recorded(store, "program", cancelling)
        assert result.status == "cancelled"
        failed = render_text(stored_state(store, failed_id), 80, 24)
        assert_fits(failed, 80, 24)
        assert "program · failed" in failed
        assert "✗ run 1 failed: RuntimeError: ADC saturated on tile 0" in failed
        cancelled = render_text(stored_state(store, cancelled_id), 160, 48)
        assert "program · cancelled" in cancelled
        assert "! run 2 cancelled" in cancelled
        assert "■ program" in cancelled
        # a cancelled programming ends with its summary of what it did: shown as such
        summary = result.summary()
        head = f"converged {summary['converged_fraction']:.1%} · stuck {summary['stuck_devices']}"
        assert f"{head} · iterations {summary['iterations_mean']:.1f}" in cancelled


# --- live drawing ------------------------------------------------------------------------------


def test_live_dashboard_draws_the_first_frame_and_the_final_one_at_close(program_run):
    _, result, _, events = program_run
    out = StringIO()
    console = Console(file=out, width=120, height=40, force_terminal=True, color_system="truecolor")
    dashboard = LiveDashboard(console, refresh_hz=4, clock=lambda: 0.0)
    dashboard.set_run(None, RESOURCE, None)
    for event in events:  # a burst: all at one instant
        dashboard(event)
    dashboard.close()
    assert dashboard.frames == 2  # the first event's and the last, at close
    drawn = out.getvalue()
    assert "\x1b[" in drawn  # coloured, cursor-addressed
    assert f"{result.summary()['converged_fraction']:.1%}" in drawn
    assert "completed" in drawn
    dashboard.close()  # twice is harmless


def test_a_live_run_record_is_overruled_by_its_procedures_end(store, program_run):
    run_id, _, _, events = program_run
    dashboard = LiveDashboard(Console(file=StringIO(), width=80, height=24))
    dashboard.set_run(replace(store.run(run_id), status="running"))  # as when it started
    for event in events[:-1]:
        dashboard(event)
    assert dashboard.state.status() == "running"
    dashboard(events[-1])
    assert dashboard.state.status() == "completed"
    dashboard.close()


def test_on_a_file_only_the_last_frame_is_drawn(program_run):
    _, result, _, events = program_run
    out = StringIO()
    dashboard = LiveDashboard(Console(file=out, width=80, height=24))
    for event in events:
        dashboard(event)
    assert dashboard.frames == 0 and out.getvalue() == ""
    dashboard.close()
    assert dashboard.frames == 1
    text = out.getvalue()
    assert "\x1b[" not in text and text.count("╭─ pcm-hil") == 1
    assert f"converged {result.summary()['converged_fraction']:.1%}" in text


def test_a_drawing_error_never_stops_the_procedure(program_run, monkeypatch):
    _, _, _, events = program_run
    out = StringIO()
    dashboard = LiveDashboard(Console(file=out, width=80, height=24, force_terminal=True))

    def broken(*_):
        raise ValueError("cannot draw")

    monkeypatch.setattr("pcm_hil.ui.dashboard.layout._build", broken)
    for event in events:
        dashboard(event)  # does not raise
    assert dashboard.error == "ValueError: cannot draw"
    dashboard.close()
    assert "dashboard stopped drawing: ValueError: cannot draw" in out.getvalue()


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame_times(monkeypatch, clock: ManualClock, draw_s: float = 0.0) -> list[float]:
    """The clock's time at each frame laid out from here on; each frame takes ``draw_s``."""
    times: list[float] = []
    build = layout._build

    def timed(*args):
        times.append(clock.now)
        clock.now += draw_s
        return build(*args)

    monkeypatch.setattr("pcm_hil.ui.dashboard.layout._build", timed)
    return times


def terminal() -> Console:
    return Console(file=StringIO(), width=100, height=30, force_terminal=True)


def sweep(count: int) -> list[Event]:
    """A procedure's start and ``count - 1`` steps."""
    steps = [Event(SweepStep(x=k), k, count) for k in range(1, count)]
    return [Event(SweepStart(), 0, count), *steps]


def test_live_dashboard_draws_at_most_refresh_hz_frames_a_second(monkeypatch):
    clock = ManualClock()
    drawn = frame_times(monkeypatch, clock)
    dashboard = LiveDashboard(terminal(), refresh_hz=4, max_overhead=0, clock=clock)
    for k, event in enumerate(sweep(192)):  # an event every 1/64 s for 3 s
        clock.now = k / 64
        dashboard(event)
    every_quarter = [k / 4 for k in range(12)]  # the first event's, then one each 1/4 s
    assert drawn == every_quarter and dashboard.frames == 12
    clock.now = 3.0
    dashboard.close()  # the events since the last frame: one more, the last
    assert drawn == [*every_quarter, 3.0] and dashboard.frames == 13
    shown = render_text(dashboard.state, 160, 48)  # a procedure of the lab's own documents
    progress = next(line for line in shown.split("\n") if "▶ sweep" in line)
    assert "191/192" in progress and "x=191" in progress


def test_a_procedures_end_draws_at_the_next_event_and_close_only_what_changed(monkeypatch):
    clock = ManualClock()
    drawn = frame_times(monkeypatch, clock)
    dashboard = LiveDashboard(terminal(), refresh_hz=4, max_overhead=0, clock=clock)
    script = [
        (0.00, Event(FirstStart(), 0, 2)),  # the first event: drawn
        (0.01, Event(FirstStep(), 1, 2)),
        (0.02, Event(FirstEnd(status="completed"), 2, 2)),
        (0.03, Event(SecondStart(), 0, 2)),  # after an end: drawn, throttle or not
        (0.04, Event(SecondStep(), 1, 2)),
    ]
    for at, event in script:
        clock.now = at
        dashboard(event)
    assert drawn == [0.00, 0.03]
    clock.now = 0.05
    dashboard.close()
    assert drawn == [0.00, 0.03, 0.05] and dashboard.frames == 3
    drawn.clear()
    unchanged = LiveDashboard(terminal(), refresh_hz=4, clock=clock)
    unchanged(script[0][1])
    unchanged.close()  # nothing new since the first frame: none drawn at close
    assert drawn == [0.05] and unchanged.frames == 1


def test_slow_drawing_is_held_to_max_overhead_of_the_procedures_time(monkeypatch):
    clock = ManualClock()
    draw_s, share = 1 / 16, 1 / 64
    drawn = frame_times(monkeypatch, clock, draw_s)
    dashboard = LiveDashboard(terminal(), refresh_hz=4, max_overhead=share, clock=clock)
    for event in sweep(1100):  # an event each 1/64 s of the procedure's own time
        dashboard(event)
        clock.now += 1 / 64
    # a frame only when the drawing so far and one frame more fit in 1/64 of the time since
    # the first event: n + 1 frames of 1/16 s need 4 (n + 1) s, so at 8 s, 12 s and 16 s
    assert drawn == [0.0, 8.0, 12.0, 16.0]
    assert dashboard.draw_seconds == 4 * draw_s
    assert dashboard.draw_seconds <= share * drawn[-1] + draw_s  # bar the first frame
    dashboard.close()
    assert len(drawn) == dashboard.frames == 5


class Untouchable(np.ndarray):
    """An array on which any numpy operation fails."""

    def __array_ufunc__(self, *args, **kwargs):
        raise AssertionError("array work while updating")

    def __array_function__(self, *args, **kwargs):
        raise AssertionError("array work while updating")


def test_updates_keep_arrays_by_reference_and_leave_the_array_work_to_drawing(
    program_run, drift_run
):
    def untouchable(event):
        values = {
            key: value.view(Untouchable) if isinstance(value, np.ndarray) else value
            for key, value in event.document.values().items()
        }
        return replace(event, document=replace(event.document, **values))

    events = [untouchable(event) for event in (*program_run[3], *drift_run[3])]
    state = DashboardState()
    for event in events:
        state.update(event)  # any array operation would raise
    steps = [event for event in events if event.kind == "step"]
    program = [event.document for event in steps if isinstance(event.document, ProgramIteration)]
    drift = [event.document for event in steps if event.procedure == "drift"]
    # the very documents and arrays of the events, not copies
    assert state.program.step is program[-1]
    assert state.program.step.conductance_uS is program[-1].conductance_uS
    assert state.map_values is drift[-1].conductance_uS
    assert len(state.drift.pending) == len(drift)
    assert all(
        kept is document.conductance_uS
        for kept, document in zip(state.drift.pending, drift, strict=True)
    )
    assert state.drift.means == []  # the means per level wait for a frame

    _, _, _, events = program_run
    state = DashboardState()
    for event in events:
        state.update(event)
    histogram = state.error_histogram()
    render_text(state, 160, 48)
    assert state.error_histogram() is histogram  # computed once, cached until new reads
    last = next(event for event in reversed(events) if event.kind == "step")
    reread = replace(last.document, conductance_uS=last.document.conductance_uS.copy())
    state.update(replace(last, document=reread))
    assert state.error_histogram() is not histogram


def test_the_dashboard_does_not_change_what_a_procedure_does():
    results = []
    for with_dashboard in (False, True):
        chip = PcmChip.open(RESOURCE)
        listeners = []
        if with_dashboard:
            listeners.append(LiveDashboard(Console(file=StringIO(), width=100, height=30)))
        try:
            results.append(program_body(chip, listeners))
        finally:
            for listener in listeners:
                listener.close()
            chip.close()
    plain, watched = results
    for name in ("converged", "stuck", "iterations", "final_uS"):
        assert np.array_equal(getattr(plain, name), getattr(watched, name))


def test_render_is_exactly_the_size_asked_for(drift_run):
    _, _, state, _ = drift_run
    for width, height in ((40, 10), (60, 16), (100, 30), (120, 36), (200, 60)):
        assert_fits(render_text(state, width, height), width, height)
    console = Console(file=StringIO(), width=160, height=48, color_system="truecolor")
    lines = console.render_lines(render(state, 160, 48), console.options, pad=False)
    assert len(lines) == 48


# --- attach --------------------------------------------------------------------------------------


def test_attach_to_a_finished_run_draws_it_and_returns_its_record(store, program_run):
    run_id, result, _, _ = program_run
    out = StringIO()
    console = Console(file=out, width=100, height=30, color_system=None)
    info = attach(store, run_id, console=console, follow=False)
    assert info.id == run_id and info.status == "completed"
    drawn = out.getvalue()
    assert "via store runs.sqlite" in drawn
    assert f"converged {result.summary()['converged_fraction']:.1%}" in drawn
    assert "program-and-verify" in drawn and RESOURCE in drawn
    newest = attach(store, console=Console(file=StringIO(), width=80, height=24), follow=True)
    assert newest.id == store.latest().id


WRITER = """
import sys, time
from dataclasses import asdict, replace
import numpy as np
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.records.store import Recorder, RunStore

store = RunStore(sys.argv[1])
chip = PcmChip.open("{resource}")
run_id = store.start_run("program", resource="{resource}", identity=asdict(chip.identity))
n = chip.config.devices_per_tile
addresses = np.arange(n)
targets = level_targets(16, 25.0)[addresses % 16]
pause = lambda event: time.sleep(0.05) if event.kind == "step" else None
program_and_verify(chip, 0, addresses, targets, listeners=[Recorder(store, run_id, "program"), pause])
"""


def test_attach_follows_a_run_another_process_is_writing(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(resource=RESOURCE), str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with RunStore(path) as store:
            deadline = time.monotonic() + 30
            while store.latest() is None:
                assert time.monotonic() < deadline, "the writer never started its run"
                assert writer.poll() is None, writer.stderr.read()
                time.sleep(0.05)
            run_id = store.latest().id
            state = DashboardState()
            found = {}
            console = Console(file=StringIO(), width=100, height=30)
            # sqlite connections stay in their thread: attach gets its own store
            follower = threading.Thread(
                target=lambda: found.update(info=_attach_in_thread(path, run_id, console, state)),
                daemon=True,
            )
            follower.start()
            follower.join(timeout=60)
            assert not follower.is_alive(), "attach did not return when the run ended"
            assert writer.wait(timeout=30) == 0, writer.stderr.read()
            assert found["info"].status == "completed"
            events = list(store.events(run_id))
            assert state.events == len(events)  # each event read once, none missed
            assert state.procedures["program"].status == "completed"
            end = events[-1].document
            assert isinstance(end, ProgramEnd) and isinstance(state.program.end, ProgramEnd)
            assert state.program.end.converged_fraction == end.converged_fraction
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def _attach_in_thread(path, run_id, console, state):
    with RunStore(path) as store:
        return attach(store, run_id, console=console, refresh_s=0.05, state=state)


# --- a real terminal ---------------------------------------------------------------------------


TMUX_ATTACH = """
import sys
from pcm_hil.ui.dashboard import attach
from pcm_hil.records.store import RunStore

with RunStore(sys.argv[1]) as store:
    info = attach(store, int(sys.argv[2]), refresh_s=0.1)
with open(sys.argv[3], "w") as done:
    done.write(info.status)
"""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_dashboard_in_tmux_follows_a_run_live(tmp_path):
    """A 100×30 tmux pane attaches to a run before it has events; the run is then written
    here; the pane shows it being followed and its end."""
    path, done = tmp_path / "runs.sqlite", tmp_path / "done"
    script = tmp_path / "attach.py"
    script.write_text(textwrap.dedent(TMUX_ATTACH))
    socket = f"pcm-hil-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket, "-f", os.devnull]

    def pane() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "dash"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def wait_for(predicate, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while True:
            shown = pane()
            if predicate(shown):
                return shown
            assert time.monotonic() < deadline, f"timed out; the pane shows:\n{shown}"
            time.sleep(0.1)

    with RunStore(path) as store:
        chip = PcmChip.open(RESOURCE)
        run_id = store.start_run("program", resource=RESOURCE, identity=asdict(chip.identity))
        command = f"{sys.executable} {script} {path} {run_id} {done}; sleep 60"
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "dash", "-x", "100", "-y", "30", command],
            check=True,
            timeout=10,
            env=env,
        )
        try:
            waiting = wait_for(lambda s: "waiting for the first event" in s, 30)
            assert f"run #{run_id} program · running" in waiting
            assert RESOURCE in waiting and "PCM-EMULATOR EMU-0001" in waiting
            result = program_body(chip, [Recorder(store, run_id, "program")])
            deadline = time.monotonic() + 30
            while not done.exists():
                assert time.monotonic() < deadline, f"attach did not return:\n{pane()}"
                time.sleep(0.1)
            assert done.read_text() == "completed"
            final = wait_for(lambda s: "program · completed" in s, 10)
        finally:
            chip.close()
            subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
    lines = final.rstrip("\n").split("\n")
    assert len(lines) <= 30 and max(len(line) for line in lines) <= 100
    for title in ("pcm-hil", "progress", "program-and-verify", "errors & warnings"):
        assert title in final
    assert "tile 0" in final and "✓ program" in final
    assert f"converged {result.summary()['converged_fraction']:.1%}" in final
