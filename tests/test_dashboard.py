"""The live dashboard: panels and values for recorded program-and-verify, drift,
characterization, inference and training runs at 80×24 and 160×48; live events and events
read back from the run store draw the same; drift on one shared log-time axis and scale
(levels drifting alike draw the same line, read noise a flat one); each step's result kept
until the next has data; the phase line moving with no new document, on a clock the tests
set, and the timer that draws it; the map's tile chosen (``--tile``) and its characters
without colour; updates that keep arrays by reference and leave the array work to drawing;
throttled live drawing; attaching to a finished run and following one written by another
process; and the dashboard in a real terminal (tmux). Toy procedures of the tests declare their own documents, as a lab's own
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
from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart
from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.characterize import programming_curve
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock
from pcm_hil.ui.dashboard import DashboardState, LiveDashboard, attach, layout, render, render_text
from pcm_hil.ui.dashboard.drift_axis import on_columns, shared_scale, time_axis
from pcm_hil.ui.dashboard.phase import SPINNER

RESOURCE = "emulator?profile=small&seed=1"
SIZES = ((80, 24), (160, 48))


# --- toy procedures: their own documents, as a lab's procedure declares them -------------------


@dataclass(frozen=True)
class ScanStart(Start, name="scan.start"):
    pass


@dataclass(frozen=True)
class ScanStep(Step, name="scan.step"):
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
        # no settle time: the first reads are due 1 s after the last pulse, and taken then (a
        # verify read settle_s after it would leave the clock past those due sooner)
        settle_s=0,
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
    assert "after programming" in text  # the map: the reads after programming ended


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
        is_read=np.ones(address.size, dtype=bool),
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
    # 32 of 64 columns read, levels by half: the lightest character, then the densest; 4×4 cells
    assert row == "." * 16 + "@" * 16
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
    assert "drift" in small and "ΔG/G₀" in small
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


# --- the shared drift axis -------------------------------------------------------------------

LEVELS_US = (2.0, 8.0, 14.0, 20.0)
SCHEDULE = log_times(1.0, 1e6, 13)  # 13 reads, two a decade


def drift_start(devices_per_level: int = 16, tile: int = 1) -> DriftStart:
    targets = np.repeat(np.asarray(LEVELS_US, dtype=np.float32), devices_per_level)
    n = targets.size
    return DriftStart(
        tile=np.full(n, tile, np.int32),
        address=np.arange(n, dtype=np.int32),
        target_uS=targets,
        usable=np.ones(n, dtype=bool),
        programmed_at_s=np.zeros(n),
        devices=n,
        times_s=SCHEDULE,
        fit_from_s=20.0,
        reads_per_point=1,
    )


def drift_state(conductance, reads: int = len(SCHEDULE)) -> DashboardState:
    """A drift measurement's start and its first ``reads`` reads, each device read as
    ``conductance(target, t, k)`` (k: the read's index)."""
    start = drift_start()
    state = DashboardState()
    state.update(Event(start, 0, len(SCHEDULE), wall_time_s=1000.0))
    for k, t in enumerate(SCHEDULE[:reads]):
        values = conductance(start.target_uS.astype(np.float64), float(t), k)
        read = DriftRead(t_s=float(t), read_at_s=float(t), conductance_uS=values.astype(np.float32))
        state.update(Event(read, k + 1, len(SCHEDULE), wall_time_s=1000.0 + k))
    return state


def sparklines(text: str) -> dict[float, str]:
    """Each level's sparkline in the drift panel, by its target."""
    found = {}
    for level in LEVELS_US:
        label = f" {level:.2f} "
        row = next(line for line in text.split("\n") if label in line and "→" in line)
        found[level] = row.split(label, 1)[1].split()[0]
    return found


def drift_header(text: str) -> str:
    return next(line for line in text.split("\n") if "level µS" in line and "ΔG/G₀" in line)


def test_levels_drifting_alike_draw_the_same_line_on_one_scale():
    nu = 0.05  # every level: G = G₁ (t / 1 s)^−ν, the same drift relative to its first read
    state = drift_state(lambda target, t, k: target * t**-nu)
    text = render_text(state, 100, 30)
    lines = sparklines(text)
    assert len(set(lines.values())) == 1  # the very same characters for every level
    line = lines[LEVELS_US[0]]
    assert len(line) == len(SCHEDULE)  # one column per scheduled read, as they fit
    assert line[0] == "█" and line[-1] == "▁" and list(line) == sorted(line, reverse=True)
    # after 10⁶ s, G/G₁ − 1 = 10^(−0.3) − 1 = −49.9%: 7% a step, the eighth step at −49%
    assert "ΔG/G₀ 0…−49%" in drift_header(text)
    # the same at a size where levels have a row each but the columns are fewer than reads
    narrow = sparklines(render_text(state, 80, 24))
    assert len(set(narrow.values())) == 1


def test_the_time_axis_is_laid_out_from_the_schedule_before_the_reads_arrive():
    nu = 0.05
    state = drift_state(lambda target, t, k: target * t**-nu, reads=5)
    text = render_text(state, 100, 30)
    lines = sparklines(text)
    assert len(set(lines.values())) == 1
    line = lines[LEVELS_US[0]]
    # the whole schedule's columns, the 8 not read yet pending; the scale from the reads so far
    assert len(line) == len(SCHEDULE) and line[5:] == "·" * 8
    assert line[0] == "█" and "·" not in line[:5]
    relative = 100 * (SCHEDULE[4] ** -nu - 1)  # −20.6% at the fifth read
    assert f"{relative:.1f}" == "-20.6"
    assert "ΔG/G₀ 0…−21%" in drift_header(text)  # 3% a step: −21% the lowest


def test_read_noise_without_drift_draws_flat_lines():
    rng = np.random.default_rng(7)
    signs = rng.choice([-1.0, 1.0], size=(len(SCHEDULE), len(LEVELS_US)))

    def noisy(target, t, k):  # each level's mean ±0.3% from read to read, no drift
        level = np.searchsorted(LEVELS_US, target)
        return target * (1 + 0.003 * signs[k, level])

    text = render_text(drift_state(noisy), 100, 30)
    for line in sparklines(text).values():
        assert len(line) == len(SCHEDULE) and len(set(line)) == 1  # flat: one character
    assert "ΔG/G₀ 0…−14%" in drift_header(text)  # the smallest scale: 2% a step

    def one_drifts(target, t, k):  # the lowest level drifts, the others only jitter
        return np.where(target == LEVELS_US[0], target * t**-0.05, noisy(target, t, k))

    lines = sparklines(render_text(drift_state(one_drifts), 100, 30))
    assert lines[LEVELS_US[0]][0] == "█" and lines[LEVELS_US[0]][-1] == "▁"
    for level in LEVELS_US[1:]:
        assert set(lines[level]) == {"█"}  # at 0, on the drifting level's scale


def test_drift_axis_columns_and_scale():
    axis = time_axis(SCHEDULE, [1.0, 10.0, 1e6], 40)
    assert axis.columns == 13 and axis.column.tolist() == [0, 2, 12]
    assert time_axis(SCHEDULE, [1.0, 1e6], 7).column.tolist() == [0, 6]
    columns = on_columns(np.array([[0.0], [-10.0]]), time_axis(SCHEDULE, [1.0, 10.0], 40))
    # a column the reads passed without one holds the line; after the last read: NaN
    assert columns[:3, 0].tolist() == [0.0, 0.0, -10.0] and np.isnan(columns[3:, 0]).all()
    # two reads each ±0.3% off: ±0.6% apart, within a step's half
    scale = shared_scale(np.array([0.6, -0.6, 0.0]))
    assert (scale.step_pct, scale.label(), scale.line(np.array([0.6, -0.6, np.nan]))) == (
        2.0,
        "0…−14%",
        "██·",
    )
    assert shared_scale(np.array([0.0, -70.0])).label() == "0…−70%"
    rising = shared_scale(np.array([0.0, 6.0]))
    assert rising.label() == "+6…−8%" and rising.line(np.array([0.0, 6.0])) == "▅█"


# --- each step's result stays until the next has something to show ---------------------------


def test_the_programming_stays_on_screen_until_the_drift_measurement_reads(drift_run):
    _, result, _, events = drift_run
    converged = result.programming.summary()["converged_fraction"]
    state = DashboardState()
    state.set_run(None, RESOURCE)
    kinds = [type(event.document).__name__ for event in events]
    for event in events[: kinds.index("DriftStart") + 1]:
        state.update(event)
    text = render_text(state, 80, 24)
    assert "program-and-verify" in text and f"converged {converged:.1%}" in text
    assert "▶ drift" in text and "ΔG/G₀" not in text  # no drift panel before a read
    assert "after programming" in text  # the map: the programming's last reads
    state.update(events[kinds.index("DriftRead")])
    text = render_text(state, 80, 24)
    assert "─ drift ─" in text and "ΔG/G₀" in text and "drift t = 1 s" in text


def test_a_new_programming_keeps_the_last_one_until_its_first_verify_read(program_run):
    _, result, _, events = program_run
    converged = result.summary()["converged_fraction"]
    state = DashboardState()
    state.set_run(None, RESOURCE)
    for event in events:
        state.update(event)
    first = events[0].document
    again = replace(first, tiles=[2], tile=np.full(first.tile.size, 2, np.int32))
    state.update(Event(again, 0, 30))
    text = render_text(state, 160, 48)
    assert "program-and-verify · the next starting" in text
    assert f"converged {converged:.1%}" in text and "tile 0 conductance" in text
    step = next(e.document for e in events if isinstance(e.document, ProgramIteration))
    state.update(Event(step, 1, 30))
    text = render_text(state, 160, 48)
    assert "the next starting" not in text and "tile(s) 2" in text
    assert f"before: tile(s) 0, 4096 devices, {converged:.1%} converged" in text
    assert "tile 2 conductance" in text and "program iteration 1" in text


def test_inference_and_training_keep_the_last_results_until_new_ones_arrive():
    state = DashboardState()
    for event in infer_events():
        state.update(event)
    state.update(Event(InferStart(chips=1, weights=["plain"], times_s=[1.0]), 0, 1))
    assert "mean over 2 chips" in render_text(state, 80, 24)  # the last inference's table
    state.update(Event(InferAccuracy(1.0, "plain", {"none": 0.5}, chip=0), 1, 1))
    text = render_text(state, 80, 24)
    assert "50.0%" in text and "mean over 2 chips" not in text
    state.update(Event(TrainStart(epochs=3, lr=0.1, batch=10, epsilon_uS=0.3), 0, 3))
    state.update(Event(TrainEpoch(1, pulses_applied=10, test_accuracy=0.6), 1, 3))
    state.update(Event(TrainStart(epochs=3, lr=0.1, batch=10, epsilon_uS=0.3), 0, 3))
    assert state.train == [(1, 0.6, 10)]  # until the next run's first epoch
    state.update(Event(TrainEpoch(1, pulses_applied=20, test_accuracy=0.7), 1, 3))
    assert state.train == [(1, 0.7, 20)]


# --- the phase line: a frame that moves while no document arrives -----------------------------


@dataclass(frozen=True, kw_only=True)
class SecondEnd(End, name="second.end"):
    pass


def software_phase() -> list[Event]:
    """``first`` runs ``second``, which ends at 103 s; then ``first`` works on, in software,
    with nothing to say."""
    return [
        Event(FirstStart(), 0, 2, wall_time_s=100.0),
        Event(SecondStart(), 0, 1, wall_time_s=101.0),
        Event(SecondStep(), 1, 1, wall_time_s=102.0),
        Event(SecondEnd(status="completed"), 1, 1, wall_time_s=103.0),
        Event(FirstStep(), 1, 2, wall_time_s=103.0),
    ]


def phase_of(text: str) -> str:
    return next(line for line in text.split("\n") if "working" in line).strip("│ ")


def test_the_phase_line_moves_during_a_long_software_phase_with_no_new_document():
    state = DashboardState()
    for event in software_phase():
        state.update(event)
    early = render_text(state, 80, 24, now=115.0)
    later = render_text(state, 80, 24, now=115.3)
    assert early != later  # the same state, a later time: another frame
    before, after = phase_of(early), phase_of(later)
    assert before.endswith("first · working since second completed · 12.0 s")
    assert after.endswith("first · working since second completed · 12.3 s")
    assert before[0] in SPINNER and after[0] in SPINNER and before[0] != after[0]
    # the running procedure's own progress line keeps time as well
    assert "15.0 s" in early and "15.3 s" in later
    # a procedure between its steps: how long it has been at the next one
    state.update(Event(SecondStart(), 0, 3, wall_time_s=120.0))
    assert phase_of(render_text(state, 80, 24, now=125.0)).endswith(
        "second · working on step 1/3 · 5.00 s"
    )
    # once the run has ended: no spinner, how long it took
    state.update(Event(SecondEnd(status="completed"), 3, 3, wall_time_s=129.0))
    state.update(Event(FirstEnd(status="completed"), 2, 2, wall_time_s=130.0))
    done = render_text(state, 80, 24, now=200.0)
    assert "✓ completed in 30.0 s · last event" in done and not set(SPINNER) & set(done)


def test_the_live_dashboard_draws_on_its_timer_when_no_event_arrives(monkeypatch):
    clock = ManualClock()
    drawn = frame_times(monkeypatch, clock)
    out = StringIO()
    console = Console(file=out, width=80, height=24, force_terminal=True, color_system=None)
    # one clock for both the throttle and the frames' wall time; ticks by hand
    dashboard = LiveDashboard(console, refresh_hz=4, clock=clock, wall_clock=clock, timer=False)
    for event in software_phase():
        clock.now = event.wall_time_s
        dashboard(event)
    assert drawn == [100.0, 101.0, 102.0, 103.0, 103.0]  # a second apart: each drawn
    dashboard.tick()  # no time has passed: no frame
    assert len(drawn) == 5
    shown = []
    for at in (110.0, 110.1, 112.5):  # a tick draws when the throttle allows, event or not
        clock.now = at
        dashboard.tick()
        shown.append(out.getvalue())
    assert drawn[5:] == [110.0, 112.5]
    assert "working since second completed · 7.00 s" in shown[0]
    assert "working since second completed · 9.50 s" in shown[2]
    dashboard.close()


def test_with_no_event_for_idle_s_the_timer_draws_whatever_the_overhead_budget(monkeypatch):
    clock = ManualClock()
    drawn = frame_times(monkeypatch, clock, draw_s=0.5)  # frames far over 2% of the time
    dashboard = LiveDashboard(terminal(), refresh_hz=4, clock=clock, wall_clock=clock, timer=False)
    events = scan(4)
    for at, event in zip((0.0, 0.6, 0.7), events, strict=False):
        clock.now = at
        dashboard(event)
    assert drawn == [0.0]  # the first frame's 0.5 s used the budget up for 25 s
    for at in (1.0, 1.7, 2.5, 3.2):  # a second with no event, and none since the last frame
        clock.now = at
        dashboard.tick()
    assert drawn == [0.0, 1.7, 3.2]
    clock.now = 3.3
    dashboard(events[3])  # an event: the budget again, until a second without one
    clock.now = 3.9
    dashboard.tick()
    assert drawn == [0.0, 1.7, 3.2]
    dashboard.close()


def test_the_timer_thread_runs_from_the_first_frame_until_close():
    console = Console(file=StringIO(), width=80, height=24, force_terminal=True)
    dashboard = LiveDashboard(console, timer=True)
    assert dashboard._ticker is None  # nothing drawn yet, nothing to tick
    dashboard(software_phase()[0])
    ticker = dashboard._ticker
    assert ticker is not None and ticker.is_alive() and ticker.daemon
    dashboard.close()
    assert not ticker.is_alive()
    on_file = LiveDashboard(Console(file=StringIO(), width=80, height=24), timer=True)
    on_file(software_phase()[0])
    assert on_file._ticker is None  # not a terminal: the last frame only, at close
    on_file.close()
    assert LiveDashboard(console, clock=ManualClock()).timer is False  # its own clock: tick()


# --- the conductance map: the tile chosen, readable without colour ----------------------------


def two_tiles(tile: int | None) -> DashboardState:
    """Tile 0 programmed low (2 µS), then tile 1 read high (23 µS) by a drift measurement."""
    state = DashboardState(tile=tile, geometry=(8, 8))
    n = 64
    address = np.arange(n, dtype=np.int32)
    low = np.full(n, 2.0, np.float32)
    start = ProgramStart(
        strategy="amplitude",
        tolerance_uS=0.5,
        max_iterations=5,
        devices=n,
        tiles=[0],
        tile=np.zeros(n, np.int32),
        address=address,
        target_uS=low,
    )
    step = ProgramIteration(
        iteration=1,
        converged=n,
        stuck_devices=0,
        devices=n,
        is_read=np.ones(n, dtype=bool),
        conductance_uS=low,
        finished=np.ones(n, dtype=bool),
    )
    drift = replace(
        drift_start(devices_per_level=16, tile=1), address=address, target_uS=np.full(n, 23.0)
    )
    read = DriftRead(t_s=1.0, read_at_s=1.0, conductance_uS=np.full(n, 23.0, np.float32))
    for event in (Event(start, 0, 5), Event(step, 1, 5), Event(drift, 0, 13), Event(read, 1, 13)):
        state.update(event)
    return state


def map_rows(text: str, tile: int) -> list[str]:
    lines = text.split("\n")
    top = next(k for k, line in enumerate(lines) if f"─ tile {tile} µS ─" in line)
    column = lines[top].index(f"╭─ tile {tile}")
    rows = []
    for line in lines[top + 1 :]:
        cell = line[column + 2 :].split("│")[0].strip()
        if line[column] != "│" or cell.startswith("0 "):
            break
        rows.append(cell)
    return rows


def test_tile_chooses_the_tile_the_map_shows():
    newest = render_text(two_tiles(None), 100, 30)  # by default: the newest values read
    assert map_rows(newest, 1) == ["@" * 16] * 8 and "drift t = 1 s" in newest
    chosen = render_text(two_tiles(0), 100, 30)  # --tile 0: the programming of tile 0
    assert map_rows(chosen, 0) == ["." * 16] * 8 and "program iteration 1" in chosen
    assert "tile 1 µS" not in chosen
    nothing = render_text(two_tiles(5), 100, 30)
    assert "tile 5 µS" in nothing and "no reads on tile 5 yet" in nothing


def test_pcm_hil_dashboard_tile_option(store, drift_run, capsys):
    from pcm_hil.cli.main import main

    run_id = drift_run[0]
    assert main(["dashboard", str(run_id), "--once", "--tile", "1", "--runs", str(store.path)]) == 0
    shown = capsys.readouterr()
    assert "tile 1 µS" in shown.out + shown.err and "drift t = 1 y" in shown.out + shown.err
    assert main(["dashboard", str(run_id), "--once", "--tile", "0", "--runs", str(store.path)]) == 0
    shown = capsys.readouterr()
    assert "tile 0 µS" in shown.out + shown.err
    assert "no reads on tile 0 yet" in shown.out + shown.err


def test_the_map_reads_by_its_characters_with_or_without_colour():
    state = two_tiles(None)
    state.tile = None
    plain = render_text(state, 100, 30)
    assert "0 .:-=+*#%@ 25 µS" in plain  # the legend: the ramp, low to high, in µS
    assert map_rows(plain, 1) == ["@" * 16] * 8
    assert map_rows(render_text(two_tiles(0), 100, 30), 0) == ["." * 16] * 8
    console = Console(file=StringIO(), width=100, height=30, color_system="truecolor", record=True)
    console.print(render(state, 100, 30, now=0.0))
    coloured = console.export_text(styles=True, clear=False)
    assert "\x1b[" in coloured and "48;2;" in coloured  # viridis behind the characters
    text = console.export_text()
    assert map_rows(text, 1) == ["@" * 16] * 8 and "0 .:-=+*#%@ 25 µS" in text


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

    def time(self):
        return self.chip.time()

    def clock_mode(self):
        return self.chip.clock_mode()

    def advance(self, seconds):
        return self.chip.advance(seconds)


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


def scan(count: int) -> list[Event]:
    """A procedure's start and ``count - 1`` steps."""
    steps = [Event(ScanStep(x=k), k, count) for k in range(1, count)]
    return [Event(ScanStart(), 0, count), *steps]


def test_live_dashboard_draws_at_most_refresh_hz_frames_a_second(monkeypatch):
    clock = ManualClock()
    drawn = frame_times(monkeypatch, clock)
    dashboard = LiveDashboard(terminal(), refresh_hz=4, max_overhead=0, clock=clock)
    for k, event in enumerate(scan(192)):  # an event every 1/64 s for 3 s
        clock.now = k / 64
        dashboard(event)
    every_quarter = [k / 4 for k in range(12)]  # the first event's, then one each 1/4 s
    assert drawn == every_quarter and dashboard.frames == 12
    clock.now = 3.0
    dashboard.close()  # the events since the last frame: one more, the last
    assert drawn == [*every_quarter, 3.0] and dashboard.frames == 13
    shown = render_text(dashboard.state, 160, 48)  # a procedure of the lab's own documents
    progress = next(line for line in shown.split("\n") if "▶ scan" in line)
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
    for event in scan(1100):  # an event each 1/64 s of the procedure's own time
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
    # a programming's iterations wait to be folded into its latest reads until drawn
    assert state.program.verify.pending[-1] is program[-1]
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
