"""Drawing primitives of the dashboard: the drawing context, bars, the bordered panel, a
light table (``Grid``), the map's characters and colours and its cells as segments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

#: The conductance map's characters, low to high: denser for more conductance, so the map reads
#: without colour (and on a colour terminal on top of the colour). Each cell is two of them.
RAMP = ".:-=+*#%@"
#: viridis, sampled: the map's colours from low to high conductance.
VIRIDIS = (
    (68, 1, 84),
    (72, 40, 120),
    (62, 73, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (110, 206, 88),
    (181, 222, 43),
    (253, 231, 37),
)
COLOURS = 24


@dataclass
class Context:
    """How a frame is drawn: in colour or not, at what wall time, at a large size or not."""

    colour: bool
    now: float
    large: bool


def bar(fraction: float, width: int, colour: bool) -> Text:
    """A bar ``width`` cells long, filled to ``fraction``."""
    width = max(width, 1)
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled = round(fraction * width)
    if colour:
        return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey23"))
    return Text("█" * filled + "░" * (width - filled))


def panel(body: RenderableType, title: str, subtitle: str | None = None) -> Panel:
    """``body`` in the dashboard's bordered panel: rounded, titled top left, subtitled
    bottom right."""
    return Panel(
        body,
        title=f"[bold]{title}[/]",
        title_align="left",
        subtitle=subtitle,
        subtitle_align="right",
        box=box.ROUNDED,
        padding=(0, 1),
        border_style="bright_black",
    )


class Grid:
    """A borderless table drawn as one Text: columns sized to their widest cell, one space
    apart. A fraction of the cost of rich's Table, which matters at several frames a second."""

    def __init__(self) -> None:
        self.columns: list[tuple[str, str]] = []
        self.rows: list[list[Text]] = []

    def add_column(self, header: str, justify: str = "left", **_: Any) -> None:
        self.columns.append((header, justify))

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append([c if isinstance(c, Text) else Text(str(c)) for c in cells])

    def text(self) -> Text:
        headers = [header.split("\n") for header, _ in self.columns]
        depth = max((len(h) for h in headers), default=0)
        headers = [[""] * (depth - len(h)) + h for h in headers]
        widths = [
            max([len(line) for line in headers[k]] + [row[k].cell_len for row in self.rows])
            for k in range(len(self.columns))
        ]
        lines = []
        for d in range(depth):
            line = Text(style="bold")
            for k, (_, justify) in enumerate(self.columns):
                head = headers[k][d]
                line.append((head.rjust if justify == "right" else head.ljust)(widths[k]) + " ")
            lines.append(line)
        for row in self.rows:
            line = Text()
            for k, cell in enumerate(row):
                gap = " " * (widths[k] - cell.cell_len)
                if self.columns[k][1] == "right":
                    line.append(gap)
                    line.append_text(cell)
                else:
                    line.append_text(cell)
                    line.append(gap)
                line.append(" ")
            lines.append(line)
        out = Text("\n").join(lines)
        out.no_wrap = True
        out.overflow = "ellipsis"
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.text()


def viridis(index: int) -> tuple[int, int, int]:
    """The RGB colour of step ``index`` of ``COLOURS``, interpolated in ``VIRIDIS``."""
    x = index / (COLOURS - 1) * (len(VIRIDIS) - 1)
    low = min(int(x), len(VIRIDIS) - 2)
    f = x - low
    a, b = VIRIDIS[low], VIRIDIS[low + 1]
    red, green, blue = (round(a[k] + (b[k] - a[k]) * f) for k in range(3))
    return red, green, blue


def ramp_style(step: int) -> Style:
    """The colour of the map's ``step`` (of ``len(RAMP)``): viridis as the background, the
    character black or white, whichever reads on it."""
    style = _STYLES.get(step)
    if style is None:
        red, green, blue = viridis(round(step / (len(RAMP) - 1) * (COLOURS - 1)))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 120
        style = _STYLES[step] = Style(
            color="black" if light else "white", bgcolor=f"rgb({red},{green},{blue})"
        )
    return style


_STYLES: dict[int, Style] = {}


# --- the conductance map's cells: ``q`` holds a step of ``RAMP`` per cell, -1 where not read


def ramp_lines(q: np.ndarray, colour: bool) -> list[list[Segment]]:
    """A line of segments per row of cells, two characters a cell, blank where not read;
    coloured by ``ramp_style`` with ``colour``; runs of equal cells are one segment."""
    lines = []
    for row in q:
        starts = np.flatnonzero(np.diff(row)) + 1
        bounds = [0, *starts.tolist(), row.size]
        values = row[bounds[:-1]].tolist()
        lines.append(
            [
                _cells(v, e - b, colour)
                for v, b, e in zip(values, bounds[:-1], bounds[1:], strict=True)
            ]
        )
    return lines


_SEGMENTS: dict[tuple[int, int, bool], Segment] = {}


def _cells(step: int, count: int, colour: bool) -> Segment:
    segment = _SEGMENTS.get((step, count, colour))
    if segment is None:
        if step < 0:
            segment = Segment("  " * count)
        else:
            segment = Segment(RAMP[step] * 2 * count, ramp_style(step) if colour else None)
        if len(_SEGMENTS) < 20000:
            _SEGMENTS[(step, count, colour)] = segment
    return segment
