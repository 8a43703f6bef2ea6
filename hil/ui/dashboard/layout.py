"""Laying the panels out: which panels are shown and at what size for the room there is;
``render`` (a rich renderable of exactly width × height) and ``render_text`` (plain text),
both drawn at a wall time the caller may give (``now``: the phase line's elapsed time and
spinner, the running procedures' elapsed times and ETAs)."""

from __future__ import annotations

import time
from io import StringIO

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.layout import Layout

from pcm_hil.ui.dashboard.data_panels import accuracy_panel, curve_panel, drift_panel, program_panel
from pcm_hil.ui.dashboard.draw import Context
from pcm_hil.ui.dashboard.map import map_factor, map_panel
from pcm_hil.ui.dashboard.run_panels import alerts_panel, identity_panel, progress_panel
from pcm_hil.ui.dashboard.state import DashboardState
from pcm_hil.ui.dashboard.sweep import rows_wanted, sweep_panel


def _content_panels(state: DashboardState) -> list[tuple[str, bool, int]]:
    """(name, has data, rows wanted with borders) for the right-hand panels, in display order.
    A procedure started has no data until its first step has something to show."""
    out = []
    program, drift = state.program, state.drift
    has = program is not None and (program.step is not None or program.end is not None)
    found = state.program_levels()
    earlier = 1 if state.earlier_programs else 0
    out.append(("program", has, 5 + earlier + (found[0].size + 1 if found else 0)))
    has = drift is not None and (bool(drift.times) or drift.end is not None)
    found = state.drift_levels()
    out.append(("drift", has, 4 + (found[0].size + 1 if found else 0)))
    rows = len({t for t, _ in state.infer}) + 3 if state.infer else 0
    rows += min(len(state.train), 8) + 3 if state.train else 0
    out.append(("accuracy", bool(state.infer or state.train), rows + 2))
    if state.curves:
        out.append(("curve", True, 3 + len(next(reversed(state.curves.values()))[1])))
    if state.sweep is not None:
        out.append(("sweep", bool(state.sweep.points), rows_wanted(state.sweep)))
    return out


#: Rows a panel with data needs to be worth showing (borders included): the drift panel its
#: head, the table's header and a row.
_LEAST = {"drift": 5}


def _allocate(state: DashboardState, height: int, large: bool) -> list[tuple[str, int]]:
    """Rows per right-hand panel, greedily: the panels with data, the one with the newest data
    first — so a step's result keeps its room until the next step has something to show —
    then (at large sizes) placeholders; leftover rows to the first."""
    panels = _content_panels(state)
    order = sorted(panels, key=lambda p: (not p[1], -state.touched.get(p[0], -1)))
    if not large:
        order = [p for p in order if p[1]]
    chosen: dict[str, int] = {}
    left = height
    placeholders = sum(1 for p in order if not p[1]) * 3 if large else 0
    for name, has_data, want in order:
        if has_data:
            rows = min(want, left - placeholders)
            if rows >= _LEAST.get(name, 4):
                chosen[name] = rows
                left -= rows
        elif left >= 3:
            chosen[name] = 3
            left -= 3
            placeholders -= 3
    if chosen and left > 0:
        chosen[next(name for name, *_ in order if name in chosen)] += left
    return [(name, chosen[name]) for name, *_ in panels if name in chosen]


_BUILDERS = {
    "program": program_panel,
    "drift": drift_panel,
    "accuracy": accuracy_panel,
    "curve": curve_panel,
    "sweep": lambda state, rows, width, ctx: sweep_panel(state.sweep, rows, width, ctx),
}


