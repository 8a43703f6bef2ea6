"""Following a recorded run: ``attach`` reads a run's events from the run store — written
by another process, perhaps — and draws them with a ``LiveDashboard`` until the run ends;
while no new event arrives it draws on the dashboard's throttle, so the phase line moves."""

from __future__ import annotations

import time

from rich.console import Console

from pcm_hil.records.store import RunInfo, RunStore
from pcm_hil.ui.dashboard.live import LiveDashboard
from pcm_hil.ui.dashboard.state import DashboardState


def attach(
    store: RunStore,
    run_id: int | None = None,
    *,
    console: Console | None = None,
    refresh_s: float = 0.5,
    follow: bool = True,
    state: DashboardState | None = None,
    tile: int | None = None,
) -> RunInfo:
    """Show a recorded run (the newest when ``run_id`` is None): read its events so far and,
    with ``follow``, keep reading new ones every ``refresh_s`` while it is running — another
    process may be writing it — until it ends or Ctrl-C. ``tile``: the tile the conductance
    map shows (default: the tile of the newest values read). Returns the run's final
    record."""
    info = store.run(run_id) if run_id is not None else store.latest()
    if info is None:
        raise LookupError(f"no runs recorded in {store.path}")
    state = state or DashboardState()
    if tile is not None:
        state.tile = tile
    state.source = f"store {store.path.name}"
    state.set_run(info)
    # its own loop draws: no timer thread
    dashboard = LiveDashboard(
        console, refresh_hz=1.0 / max(refresh_s, 0.05), state=state, timer=False
    )
    last_seq = -1
    try:
        while True:
            info = store.run(info.id)  # before the events: when it says ended, all are written
            state.set_run(info)
            new = 0
            for event in store.events(info.id, after=last_seq):
                state.update(event)
                if event.seq is not None:  # a stored event always has its seq
                    last_seq = event.seq
                new += 1
            if new or not dashboard.frames:
                dashboard.refresh()
            else:  # nothing new: the time goes on, the phase line shows it
                dashboard.tick()
            if not follow or info.status != "running":
                break
            time.sleep(refresh_s)
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.close()
    return store.run(info.id)
