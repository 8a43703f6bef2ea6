"""The live terminal dashboard: a procedure's run as it happens, or a recorded run.

``DashboardState`` takes events — live ``Event``s from a procedure or ``StoredEvent``s read
back from the run store, the same attribute names — and keeps only what the panels need: the
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
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from pcm_hil.documents.events import Event
from pcm_hil.records.store import RunInfo, RunStore

__all__ = [
    "DashboardState",
    "LiveDashboard",
    "attach",
    "render",
    "render_text",
]

YEAR_S = 365 * 86400.0
#: Upper edges of the |read − target| histogram bins, in tolerances (the last bin is open).
ERROR_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: One character per bin, naming its upper edge.
ERROR_LABELS = "¼½1248∞"
SPARK = "▁▂▃▄▅▆▇█"
#: Shades for the conductance map without colour, low to high (each cell two characters).
RAMP = ("··", "░░", "▒▒", "▓▓", "██")
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
STATUS_STYLE = {
    "running": "bold yellow",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
    "killed": "bold red",
}
STATUS_MARK = {"running": "▶", "completed": "✓", "failed": "✗", "cancelled": "■", "killed": "✗"}


# --- state ------------------------------------------------------------------------------------


@dataclass
class ProcedureProgress:
    """One procedure's progress: wall times of its start, last step and last event."""

    name: str
    started: float
    last: float
    done: int = 0
    total: int = 0
    steps: int = 0
    last_step: float | None = None
    status: str = "running"
    start: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    end: dict | None = None


@dataclass
class _Program:
    start: dict
    step: dict | None = None
    end: dict | None = None


@dataclass
class _Drift:
    start: dict
    times: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    means: list = field(default_factory=list)
    end: dict | None = None