def _build(state: DashboardState, width: int, height: int, colour: bool, now: float) -> Layout:
    """The panels chosen and sized for ``width × height``: identity and progress (with the
    phase line) on top, the map and the right-hand panels below, errors and warnings at the
    bottom."""
    large = width >= 120 and height >= 36
    ctx = Context(colour=colour, now=now, large=large)
    root = Layout()
    if height < 10 or width < 40:  # too small for panels: progress only
        root.update(progress_panel(state, width, max(height - 3, 0), ctx))
        return root
    alerts = state.alerts()
    procedures = len(state.procedures)
    top: list[Layout] = []
    if large:
        lines = min(max(procedures, 3), 4)
        top_height = lines + 1 + 2
        row = Layout(size=top_height, name="top")
        row.split_row(
            Layout(identity_panel(state, ctx), name="identity"),
            Layout(progress_panel(state, width - width // 2, lines, ctx), name="progress"),
        )
        top.append(row)
        alert_rows = min(max(len(alerts), 1), 4) + 2
    else:
        lines = min(max(procedures, 1), 2 if height >= 20 else 1)
        top_height = 4 + lines + 1 + 2
        top.append(Layout(identity_panel(state, ctx), size=4, name="identity"))
        top.append(
            Layout(progress_panel(state, width, lines, ctx), size=lines + 3, name="progress")
        )
        alert_rows = min(len(alerts), 1 if height < 30 else 3) + 2 if alerts else 0
    body_height = height - top_height - alert_rows
    columns: list[Layout] = []
    if body_height >= 4:
        has_map = state.tile_image() is not None
        map_width = 0
        if has_map or large or state.tile is not None:  # a tile asked for: say if not read
            map_width = max(int(width * 0.45), 20) if has_map else 30
            shape = state.tile_shape()
            if has_map and shape:  # as wide as the downsampled tile needs, no wider
                factor = map_factor(shape, map_width - 4, body_height - 3)
                drawn = -(-shape[1] // factor) * 2
                map_width = min(map_width, max(drawn + 4, 24))
        stack = _allocate(state, body_height, large)
        if map_width and not stack:
            map_width = width
        if map_width:
            columns.append(Layout(map_panel(state, ctx), size=map_width, name="map"))
        if stack:
            right = Layout(name="right")
            inner = width - map_width - 4
            right.split_column(
                *(
                    Layout(_BUILDERS[name](state, rows, inner, ctx), size=rows, name=name)
                    for name, rows in stack
                )
            )
            columns.append(right)
    parts = list(top)
    if columns:
        body = Layout(name="body")
        body.split_row(*columns)
        parts.append(body)
        if alert_rows:
            parts.append(
                Layout(alerts_panel(state, alert_rows - 2), size=alert_rows, name="alerts")
            )
    else:  # no body: errors and warnings take the room
        parts.append(Layout(alerts_panel(state, height - 2), name="alerts"))
    root.split_column(*parts)
    return root


class _Screen:
    """The whole dashboard at a fixed size, laid out when drawn."""

    def __init__(self, state: DashboardState, width: int, height: int, now: float | None) -> None:
        self.state = state
        self.width = width
        self.height = height
        self.now = now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(min(self.width, options.max_width), 1)
        height = max(self.height, 1)
        now = time.time() if self.now is None else self.now
        layout = _build(self.state, width, height, console.color_system is not None, now)
        yield from layout.__rich_console__(console, options.update(width=width, height=height))


def render(
    state: DashboardState, width: int, height: int, now: float | None = None
) -> RenderableType:
    """The dashboard as a rich renderable of exactly ``width × height`` cells, drawn at wall
    time ``now`` (s since the epoch; default: when drawn)."""
    return _Screen(state, width, height, now)


def render_text(
    state: DashboardState, width: int = 80, height: int = 24, now: float | None = None
) -> str:
    """The dashboard as plain text, ``height`` lines of at most ``width`` characters, at wall
    time ``now`` (default: the time it is)."""
    out = StringIO()
    console = Console(
        file=out,
        width=width,
        height=height,
        force_terminal=False,
        color_system=None,
        legacy_windows=False,
        emoji=False,
    )
    console.print(render(state, width, height, now))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
