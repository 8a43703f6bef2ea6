"""The live terminal dashboard: a procedure's run as it happens, or a recorded run.

``DashboardState`` takes events — live from a procedure, or read back from the run store:
the same ``Event``s with the same typed documents — and keeps only what the panels need: the
newest arrays by reference and a few scalars per step. Everything costly (level grouping,
error histograms, the downsampled conductance map, drift means per level) is computed when a
frame is drawn, and cached until new data arrives, so listening costs a procedure a few
microseconds per event.

``render(state, width, height)`` lays the panels out to fill exactly ``width × height``:

1. the instrument and the run — resource, chip model, serial and firmware, run id, status;
2. progress per procedure — done/total, elapsed, ETA;
3. a tile's conductance map, downsampled to the room there is (half-block cells coloured on a
   colour terminal, a shade ramp without colour; devices not read are blank);
4. program-and-verify — converged fraction, stuck devices, iteration, and per target level a
   histogram of |read − target| in units of the tolerance;
5. drift — mean conductance of each level against log time, and the fitted ν per level once
   the drift measurement ends;
6. accuracy — inference accuracy against time after programming per weights and
   compensation, in-situ training accuracy per epoch (characterization curves, when that is
   what runs, take this place);
7. errors and warnings — the run's error, failed or cancelled procedures, stuck devices.

At 80×24 the panels without data are left out; with more room (e.g. 160×48) identity and
progress sit side by side, the map grows and every panel is shown, with a placeholder until
its data arrive.

``LiveDashboard`` is a listener that draws with ``rich.live.Live`` (no auto-refresh thread), at
most ``refresh_hz`` times a second — and less often if drawing a frame costs more than a small
share of the time between frames — plus once at each procedure's end and at ``close()``.
``attach(store)`` follows a recorded run from another process by polling the run store.

The package, one concern a module: ``state`` (what the dashboard knows, fed by events) and
``reduce`` (the array work behind the panels); ``format`` (durations, numbers, sparklines) and
``draw`` (drawing primitives); the panels — ``map``, ``run_panels`` (identity, progress, errors
and warnings) and ``data_panels`` (program-and-verify, drift, accuracy, curves); ``layout``
(choosing and sizing the panels, ``render``); ``live`` (``LiveDashboard``) and ``follow``
(``attach``).
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
