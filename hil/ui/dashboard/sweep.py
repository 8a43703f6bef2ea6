"""A sweep on the dashboard (``pcm_hil.sweep``): what it keeps of the sweep's documents, and
its panel — the grid swept, the points each worker computed and their mean time, and the
newest points with their parameters and results, newest first.

The progress panel already shows the sweep's points done of all, its elapsed time and ETA;
this panel says which points those were and what they gave.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from pcm_hil.documents.sweep import SweepEnd, SweepPoint, SweepStart
from pcm_hil.ui.dashboard.draw import Context, Grid, panel
from pcm_hil.ui.dashboard.format import duration, number

#: Newest points kept for the panel (a sweep is thousands of points; the panel shows a few).
KEPT = 64


@dataclass
class SweepView:
    """The sweep shown: its start, the newest ``KEPT`` points, points and seconds per worker,
    its end once it came."""

    start: SweepStart
    points: deque = field(default_factory=lambda: deque(maxlen=KEPT))
    per_worker: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    computed: int = 0
    end: SweepEnd | None = None

    def add(self, point: SweepPoint) -> None:
        self.points.append(point)
        self.per_worker[_short(point.worker)] += 1
        self.seconds += float(point.seconds)
        self.computed += 1


def take(view: SweepView | None, document: Any) -> SweepView | None:
    """The view after ``document`` (a new one at a sweep's start; others unchanged)."""
    match document:
        case SweepStart():
            return SweepView(document)
        case SweepPoint() if view is not None:
            view.add(document)
        case SweepEnd() if view is not None:
            view.end = document
    return view


def rows_wanted(view: SweepView | None) -> int:
    """Rows the panel would fill (borders included): its two lines, a header, the points."""
    return 0 if view is None else 5 + min(len(view.points), 12)


def sweep_panel(view: SweepView, height: int, width: int, ctx: Context) -> Panel:
    start = view.start
    axes = ", ".join(f"{name} ({len(values)})" for name, values in start.axes.items())
    workers = ", ".join(f"{worker} {count}" for worker, count in view.per_worker.most_common(4))
    mean = view.seconds / view.computed if view.computed else None
    inner = max(width - 4, 8)
    parts: list = [
        Text(f"{start.function} over {axes or 'one point'}"),
        Text(f"by worker: {workers or '–'} · {duration(mean)} a point"),
    ]
    for line in parts:
        line.truncate(inner, overflow="ellipsis")
    room = max(height - 5, 0)
    if room and view.points:
        table = Grid()
        for column, justify in (("#", "right"), ("parameters", "left"), ("results", "left")):
            table.add_column(column, justify=justify)
        for point in list(view.points)[::-1][:room]:
            table.add_row(str(point.index), _pairs(point.parameters), _pairs(point.result))
        lines = table.text().split("\n")
        for line in lines:  # one row a line, cut at the panel's edge
            line.truncate(inner, overflow="ellipsis")
        parts.append(Text("\n").join(lines))
    status = f"{view.computed} computed" + (
        f", {view.end.points_resumed} resumed" if view.end and view.end.points_resumed else ""
    )
    return panel(Group(*parts), "sweep", status)


def _pairs(values: dict) -> str:
    """``name value`` pairs, numbers short, a list as its mean and length."""
    out = []
    for name, value in values.items():
        if isinstance(value, list):
            numbers = [v for v in value if isinstance(v, int | float)]
            shown = (
                f"⟨{number(sum(numbers) / len(numbers), '.4g')}⟩×{len(value)}" if numbers else "[]"
            )
        elif isinstance(value, float):
            shown = number(value, ".4g")
        else:
            shown = str(value)
        out.append(f"{name} {shown}")
    return " ".join(out)


def _short(worker: str) -> str:
    """A worker's address without its scheme: ``tcp://127.0.0.1:40123`` → ``127.0.0.1:40123``."""
    return worker.split("://", 1)[-1] or "?"
