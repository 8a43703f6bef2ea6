"""The live terminal dashboard: a procedure's run as it happens, or a recorded run.

``DashboardState`` takes events — live from a procedure, or read back from the run store:
the same ``Event``s with the same typed documents — and keeps only what the panels need: the
newest arrays by reference and a few scalars per step. Everything costly (level grouping,
error histograms, the downsampled conductance map, drift means per level) is computed when a
frame is drawn, and cached until new data arrives, so listening costs a procedure a few
microseconds per event.

``render(state, width, height, now=None)`` lays the panels out to fill exactly
``width × height``, at wall time ``now`` (default: the time it is):

1. the instrument and the run — resource, chip model, serial and firmware, run id, status;
2. progress — the phase line (what is under way and for how long, with a spinner, also
   between documents: software work, a wait), then per procedure done/total, elapsed, ETA;
3. a tile's conductance map (``DashboardState(tile=N)``, ``pcm-hil dashboard --tile N``;
   default: the tile of the newest values read), downsampled to the room there is, each cell
   two characters of a ramp whose density follows the conductance — coloured as well on a
   colour terminal — with the ramp's µS range as its legend; devices not read are blank;
4. program-and-verify — converged fraction, stuck devices, iteration, and per target level a
   histogram of |read − target| in units of the tolerance;
5. drift — each level's change since its first read, ΔG/G₀, on one log-time axis laid out
   from the read schedule and one vertical scale for all levels (printed), and the fitted ν
   per level once the drift measurement ends;
6. accuracy — inference accuracy against time after programming per weights and
   compensation, in-situ training accuracy per epoch (characterization curves, when that is
   what runs, take this place);
7. errors and warnings — the run's error, failed or cancelled procedures, stuck devices.

At 80×24 the panels without data are left out, and the panel with the newest data gets its
rows first; with more room (e.g. 160×48) identity and progress sit side by side, the map
grows and every panel is shown, with a placeholder until its data arrive. A step's result
stays on screen until the next step has something to show: a programming, drift measurement,
inference or training that starts replaces the one shown with its first data only.

``LiveDashboard`` is a listener that draws with ``rich.live.Live``, at most ``refresh_hz``
times a second — and less often if drawing a frame costs more than a small share of the time
between frames — plus once at each procedure's end and at ``close()``; its timer draws while
no event arrives (at least a frame a second once none has come for a second), so the phase
line moves. ``attach(store)`` follows a recorded run from another process by polling the run
store.

The package, one concern a module: ``state`` (what the dashboard knows, fed by events),
``phase`` (what the run is doing now) and ``reduce`` (the array work behind the panels);
``format`` (durations, numbers, sparklines) and ``draw`` (drawing primitives); the panels —
``map``, ``run_panels`` (identity, progress and the phase line, errors and warnings) and
``data_panels`` (program-and-verify, drift, accuracy, curves), with ``drift_axis`` (the drift
panel's shared time axis and scale); ``layout`` (choosing and sizing the panels, ``render``);
``live`` (``LiveDashboard``) and ``follow`` (``attach``).
"""

from pcm_hil.ui.dashboard.follow import attach
from pcm_hil.ui.dashboard.layout import render, render_text
from pcm_hil.ui.dashboard.live import LiveDashboard
from pcm_hil.ui.dashboard.state import DashboardState

__all__ = [
    "DashboardState",
    "LiveDashboard",
    "attach",
    "render",
    "render_text",
]