class DashboardState:
    """What the panels show, fed by ``update(event)`` (live ``Event`` or ``StoredEvent``).

    ``update`` only stores references and scalars; the heavy lifting happens at render time
    and is cached per array. ``tile`` picks the tile of the map (default: the first tile of
    the newest programming); ``geometry`` (rows, columns) the tile's shape when the chip's
    identity or the emulator profile does not tell it; ``g_max_uS`` the top of the colour
    scale.
    """

    def __init__(
        self,
        *,
        tile: int | None = None,
        geometry: tuple[int, int] | None = None,
        g_max_uS: float = 25.0,
    ) -> None:
        self.tile = tile
        self.geometry = geometry
        self.g_max_uS = g_max_uS
        self.info: RunInfo | None = None
        self.resource: str | None = None
        self.identity: dict | None = None
        self.source = "live"
        self.procedures: dict[str, ProcedureProgress] = {}
        self.current: str | None = None
        self.events = 0
        self.version = 0  # counts every change: events and run records
        self.program: _Program | None = None
        self.drift: _Drift | None = None
        self.map_values: np.ndarray | None = None
        self.map_from: tuple[str, Any] | None = None
        self.infer: dict[tuple[float, str], dict[str, list[float]]] = {}
        self.train: list[tuple[int, float | None, int | None]] = []
        self.curves: dict[str, tuple[str, list[tuple[float, float, float]]]] = {}
        self._cache: dict[str, tuple[Any, Any]] = {}

    # --- feeding ------------------------------------------------------------------------------

    def set_run(
        self, info: RunInfo | None, resource: str | None = None, identity: dict | None = None
    ) -> None:
        """The run being shown (None for an unrecorded one) and the instrument it runs on;
        ``resource`` and ``identity`` default to the run's."""
        self.version += 1
        self.info = info
        if resource is not None or info is not None:
            self.resource = resource if resource is not None else info.resource
        if identity is not None or (info is not None and info.identity):
            self.identity = identity if identity is not None else info.identity

    def update(self, event: Any) -> None:
        """Take one event: start, step or end of any procedure. Cheap: no array work."""
        kind, name, data = event.kind, event.procedure, event.data
        wall = getattr(event, "wall_time_s", None)
        if wall is None:
            wall = getattr(event, "wall_time", None) or time.time()
        self.events += 1
        self.version += 1
        progress = self.procedures.get(name)
        if kind == "start" or progress is None:
            if progress is not None:  # a procedure run again: keep the newest, last in order
                del self.procedures[name]
            progress = self.procedures[name] = ProcedureProgress(name, wall, wall)
        progress.last = wall
        progress.done = event.done
        progress.total = event.total
        self.current = name
        if kind == "start":
            progress.start = data
            self._start(name, data)
        elif kind == "step":
            progress.steps += 1
            progress.last_step = wall
            progress.data = data
            self._step(name, data)
        else:
            progress.status = str(data.get("status") or "completed")
            progress.end = data
            self._end(name, data)

    def _start(self, name: str, data: dict) -> None:
        if "times_s" in data and "target_uS" in data:  # drift (its start lists devices too)
            self.drift = _Drift(data)
        elif "address" in data and "target_uS" in data:
            self.program = _Program(data)
            self.map_values, self.map_from = None, ("program", None)
        elif name == "infer":
            self.infer = {}
        elif name == "train":
            self.train = []

    def _step(self, name: str, data: dict) -> None:
        if "read_uS" in data and self.program is not None:
            self.program.step = data
            self.map_values, self.map_from = data["read_uS"], ("program", data.get("iteration"))
        elif "conductance_uS" in data and self.drift is not None:
            drift = self.drift
            drift.times.append(float(data.get("t_s", math.nan)))
            drift.pending.append(data["conductance_uS"])
            if len(drift.pending) > 64:  # catching up a long run: keep memory bounded
                self._drift_means()
            self.map_values, self.map_from = data["conductance_uS"], ("drift", data.get("t_s"))
        elif "epoch" in data:
            self.train.append(
                (data["epoch"], data.get("test_accuracy"), data.get("pulses_applied"))
            )
        elif "t_s" in data and any(key.startswith("accuracy_") for key in data):
            row = self.infer.setdefault((float(data["t_s"]), str(data.get("weights", ""))), {})
            for key, value in data.items():
                if key.startswith("accuracy_") and value is not None:
                    row.setdefault(key[len("accuracy_") :], []).append(float(value))
        elif "mean_uS" in data:
            x_name = next((k for k in data if k not in ("mean_uS", "std_uS")), "x")
            points = self.curves.setdefault(name, (x_name, []))[1]
            points.append((data.get(x_name), data["mean_uS"], data.get("std_uS")))

    def _end(self, name: str, data: dict) -> None:
        if name == "program" and self.program is not None and "converged_fraction" in data:
            self.program.end = data
        elif self.drift is not None and name == "drift":
            self.drift.end = data

    # --- derived, at render time ---------------------------------------------------------------

    def status(self) -> str:
        """The run's status: the store's word when recorded — unless the record still says
        running and the events say it ended, as the run's own procedure's end (a live
        listener's record is not read again) — else from the events."""
        statuses = [p.status for p in self.procedures.values()]
        info = self.info
        if info is not None and info.status != "running":
            return info.status
        if info is not None:
            own = self.procedures.get(info.procedure)
            if own is not None and own.status != "running":
                return own.status
        for worst in ("failed", "cancelled"):
            if worst in statuses:
                return worst
        if info is not None:
            return info.status
        if not statuses:
            return "waiting"
        return "running" if "running" in statuses else "completed"

    def running(self) -> bool:
        return self.status() == "running"

    def _cached(self, name: str, key: Any, compute):
        hit = self._cache.get(name)
        if hit is not None and hit[0] is key:
            return hit[1]
        value = compute()
        self._cache[name] = (key, value)
        return value

    def program_levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(levels, level index per device) of the newest programming."""
        if self.program is None:
            return None
        target = self.program.start["target_uS"]
        return self._cached("program_levels", target, lambda: _levels(target))

    def drift_levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.drift is None:
            return None
        target = self.drift.start["target_uS"]
        return self._cached("drift_levels", target, lambda: _levels(target))

    def error_histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per level of the newest programming: counts of |read − target| per bin (in units of
        the tolerance; the last column counts devices not read yet), device count, and mean
        |read − target| over the devices read."""
        program = self.program
        if program is None or program.step is None:
            return None
        read = program.step["read_uS"]
        return self._cached("histogram", read, lambda: self._histogram(read))

    def _histogram(self, read: np.ndarray):
        levels, inverse = self.program_levels()
        target = self.program.start["target_uS"]
        tolerance = float(self.program.start.get("tolerance_uS") or 0.5)
        if read.shape != target.shape:
            return None
        error = np.abs(read - target)
        unread = np.isnan(error)
        bins = np.zeros(error.size, dtype=np.intp)
        for edge in ERROR_EDGES:
            bins += error > edge * tolerance
        bins[unread] = len(ERROR_EDGES) + 1
        width = len(ERROR_EDGES) + 2
        counts = np.bincount(inverse * width + bins, minlength=levels.size * width)
        counts = counts.reshape(levels.size, width)
        total = counts.sum(axis=1)
        error_sum = np.bincount(
            inverse, weights=np.where(unread, 0.0, error), minlength=levels.size
        )
        read_count = total - counts[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = error_sum / read_count
        return counts, total, mean

    def _drift_means(self) -> list[np.ndarray]:
        """Mean conductance per level at each read time so far (reduces new reads only)."""
        drift = self.drift
        if drift is None:
            return []
        if drift.pending:
            found = self.drift_levels()
            if found is not None:
                levels, inverse = found
                for values in drift.pending:
                    if values.shape != inverse.shape:
                        drift.means.append(np.full(levels.size, np.nan))
                        continue
                    finite = np.isfinite(values)
                    total = np.bincount(
                        inverse, weights=np.where(finite, values, 0.0), minlength=levels.size
                    )
                    count = np.bincount(inverse, weights=finite, minlength=levels.size)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        drift.means.append(total / count)
            drift.pending = []
        return drift.means

    def tile_shape(self) -> tuple[int, int] | None:
        """(rows, columns) of a tile: given, from the chip's identity or the emulator profile
        in the resource, else the smallest power-of-two square holding every address."""
        if self.geometry:
            return self.geometry
        for source in (self.identity, self.info.parameters if self.info else None):
            if source and source.get("rows") and source.get("columns"):
                return int(source["rows"]), int(source["columns"])
        shape = _emulator_shape(self.resource)
        if shape:
            return shape
        if self.program is None:
            return None
        address = self.program.start["address"]
        return self._cached("shape", address, lambda: _square_for(address))

    def map_tile(self) -> int | None:
        if self.program is None:
            return self.tile
        if self.tile is not None:
            return self.tile
        tiles = self.program.start.get("tiles")
        if tiles:
            return int(tiles[0])
        tile = self.program.start.get("tile")
        return int(tile[0]) if isinstance(tile, np.ndarray) and tile.size else None

    def tile_image(self) -> np.ndarray | None:
        """The map's tile as rows × columns of conductance, NaN where not read."""
        values, program, shape = self.map_values, self.program, self.tile_shape()
        if values is None or program is None or shape is None:
            return None
        tile_of, address = program.start.get("tile"), program.start["address"]
        if values.shape != address.shape:
            return None
        tile = self.map_tile()
        return self._cached(
            "image", (values, tile), lambda: _image(values, tile_of, address, tile, shape)
        )

    def alerts(self) -> list[tuple[str, str]]:
        """(severity, text) of errors, then warnings."""
        errors, warnings = [], []
        info = self.info
        if info is not None:
            if info.status in ("failed", "killed"):
                text = f"run {info.id} {info.status}"
                if info.error:
                    text += f": {info.error}"
                elif info.status == "killed":
                    text += f": process {info.pid} ended without finishing the run"
                errors.append(text)
            elif info.status == "cancelled":
                warnings.append(
                    f"run {info.id} cancelled" + (f": {info.error}" if info.error else "")
                )
            elif info.error:
                errors.append(f"run {info.id}: {info.error}")
        for p in self.procedures.values():
            if p.status in ("failed", "cancelled"):
                text = f"{p.name} {p.status}"
                error = (p.end or {}).get("error")
                if error:
                    text += f": {error}"
                if not any(error and error in shown for shown in errors):
                    (errors if p.status == "failed" else warnings).append(text)
        program = self.program
        if program is not None:
            stuck = (program.end or {}).get("stuck_devices")
            if stuck is None and program.step is not None:
                stuck = program.step.get("stuck")
            devices = int(program.start.get("devices") or 0)
            if stuck:
                share = f" ({stuck / devices:.2%})" if devices else ""
                warnings.append(f"{stuck} stuck devices{share}: not responding, left alone")
            fraction = (program.end or {}).get("converged_fraction")
            if fraction is not None and fraction < 0.9:
                warnings.append(
                    f"only {fraction:.1%} converged within "
                    f"{program.start.get('max_iterations', '?')} iterations"
                )
        if self.drift is not None and self.drift.end:
            poor = [
                level
                for level in self.drift.end.get("levels") or []
                if (level.get("good_fit_fraction") or 0.0) < 0.5
            ]
            if poor:
                warnings.append(
                    f"drift: under half the fits good at {len(poor)} level(s), e.g. "
                    f"{poor[0].get('target_uS', 0):.2f} µS"
                )
        return [("error", e) for e in errors] + [("warning", w) for w in warnings]


def _levels(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct targets, index of each device's). Targets are a few levels repeated: find
    them in a sample, place every device by binary search, and fall back to a full sort only
    if the sample missed a level — a few times faster than np.unique on a large array."""
    target = np.asarray(target).reshape(-1)
    if target.size > 8192:
        # a prefix finds interleaved levels, a stride levels laid out in blocks
        levels = np.unique(np.concatenate([target[:4096], target[:: target.size // 4096]]))
        inverse = np.minimum(np.searchsorted(levels, target), levels.size - 1)
        if np.array_equal(levels[inverse], target):
            return levels, inverse.astype(np.intp, copy=False)
    levels, inverse = np.unique(target, return_inverse=True)
    return levels, inverse.reshape(-1).astype(np.intp)


def _square_for(address: np.ndarray) -> tuple[int, int]:
    top = int(address.max()) + 1 if address.size else 1
    side = 1 << max(0, math.ceil(math.log2(math.sqrt(top))))
    while side * side < top:
        side *= 2
    return side, side


def _emulator_shape(resource: str | None) -> tuple[int, int] | None:
    if not resource or not resource.startswith("emulator"):
        return None
    query = dict(
        part.split("=", 1) for part in resource.partition("?")[2].split("&") if "=" in part
    )
    try:
        from pcm_hil.emulator import PROFILES

        config = PROFILES[query.get("profile", "default")]
        return int(query.get("rows", config.rows)), int(query.get("columns", config.columns))
    except Exception:
        return None


def _image(values, tile_of, address, tile, shape) -> np.ndarray:
    rows, columns = shape
    image = np.full(rows * columns, np.nan, dtype=np.float32)
    pick = address < rows * columns
    if tile_of is not None and tile is not None:
        pick &= tile_of == tile
    image[address[pick]] = values[pick]
    return image.reshape(rows, columns)


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor × factor block over the devices read (NaN where none)."""
    if factor <= 1:
        return image
    rows, columns = image.shape
    r, c = -(-rows // factor), -(-columns // factor)
    padded = np.full((r * factor, c * factor), np.nan, dtype=np.float32)
    padded[:rows, :columns] = image
    blocks = padded.reshape(r, factor, c, factor)
    known = ~np.isnan(blocks)
    total = np.where(known, blocks, 0.0).sum(axis=(1, 3))
    count = known.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


# --- formatting ---------------------------------------------------------------------------------


def _clock(seconds: float | None) -> str:
    """Wall-clock durations: 4.2 s, 3:07, 1:02:03, 2d 03:04:05."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def _span(seconds: float | None) -> str:
    """Times after programming: 1 s, 5 min, 3.2 h, 30 d, 1 y."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for unit, size in (("y", YEAR_S), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * 0.999:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _number(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "–"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format(value, spec) if math.isfinite(value) else "–"


def _spark(values: Iterable[float], width: int | None = None) -> str:
    values = [float(v) for v in values]
    if width is not None and len(values) > width > 0:
        pick = np.linspace(0, len(values) - 1, width).round().astype(int)
        values = [values[i] for i in pick]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif span <= 1e-12:
            out.append(SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[min(int((v - low) / span * len(SPARK)), len(SPARK) - 1)])
    return "".join(out)


def _bar(fraction: float, width: int, colour: bool) -> Text:
    width = max(width, 1)
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
    filled = round(fraction * width)
    if colour:
        return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey23"))
    return Text("█" * filled + "░" * (width - filled))


def _colour(index: int) -> tuple[int, int, int]:
    x = index / (COLOURS - 1) * (len(VIRIDIS) - 1)
    low = min(int(x), len(VIRIDIS) - 2)
    f = x - low
    a, b = VIRIDIS[low], VIRIDIS[low + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


_STYLES: dict[tuple[int, int], Style] = {}


def _cell_style(top: int, bottom: int) -> Style:
    key = (top, bottom)
    style = _STYLES.get(key)
    if style is None:
        fg = "rgb({},{},{})".format(*_colour(top if top >= 0 else bottom))
        bg = "rgb({},{},{})".format(*_colour(bottom)) if top >= 0 and bottom >= 0 else None
        style = _STYLES[key] = Style(color=fg, bgcolor=bg)
    return style


class _Grid:
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
                cell = headers[k][d]
                line.append((cell.rjust if justify == "right" else cell.ljust)(widths[k]) + " ")
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


@dataclass
class _Context:
    colour: bool
    now: float
    large: bool


# --- panels -------------------------------------------------------------------------------------


def _panel(body: RenderableType, title: str, subtitle: str | None = None) -> Panel:
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


def _identity_panel(state: DashboardState, ctx: _Context) -> Panel:
    identity = state.identity or {}
    status = state.status()
    info = state.info
    resource = Text.assemble(
        ("● ", "green" if status == "running" else "bright_black"),
        (state.resource or "resource not known", "bold"),
    )
    run = Text.assemble(
        ("run ", "dim"),
        (f"#{info.id} " if info else "", "bold"),
        ((info.procedure if info else state.current) or "–", "bold cyan"),
        " · ",
        (status, STATUS_STYLE.get(status, "bold")),
    )
    if info is not None:
        run.append(f" · started {time.strftime('%H:%M:%S', time.localtime(info.started_at))}")
    if ctx.large:
        chip = " ".join(str(identity[k]) for k in ("manufacturer", "model") if identity.get(k))
        details = [f"{k} {identity[k]}" for k in ("serial", "firmware") if identity.get(k)]
        if info is not None and info.protocol_version:
            details.append(f"protocol {info.protocol_version}")
        chip_line = Text.assemble(
            ("chip ", "dim"),
            (chip or "identity not known yet", "cyan"),
            " · " + " · ".join(details) if details else "",
        )
        resource.append(f"  via {state.source}", style="dim")
        if info is not None and info.host:
            run.append(f" · {info.host} pid {info.pid}", style="dim")
        lines = [resource, chip_line, run]
        if info is not None and info.error:
            lines.append(Text(info.error, style="red"))
    else:
        chip = " ".join(str(identity[k]) for k in ("model", "serial") if identity.get(k))
        resource.append(f"  {chip}" if chip else "  identity not known", style="cyan")
        run.append(f" · via {state.source}", style="dim")
        lines = [resource, run]
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return _panel(Group(*lines), "pcm-hil")


def _progress_line(p: ProcedureProgress, width: int, ctx: _Context, live: bool) -> Text:
    status = p.status
    if status == "running" and not live:
        status = "stopped"
    mark = STATUS_MARK.get(status, "·")
    style = STATUS_STYLE.get(status, "bold")
    ended = p.status != "running" or not live
    elapsed = (p.last if ended else ctx.now) - p.started
    counts = f"{p.done}/{p.total}" if p.total else str(p.done)
    pct = f"{p.done / p.total:4.0%}" if p.total else "    "
    if p.status == "running" and live:
        eta = _eta(p, ctx.now)
        when = f"{_clock(elapsed)} " + (
            "finishing" if p.total and p.done >= p.total else f"ETA {_clock(eta)}"
        )
    elif p.status == "running":
        when = f"{_clock(elapsed)} {status}"
    else:
        when = f"{_clock(elapsed)} {p.status}"
    name = p.name[:18]
    note = _note(p) if ctx.large else ""
    fixed = 2 + len(name) + 1 + 1 + len(counts) + 1 + len(pct) + 1 + len(when)
    fixed += len(note) + 2 if note else 0
    bar = _bar(p.done / p.total if p.total else (1.0 if ended else 0.0), width - fixed, ctx.colour)
    line = Text.assemble((mark + " ", style), (name, "bold"), " ", bar, " ", counts, " ", pct)
    line.append(" " + when, style="dim" if p.status == "completed" else "")
    if note:
        line.append("  " + note, style="cyan")
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def _eta(p: ProcedureProgress, now: float) -> float | None:
    """Seconds left: the pace of the steps so far; for drift reads on a real-time clock
    (time after programming advancing with wall time) what is left of the read schedule."""
    if not p.total or p.done <= 0 or p.last_step is None:
        return None
    if p.done >= p.total:
        return 0.0
    since = now - p.last_step
    took = p.last_step - p.started
    t_s = p.data.get("t_s")
    if p.name == "drift" and isinstance(t_s, (int, float)) and 0 < t_s <= 2 * took:
        times = p.start.get("times_s")
        if times is None or not np.size(times):
            return None
        return max(float(np.max(times)) - float(t_s) - since, 0.0)
    return max(took / p.done * (p.total - p.done) - since, 0.0)


def _note(p: ProcedureProgress) -> str:
    data = p.data
    if "converged" in data and data.get("devices"):
        return f"{data['converged'] / data['devices']:.1%} converged"
    if "t_s" in data and "conductance_uS" in data:
        return f"t = {_span(data['t_s'])}"
    if "epoch" in data:
        accuracy = data.get("test_accuracy")
        return f"epoch {data['epoch']}" + (f" {accuracy:.1%}" if accuracy is not None else "")
    if "t_s" in data and "weights" in data:
        return f"{data['weights']} t = {_span(data['t_s'])}"
    scalars = [
        f"{k}={_number(v, '.3g') if isinstance(v, float) else v}"
        for k, v in data.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ]
    return " ".join(scalars[:2])[:30]


def _progress_panel(state: DashboardState, width: int, lines: int, ctx: _Context) -> Panel:
    live = state.running()
    shown = list(state.procedures.values())[-lines:] if lines > 0 else []
    body: list[RenderableType] = [_progress_line(p, width - 4, ctx, live) for p in shown]
    if not body:
        body = [Text("waiting for the first event…", style="dim")]
    hidden = len(state.procedures) - len(shown)
    subtitle = f"+{hidden} earlier" if hidden > 0 else None
    return _panel(Group(*body), "progress", subtitle)


def _map_factor(shape: tuple[int, int], width: int, lines: int, colour: bool) -> int:
    """Devices per map cell side so a rows × columns tile fits ``width`` × ``lines``."""
    rows, columns = shape
    px_high = lines * 2 if colour else lines
    px_wide = width if colour else width // 2
    return max(1, math.ceil(rows / max(px_high, 1)), math.ceil(columns / max(px_wide, 1)))


class _MapPanel:
    """The conductance map in its bordered panel, computed when drawn to the room it gets.

    Drawn straight to segments, border included: a coloured map is thousands of segments,
    and every layer of rich renderables around them costs a pass over all of them."""

    def __init__(self, state: DashboardState, title: str, subtitle: str | None) -> None:
        self.state = state
        self.title = title
        self.subtitle = subtitle

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height = options.max_width, options.height or 14
        colour = console.color_system is not None
        border = Style(color="bright_black")
        inner = max(width - 4, 1)
        rows = max(height - 2, 0)
        content = self._content(inner, rows, colour)
        new_line = Segment.line()
        title = f" {self.title} "[: max(width - 4, 0)]
        yield Segment("╭─", border)
        yield Segment(title, Style(bold=True))
        yield Segment("─" * max(width - 3 - len(title), 0) + "╮", border)
        yield new_line
        side_left, side_right = Segment("│ ", border), Segment(" │", border)
        blank = Segment(" " * inner)
        for k in range(rows):
            yield side_left
            if k < len(content):
                segments, used = content[k]
                yield from segments
                if used < inner:
                    yield Segment(" " * (inner - used))
            else:
                yield blank
            yield side_right
            yield new_line
        subtitle = f" {self.subtitle} " if self.subtitle else ""
        subtitle = subtitle[: max(width - 4, 0)]
        yield Segment("╰" + "─" * max(width - 3 - len(subtitle), 0), border)
        yield Segment(subtitle)
        yield Segment("─╯" if width >= 3 + len(subtitle) else "╯", border)
        yield new_line

    def _content(self, width: int, height: int, colour: bool) -> list[tuple[list[Segment], int]]:
        """Lines of (segments, cells used), at most ``width`` cells each."""
        image = self.state.tile_image()
        if image is None or height < 2 or width < 4:
            text = "no per-device reads yet"[:width]
            return [([Segment(text, Style(dim=True))], len(text))] if height else []
        factor = _map_factor(image.shape, width, height - 1, colour)
        small = _downsample(image, factor)
        vmax = self.state.g_max_uS
        levels = COLOURS if colour else len(RAMP)
        with np.errstate(invalid="ignore"):
            q = np.clip((small / vmax * levels).astype(np.float64), 0, levels - 1)
        q = np.where(np.isnan(small), -1, np.floor(q)).astype(np.int16)
        drawn = min(q.shape[1] * (1 if colour else 2), width)
        pad = Segment(" " * max((width - drawn) // 2, 0))
        out = []
        if colour:
            for line in _colour_lines(q):
                out.append(([pad, *line], len(pad.text) + drawn))
        else:
            for line in _ramp_lines(q):
                out.append(([pad, Segment(line[:width])], len(pad.text) + len(line[:width])))
        legend = [pad]
        if colour:
            legend.append(Segment("0 "))
            legend += [
                Segment("█", Style(color="rgb({},{},{})".format(*_colour(k))))
                for k in range(0, COLOURS, 3)
            ]
            legend.append(Segment(f" {vmax:g} µS"))
        else:
            legend.append(Segment("".join(RAMP) + f" 0→{vmax:g} µS"))
        used = sum(len(segment.text) for segment in legend)
        if factor > 1 and used + 12 <= width:
            note = f" {factor}×{factor}/cell"
            legend.append(Segment(note, Style(dim=True)))
            used += len(note)
        if used > width:
            legend, used = [Segment(f"0→{vmax:g} µS"[:width])], min(len(f"0→{vmax:g} µS"), width)
        out.append((legend, used))
        return out


def _colour_lines(q: np.ndarray) -> list[list[Segment]]:
    """Half-block lines: each character is two map cells, upper as foreground, lower as
    background; runs of equal characters are one segment."""
    if q.shape[0] % 2:
        q = np.vstack([q, np.full((1, q.shape[1]), -1, dtype=q.dtype)])
    codes = (q[0::2].astype(np.int32) + 1) * (COLOURS + 1) + (q[1::2] + 1)
    lines = []
    for row in codes:
        starts = np.flatnonzero(np.diff(row)) + 1
        bounds = [0, *starts.tolist(), row.size]
        values = row[bounds[:-1]].tolist()
        lines.append(
            [_cells(v, e - b) for v, b, e in zip(values, bounds[:-1], bounds[1:], strict=True)]
        )
    return lines


_SEGMENTS: dict[tuple[int, int], Segment] = {}


def _cells(code: int, count: int) -> Segment:
    segment = _SEGMENTS.get((code, count))
    if segment is None:
        top, bottom = divmod(code, COLOURS + 1)
        top, bottom = top - 1, bottom - 1
        if top < 0 and bottom < 0:
            segment = Segment(" " * count)
        elif top < 0:
            segment = Segment("▄" * count, _cell_style(-1, bottom))
        else:
            segment = Segment("▀" * count, _cell_style(top, bottom))
        if len(_SEGMENTS) < 20000:
            _SEGMENTS[(code, count)] = segment
    return segment


def _ramp_lines(q: np.ndarray) -> list[str]:
    cells = [*RAMP, "  "]  # index -1: not read
    return ["".join(cells[v] for v in row) for row in q.tolist()]


def _map_panel(state: DashboardState, ctx: _Context) -> _MapPanel:
    tile = state.map_tile()
    shape = state.tile_shape()
    title = "conductance map"
    if tile is not None:
        title = f"tile {tile} conductance" if ctx.large else f"tile {tile} µS"
        if shape and ctx.large:
            title += f" · {shape[0]}×{shape[1]} devices"
    subtitle = None
    if state.map_from is not None and state.map_values is not None:
        kind, at = state.map_from
        subtitle = f"program iteration {at}" if kind == "program" else f"drift t = {_span(at)}"
    return _MapPanel(state, title, subtitle)


def _group_rows(count: int, room: int) -> list[slice]:
    """Consecutive groups of ``count`` levels to fit ``room`` rows."""
    if room <= 0:
        return []
    if count <= room:
        return [slice(k, k + 1) for k in range(count)]
    size = math.ceil(count / room)
    return [slice(k, min(k + size, count)) for k in range(0, count, size)]


def _level_label(levels: np.ndarray, rows: slice) -> str:
    part = levels[rows]
    if part.size == 1:
        return f"{part[0]:.2f}"
    return f"{part[0]:.1f}–{part[-1]:.1f}"


def _program_panel(state: DashboardState, height: int, width: int, ctx: _Context) -> Panel:
    program = state.program
    title = "program-and-verify"
    if program is None:
        return _panel(Text("no programming yet", style="dim"), title)
    start, step, end = program.start, program.step, program.end
    tolerance = float(start.get("tolerance_uS") or 0.5)
    devices = int(start.get("devices") or 0)
    head = Text()
    if end is not None:
        head.append("converged ", style="bold")
        head.append(f"{end.get('converged_fraction', 0.0):.1%}", style="bold green")
        head.append(f" · stuck {end.get('stuck_devices', 0)}")
        head.append(
            f" · iterations {_number(end.get('iterations_mean'), '.1f')}"
            f" (p99 {_number(end.get('iterations_p99'), '.0f')})"
        )
        head.append(f" · error σ {_number(end.get('error_std_uS'), '.3f')} µS")
    elif step is not None:
        converged = int(step.get("converged", 0))
        total = int(step.get("devices") or devices or 1)
        head.append("converged ", style="bold")
        head.append(f"{converged / total:.1%}", style="bold yellow")
        head.append(f" ({converged}/{total}) · stuck {step.get('stuck', 0)}")
        head.append(f" · iteration {step.get('iteration')}/{start.get('max_iterations', '?')}")
    else:
        head.append(f"{devices} devices · waiting for the first verify read", style="dim")
    head.no_wrap, head.overflow = True, "ellipsis"
    setup = Text(
        f"{start.get('strategy', '?')} · tolerance ±{tolerance:g} µS · {devices} devices"
        f" · tile(s) {','.join(str(t) for t in start.get('tiles') or [])}",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    parts: list[RenderableType] = [head]
    room = height - 2 - 1
    histogram = state.error_histogram()
    levels = state.program_levels()
    if room >= 5 or histogram is None:
        parts.append(setup)
        room -= 1
    subtitle = f"|Δ| = |read − target| in t = {tolerance:g} µS"
    if histogram is None or room < 2:
        if histogram is not None and room == 1:
            parts.append(setup)
        return _panel(Group(*parts), title, subtitle if histogram is not None else None)
    counts, total, mean_error = histogram
    levels = levels[0]
    groups = _group_rows(levels.size, room - 1)
    scale = 2 if ctx.large else 1
    table = _Grid()
    table.add_column("level µS", justify="right", no_wrap=True)
    table.add_column("conv", justify="right", no_wrap=True)
    table.add_column("|Δ|/t " + "".join(c.ljust(scale) for c in ERROR_LABELS), no_wrap=True)
    if ctx.large:
        table.add_column("mean |Δ| µS", justify="right", no_wrap=True)
        table.add_column("devices", justify="right", no_wrap=True)
        table.add_column("not read", justify="right", no_wrap=True)
    within = sum(1 for edge in ERROR_EDGES if edge <= 1.0)  # bins inside the tolerance
    bins_shown = len(ERROR_LABELS)
    for rows in groups:
        c = counts[rows].sum(axis=0)
        n = int(total[rows].sum())
        unread = int(c[-1])
        conv = c[:within].sum() / n if n else 0.0
        bins = c[:bins_shown]
        peak = max(int(bins.max()), 1)
        bars = Text(" " * 6)
        for k, value in enumerate(bins.tolist()):
            char = " " if value == 0 else SPARK[max(math.ceil(value / peak * 8) - 1, 0)]
            style = "green" if k < within else ("yellow" if k < within + 2 else "red")
            bars.append(char * scale, style=style)
        row = [_level_label(levels, rows), f"{conv:.1%}", bars]
        if ctx.large:
            read = total[rows] - counts[rows, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = float(np.nansum(mean_error[rows] * read) / read.sum())
            row += [_number(mean, ".3f"), str(n), str(unread) if unread else ""]
        table.add_row(*row)
    parts.append(table)
    return _panel(Group(*parts), title, subtitle)


def _drift_panel(state: DashboardState, height: int, width: int, ctx: _Context) -> Panel:
    drift = state.drift
    if drift is None:
        return _panel(Text("no drift measurement yet", style="dim"), "drift")
    start = drift.start
    times = start.get("times_s")
    planned = int(np.size(times)) if times is not None else 0
    means = state._drift_means()
    found = state.drift_levels()
    head = Text(
        f"{len(drift.times)}/{planned} reads"
        + (f", t = {_span(drift.times[0])} … {_span(drift.times[-1])}" if drift.times else "")
        + f" · fit from {_span(start.get('fit_from_s'))}"
        + f" · {start.get('devices', '?')} devices",
        no_wrap=True,
        overflow="ellipsis",
    )
    if found is None or not means:
        return _panel(Group(head, Text("waiting for the first read", style="dim")), "drift")
    levels = found[0]
    fitted = {}
    for level in (drift.end or {}).get("levels") or []:
        fitted[round(float(level.get("target_uS") or 0.0), 3)] = level
    matrix = np.vstack(means)  # read times × levels
    room = height - 2 - 1
    groups = _group_rows(levels.size, room - 1)
    if not groups:
        return _panel(head, "drift")
    fixed = 10 + 12 + 8 + (21 if ctx.large else 0)  # the other columns and their gaps
    spark_width = max(min(len(drift.times), width - fixed), 4)
    table = _Grid()
    table.add_column("level µS", justify="right", no_wrap=True)
    first, last = _span(drift.times[0]), _span(drift.times[-1])
    table.add_column(f"G vs log t, {first}→{last}" if ctx.large else "G vs log t", no_wrap=True)
    table.add_column("G µS", justify="right", no_wrap=True)
    table.add_column("ν", justify="right", no_wrap=True)
    if ctx.large:
        table.add_column("ν std", justify="right", no_wrap=True)
        table.add_column("good fits", justify="right", no_wrap=True)
    times_arr = np.asarray(drift.times)
    fit_from = float(start.get("fit_from_s") or 0.0)
    for rows in groups:
        single = rows.stop - rows.start == 1
        if single:
            series = matrix[:, rows.start]
        else:
            with np.errstate(invalid="ignore"):
                series = np.nanmean(matrix[:, rows], axis=1)
        row = [_level_label(levels, rows), Text(_spark(series, spark_width), style="cyan")]
        row.append(f"{_number(series[0], '.2f')}→{_number(series[-1], '.2f')}")
        group = [fitted.get(round(float(v), 3)) for v in levels[rows]]
        level = group[0] if single else None
        if not single and drift.end and all(g is not None for g in group):
            nus = [g.get("nu_mean") for g in group if g.get("nu_mean") is not None]
            level = {"nu_mean": float(np.mean(nus)) if nus else None}
        if level is not None:
            row.append(Text(_number(level.get("nu_mean"), ".4f"), style="bold"))
            if ctx.large:
                row.append(_number(level.get("nu_std"), ".4f"))
                good = level.get("good_fit_fraction")
                row.append(
                    f"{good:.0%} of {level.get('n_devices', 0)}" if good is not None else "–"
                )
        else:
            estimate = _slope_estimate(times_arr, series, fit_from)
            row.append(Text(f"≈{estimate:.3f}" if estimate is not None else "…", style="dim"))
            if ctx.large:
                row += ["", ""]
        table.add_row(*row)
    subtitle = "ν: per-device fits, mean of good ones" if drift.end else "≈ν from level means"
    return _panel(Group(head, table), "drift", subtitle)


def _slope_estimate(times: np.ndarray, series: np.ndarray, fit_from: float) -> float | None:
    use = (times >= fit_from) & np.isfinite(series) & (series > 0) & (times > 0)
    if use.sum() < 3:
        return None
    slope = np.polyfit(np.log(times[use]), np.log(series[use]), 1)[0]
    return float(-slope)


def _accuracy_panel(state: DashboardState, height: int, width: int, ctx: _Context) -> Panel:
    parts: list[RenderableType] = []
    room = height - 2
    if state.infer:
        columns = list(dict.fromkeys((w, c) for (_, w), row in state.infer.items() for c in row))
        table = _Grid()
        table.add_column("t", justify="right", no_wrap=True)
        for weights, compensation in columns:
            table.add_column(f"{weights[:11]}\n{compensation}", justify="right", no_wrap=True)
        times = sorted({t for t, _ in state.infer})
        keep = max(room - 2 - (2 if state.train else 0), 1)
        for t in times[-keep:]:
            cells = []
            for weights, compensation in columns:
                values = state.infer.get((t, weights), {}).get(compensation)
                cells.append(f"{np.mean(values):.1%}" if values else "")
            table.add_row(_span(t), *cells)
        parts.append(table)
    if state.train:
        accuracies = [a for _, a, _ in state.train if a is not None]
        epoch, accuracy, pulses = state.train[-1]
        line = Text(f"training epoch {epoch}", style="bold")
        if accuracy is not None:
            line.append(f" · test accuracy {accuracy:.1%}")
        if pulses is not None:
            line.append(f" · {pulses} pulses", style="dim")
        parts.append(line)
        if accuracies:
            parts.append(Text(_spark(accuracies, width - 6), style="cyan"))
        keep = room - len(parts) - (sum(2 + len(t.rows) for t in parts if isinstance(t, _Grid)))
        if keep >= 3:
            table = _Grid()
            for name in ("epoch", "test accuracy", "pulses"):
                table.add_column(name, justify="right", no_wrap=True)
            for epoch, accuracy, pulses in state.train[-(keep - 1) :]:
                table.add_row(
                    str(epoch),
                    f"{accuracy:.1%}" if accuracy is not None else "–",
                    str(pulses) if pulses is not None else "–",
                )
            parts.append(table)
    if not parts:
        return _panel(Text("no inference or training yet", style="dim"), "accuracy")
    chips = max((len(v) for row in state.infer.values() for v in row.values()), default=0)
    return _panel(Group(*parts), "accuracy", f"mean over {chips} chips" if chips > 1 else None)


def _curve_panel(state: DashboardState, height: int, width: int, ctx: _Context) -> Panel:
    name, (x_name, points) = list(state.curves.items())[-1]
    table = _Grid()
    table.add_column(x_name.replace("_uA", " µA"), justify="right", no_wrap=True)
    table.add_column("mean µS", justify="right", no_wrap=True)
    table.add_column("std µS", justify="right", no_wrap=True)
    bar_width = max(width - 36, 4)
    table.add_column("mean", no_wrap=True)
    keep = max(height - 3, 1)
    shown = points if len(points) <= keep else points[-keep:]
    for x, mean, std in shown:
        fraction = float(mean) / state.g_max_uS if mean is not None else 0.0
        table.add_row(
            _number(x, ".0f"),
            _number(mean, ".2f"),
            _number(std, ".2f"),
            _bar(fraction, bar_width, ctx.colour),
        )
    return _panel(table, name, f"{len(points)} points")


def _alerts_panel(state: DashboardState, lines: int) -> Panel:
    alerts = state.alerts()
    body: list[RenderableType] = []
    for severity, text in alerts[: max(lines, 1)]:
        style, mark = ("bold red", "✗ ") if severity == "error" else ("yellow", "! ")
        body.append(Text(mark + text, style=style, no_wrap=True, overflow="ellipsis"))
    if not body:
        body = [Text("no errors or warnings", style="dim")]
    more = len(alerts) - len(body)
    return _panel(Group(*body), "errors & warnings", f"+{more} more" if more > 0 else None)


# --- layout -------------------------------------------------------------------------------------


def _content_panels(state: DashboardState) -> list[tuple[str, bool, int]]:
    """(name, has data, rows wanted with borders) for the right-hand panels, in display order."""
    out = []
    found = state.program_levels()
    out.append(("program", state.program is not None, 5 + (found[0].size + 1 if found else 0)))
    found = state.drift_levels()
    out.append(("drift", state.drift is not None, 3 + (found[0].size + 1 if found else 0)))
    rows = len({t for t, _ in state.infer}) + 3 if state.infer else 0
    rows += min(len(state.train), 8) + 3 if state.train else 0
    out.append(("accuracy", bool(state.infer or state.train), rows + 2))
    if state.curves:
        out.append(("curve", True, 3 + len(next(reversed(state.curves.values()))[1])))
    return out


_FOR_PROCEDURE = {"program": "program", "drift": "drift", "infer": "accuracy", "train": "accuracy"}


def _allocate(state: DashboardState, height: int, large: bool) -> list[tuple[str, int]]:
    """Rows per right-hand panel, greedily: the current procedure's panel first, then the
    others with data, then (at large sizes) placeholders; leftover rows to the first."""
    panels = _content_panels(state)
    current = _FOR_PROCEDURE.get(state.current or "")
    if current is None and state.current in state.curves:
        current = "curve"
    order = sorted(panels, key=lambda p: (not p[1], p[0] != current))
    if not large:
        order = [p for p in order if p[1]]
    chosen: dict[str, int] = {}
    left = height
    placeholders = sum(1 for p in order if not p[1]) * 3 if large else 0
    for name, has_data, want in order:
        if has_data:
            rows = min(want, left - placeholders)
            if rows >= 4:
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
    "program": lambda state, h, w, ctx: _program_panel(state, h, w, ctx),
    "drift": lambda state, h, w, ctx: _drift_panel(state, h, w, ctx),
    "accuracy": lambda state, h, w, ctx: _accuracy_panel(state, h, w, ctx),
    "curve": lambda state, h, w, ctx: _curve_panel(state, h, w, ctx),
}


def _build(state: DashboardState, width: int, height: int, colour: bool) -> Layout:
    large = width >= 120 and height >= 36
    ctx = _Context(colour=colour, now=time.time(), large=large)
    root = Layout()
    if height < 10 or width < 40:  # too small for panels: progress only
        root.update(_progress_panel(state, width, max(height - 2, 1), ctx))
        return root
    alerts = state.alerts()
    procedures = len(state.procedures)
    top: list[Layout] = []
    if large:
        lines = min(max(procedures, 3), 4)
        row = Layout(size=lines + 2, name="top")
        row.split_row(
            Layout(_identity_panel(state, ctx), name="identity"),
            Layout(_progress_panel(state, width - width // 2, lines, ctx), name="progress"),
        )
        top.append(row)
        alert_rows = min(max(len(alerts), 1), 4) + 2
    else:
        lines = min(max(procedures, 1), 2 if height >= 20 else 1)
        top.append(Layout(_identity_panel(state, ctx), size=4, name="identity"))
        top.append(
            Layout(_progress_panel(state, width, lines, ctx), size=lines + 2, name="progress")
        )
        alert_rows = min(len(alerts), 1 if height < 30 else 3) + 2 if alerts else 0
    body_height = height - sum(part.size for part in top) - alert_rows
    columns: list[Layout] = []
    if body_height >= 4:
        has_map = state.tile_image() is not None
        map_width = 0
        if has_map or large:
            map_width = max(int(width * 0.45), 20) if has_map else 30
            shape = state.tile_shape()
            if has_map and shape:  # as wide as the downsampled tile needs, no wider
                factor = _map_factor(shape, map_width - 4, body_height - 3, colour)
                drawn = -(-shape[1] // factor) * (1 if colour else 2)
                map_width = min(map_width, max(drawn + 4, 24))
        stack = _allocate(state, body_height, large)
        if map_width and not stack:
            map_width = width
        if map_width:
            columns.append(Layout(_map_panel(state, ctx), size=map_width, name="map"))
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
                Layout(_alerts_panel(state, alert_rows - 2), size=alert_rows, name="alerts")
            )
    else:  # no body: errors and warnings take the room
        parts.append(Layout(_alerts_panel(state, height - 2), name="alerts"))
    root.split_column(*parts)
    return root


class _Screen:
    """The whole dashboard at a fixed size, laid out when drawn."""

    def __init__(self, state: DashboardState, width: int, height: int) -> None:
        self.state = state
        self.width = width
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(min(self.width, options.max_width), 1)
        height = max(self.height, 1)
        layout = _build(self.state, width, height, console.color_system is not None)
        yield from layout.__rich_console__(console, options.update(width=width, height=height))


def render(state: DashboardState, width: int, height: int) -> RenderableType:
    """The dashboard as a rich renderable of exactly ``width × height`` cells."""
    return _Screen(state, width, height)


def render_text(state: DashboardState, width: int = 80, height: int = 24) -> str:
    """The dashboard as plain text, ``height`` lines of at most ``width`` characters."""
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
    console.print(render(state, width, height))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


# --- live ---------------------------------------------------------------------------------------


class _Frozen:
    """A frame already rendered to lines: ``Live`` may draw it again (it does when stopped)
    without laying the dashboard out again."""

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        new_line = Segment.line()
        for k, line in enumerate(self.lines):
            yield from line
            if k < len(self.lines) - 1:
                yield new_line


class LiveDashboard:
    """A listener that shows the dashboard live on ``console`` (default: stderr).

    Each event updates the state (microseconds). A frame is drawn at the first event; then
    at most ``refresh_hz`` times a second, and only while the time spent drawing stays within
    ``max_overhead`` of the time since the first event — so however slow the terminal, the
    dashboard takes at most that share of a procedure's time (bar the first and last frame).
    After a procedure's end the next event draws a frame whatever the throttle says, and
    ``close()`` draws the last one (call it: the CLI does, in ``finally``). The frame fills
    the terminal less one line; ``screen=True`` uses the alternate screen instead and prints
    the last frame on the normal screen at close. On a console that is not a terminal (a
    file, a pipe) only the last frame is drawn, at close."""

    def __init__(
        self,
        console: Console | None = None,
        refresh_hz: float = 4.0,
        *,
        state: DashboardState | None = None,
        screen: bool = False,
        max_overhead: float = 0.02,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.state = state or DashboardState()
        self.interval = 1.0 / refresh_hz if refresh_hz > 0 else 0.0
        self.max_overhead = max_overhead
        self.screen = screen
        self.frames = 0
        self.draw_seconds = 0.0
        self._live: Live | None = None
        self._first: float | None = None
        self._last = -math.inf
        self._last_took = 0.0
        self._ended = False
        self._drawn_version = -1
        self._closed = False
        self.error: str | None = None  # why drawing stopped, if it did

    def set_run(
        self, info: RunInfo | None, resource: str | None = None, identity: dict | None = None
    ) -> None:
        self.state.set_run(info, resource, identity)

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            return
        try:
            self.state.update(event)
            if not self.console.is_terminal:
                return  # a file or a pipe: only the last frame is drawn, at close
            now = time.monotonic()
            if self._first is None:
                self._first = now
                self.refresh()
            elif self._ended or self._due(now):
                self.refresh()
            self._ended = event.kind == "end"
        except Exception as error:  # a display bug must never stop a measurement
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            except Exception:
                pass

    def _due(self, now: float) -> bool:
        if now - self._last < self.interval:
            return False
        if self.max_overhead <= 0:
            return True
        return self.draw_seconds + self._last_took <= self.max_overhead * (now - self._first)

    def _frame(self) -> _Frozen:
        width, height = self.console.size
        if not self.screen and self.console.is_terminal:
            height -= 1  # the cursor's line: a frame never scrolls the terminal
        width, height = max(width, 1), max(height, 1)
        options = self.console.options.update_dimensions(width, height)
        return _Frozen(self.console.render_lines(render(self.state, width, height), options))

    def refresh(self) -> None:
        """Draw a frame now (on a terminal; elsewhere the last frame is drawn at close)."""
        if self._closed or self.error is not None or not self.console.is_terminal:
            return
        started = time.monotonic()
        if self._first is None:
            self._first = started
        frame = self._frame()
        if self._live is None:
            terminal = self.console.is_terminal
            self._live = Live(
                frame,
                console=self.console,
                auto_refresh=False,
                transient=False,
                screen=self.screen,
                redirect_stdout=terminal and _isatty(sys.stdout),
                redirect_stderr=terminal and _isatty(sys.stderr),
            )
            self._live.start(refresh=True)
        else:
            self._live.update(frame, refresh=True)
        self._drawn_version = self.state.version
        self._last = time.monotonic()
        self._last_took = self._last - started
        self.frames += 1
        self.draw_seconds += self._last_took

    def close(self) -> None:
        """Draw the last frame (if anything changed since the one shown) and leave it."""
        if self._closed:
            return
        self._closed = True
        live, self._live = self._live, None
        started = time.monotonic()
        try:
            if self.error is not None:
                self.console.print(f"dashboard stopped drawing: {self.error}", style="dim")
            elif live is None:  # not a terminal, or nothing drawn yet
                if self.state.version:
                    self.console.print(self._frame())
                    self.frames += 1
            else:
                if self.state.version != self._drawn_version:
                    live.update(self._frame(), refresh=False)
                    self.frames += 1
                live.stop()  # draws the frame once more, as the last
                if self.screen:
                    self.console.print(self._frame())
        finally:
            if live is not None:
                live.stop()  # idempotent: a no-op once stopped
        self.draw_seconds += time.monotonic() - started

    def __enter__(self) -> LiveDashboard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def attach(
    store: RunStore,
    run_id: int | None = None,
    *,
    console: Console | None = None,
    refresh_s: float = 0.5,
    follow: bool = True,
    state: DashboardState | None = None,
) -> RunInfo:
    """Show a recorded run (the newest when ``run_id`` is None): read its events so far and,
    with ``follow``, keep reading new ones every ``refresh_s`` while it is running — another
    process may be writing it — until it ends or Ctrl-C. Returns the run's final record."""
    info = store.run(run_id) if run_id is not None else store.latest()
    if info is None:
        raise LookupError(f"no runs recorded in {store.path}")
    state = state or DashboardState()
    state.source = f"store {store.path.name}"
    state.set_run(info)
    dashboard = LiveDashboard(console, refresh_hz=1.0 / max(refresh_s, 0.05), state=state)
    last_seq = -1
    drawn_at = 0.0
    try:
        while True:
            info = store.run(info.id)  # before the events: when it says ended, all are written
            state.set_run(info)
            new = 0
            for event in store.events(info.id, after=last_seq):
                state.update(event)
                last_seq = event.seq
                new += 1
            if new or time.monotonic() - drawn_at >= 1.0:
                dashboard.refresh()
                drawn_at = time.monotonic()
            if not follow or info.status != "running":
                break
            time.sleep(refresh_s)
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.close()
    return store.run(info.id)
