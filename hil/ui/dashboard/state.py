"""What the dashboard knows of a run: ``DashboardState``, fed one event at a time.

``update`` keeps the newest arrays by reference and a few scalars per step — no array work, so
listening costs a procedure microseconds per event. What the panels derive from the arrays
(levels, error histograms, drift means per level, the tile image; ``reduce`` does the work)
is computed when a frame is drawn and cached per array until new data arrive. ``alerts``
collects the run's errors and warnings.

A step's result stays until the next step has something to show: a new programming, drift
measurement, inference or training replaces the one shown only with its first data (its
first verify read, drift read, accuracy or epoch), and the map keeps the newest values read
on its tile. ``touched`` tells which panel had new data last; ``phase`` what the run is
doing now (see ``phase``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcm_hil.documents.analog import InferAccuracy, InferStart, TrainEpoch, TrainStart
from pcm_hil.documents.base import Document, UnknownDocument
from pcm_hil.documents.characterize import CurvePoint
from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.records.store import RunInfo
from pcm_hil.ui.dashboard.format import span
from pcm_hil.ui.dashboard.phase import Phase, advance
from pcm_hil.ui.dashboard.reduce import (
    emulator_shape,
    error_histogram,
    group_levels,
    level_means,
    square_for,
    tile_image,
)
from pcm_hil.ui.dashboard.sweep import SweepView
from pcm_hil.ui.dashboard.sweep import take as take_sweep


@dataclass
class ProcedureProgress:
    """One procedure's progress: wall times of its start, last step and last event, and its
    start document, newest step document and end document (any document of that kind: they
    are routed by ``kind``, so a document without a class here counts too)."""

    name: str
    started: float
    last: float
    done: int = 0
    total: int = 0
    steps: int = 0
    last_step: float | None = None
    status: str = "running"
    start: Document | UnknownDocument | None = None
    step: Document | UnknownDocument | None = None
    end: Document | UnknownDocument | None = None


@dataclass
class MapSource:
    """Per-device values a procedure read — a programming's verify reads, a drift
    measurement's reads — with where its devices are: ``tile_of`` and ``address`` in the
    order of ``values``; ``tiles`` the tiles they are on when the start document says so.
    ``at`` the iteration or time after programming of the newest ``values``."""

    kind: str
    tile_of: np.ndarray
    address: np.ndarray
    tiles: list[int] | None = None
    values: np.ndarray | None = None
    at: Any = None
    verify: VerifyReads | None = None
    """A programming's verify reads, when they are the newest values (else ``values``)."""

    def latest(self) -> np.ndarray | None:
        """The newest values."""
        return self.verify.latest() if self.verify is not None else self.values

    def label(self) -> str:
        if self.kind == "drift":
            return f"drift t = {span(self.at)}"
        return "after programming" if self.at == "end" else f"program iteration {self.at}"


class VerifyReads:
    """A programming's latest verify read of every device, folded from its iterations when
    asked (drawing), not as they come (updating keeps arrays by reference)."""

    def __init__(self, devices: int) -> None:
        self.trace = ProgramTrace(devices)
        self.pending: list[ProgramIteration] = []
        self.values: np.ndarray | None = None

    def add(self, step: ProgramIteration) -> None:
        self.pending.append(step)

    def latest(self) -> np.ndarray | None:
        """Every device's latest verify read, µS (a fresh array after new iterations)."""
        if self.pending:
            for step in self.pending:
                self.trace.add(step)
            self.pending = []
            self.values = self.trace.conductance_uS.copy()
        return self.values


@dataclass
class _Program:
    start: ProgramStart
    source: MapSource
    step: ProgramIteration | None = None
    end: ProgramEnd | None = None
    verify: VerifyReads | None = None


@dataclass
class _Drift:
    start: DriftStart
    source: MapSource
    times: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    means: list = field(default_factory=list)
    end: DriftEnd | None = None


#: Map sources kept (the newest): enough for the tiles a run works on in turn.
MAP_SOURCES = 16


class DashboardState:
    """What the panels show, fed by ``update(event)`` (live, or read back from the run store).

    ``update`` only stores references and scalars; the heavy lifting happens at render time
    and is cached per array. ``tile`` picks the tile of the map (default: the first tile of
    the newest values read); ``geometry`` (rows, columns) the tile's shape when the chip's
    identity or the emulator profile does not tell it; ``g_max_uS`` the top of the colour
    scale.
    """

    program: _Program | None
    drift: _Drift | None
    next_program: _Program | None
    next_drift: _Drift | None

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
        self.program: _Program | None = None  # the programming shown
        self.next_program: _Program | None = None  # a newer one, until its first data
        self.earlier_programs: list[_Program] = []  # completed ones shown before it
        self.drift: _Drift | None = None
        self.next_drift: _Drift | None = None
        self.map_sources: list[MapSource] = []
        self.map_values: np.ndarray | None = None  # the newest per-device values read
        self.infer: dict[tuple[float, str], dict[str, list[float]]] = {}
        self.train: list[tuple[int, float | None, int | None]] = []
        self.curves: dict[str, tuple[str, list[tuple[float, float, float]]]] = {}
        self.sweep: SweepView | None = None  # the sweep shown (pcm_hil.ui.dashboard.sweep)
        self._infer_started = False  # an inference started: its first accuracy replaces
        self._train_started = False
        self.touched: dict[str, int] = {}  # panel → the event that last brought it data
        self.phase: Phase | None = None
        self._cache: dict[str, tuple[Any, Any]] = {}

    # --- feeding ------------------------------------------------------------------------------

    def set_run(
        self, info: RunInfo | None, resource: str | None = None, identity: dict | None = None
    ) -> None:
        """The run being shown (None for an unrecorded one) and the instrument it runs on;
        ``resource`` and ``identity`` default to the run's."""
        self.version += 1
        self.info = info
        if resource is not None:
            self.resource = resource
        elif info is not None:
            self.resource = info.resource
        if identity is not None:
            self.identity = identity
        elif info is not None and info.identity:
            self.identity = info.identity

    def update(self, event: Event) -> None:
        """Take one event: the start, a step or the end of any procedure, routed by its
        document's type. Cheap: no array work."""
        document, name, wall = event.document, event.procedure, event.wall_time_s
        self.events += 1
        self.version += 1
        progress = self.procedures.get(name)
        if document.kind == "start" or progress is None:
            if progress is not None:  # a procedure run again: keep the newest, last in order
                del self.procedures[name]
            progress = self.procedures[name] = ProcedureProgress(name, wall, wall)
        progress.last = wall
        progress.done = event.done
        progress.total = event.total
        self.current = name
        if document.kind == "start":  # by kind: a document without a class here counts too
            progress.start = document
        elif document.kind == "step":
            progress.steps += 1
            progress.last_step = wall
            progress.step = document
        else:
            progress.status = document.values().get("status") or "completed"
            progress.end = document
        running = [p.name for p in self.procedures.values() if p.status == "running"]
        self.phase = advance(self.phase, document.kind, name, wall, progress.status, running)
        self._take(document)

    def _take(self, document: Any) -> None:
        """What the panels keep of a document, by its type (unknown documents: nothing)."""
        if document.procedure == "sweep":
            self.sweep = take_sweep(self.sweep, document)
            self.touched["sweep"] = self.events
            return
        match document:
            case DriftStart():
                source = self._source("drift", document.tile, document.address)
                self.next_drift = _Drift(document, source)
                if self.drift is None or not (self.drift.times or self.drift.end is not None):
                    self.drift, self.next_drift = self.next_drift, None
            case ProgramStart():
                tiles = [int(t) for t in document.tiles] if document.tiles else None
                source = self._source("program", document.tile, document.address, tiles)
                self.next_program = _Program(document, source)
                shown = self.program
                if shown is None or (shown.step is None and shown.end is None):
                    self.program, self.next_program = self.next_program, None
            case InferStart():
                self._infer_started = True
            case TrainStart():
                self._train_started = True
            case ProgramIteration() if self.program is not None:
                program = self._shown_program()
                program.step = document
                if program.verify is None:
                    program.verify = VerifyReads(int(program.start.devices))
                program.verify.add(document)  # folded when drawn
                program.source.verify, program.source.at = program.verify, document.iteration
                self.touched["program"] = self.events
            case DriftRead() if self.drift is not None:
                if self.next_drift is not None:
                    self.drift, self.next_drift = self.next_drift, None
                drift = self.drift
                drift.times.append(float(document.t_s))
                drift.pending.append(document.conductance_uS)
                if len(drift.pending) > 64:  # catching up a long run: keep memory bounded
                    self.drift_means()
                self._read(drift.source, document.conductance_uS, document.t_s)
                self.touched["drift"] = self.events
            case TrainEpoch():
                if self._train_started:
                    self.train, self._train_started = [], False
                self.train.append((document.epoch, document.test_accuracy, document.pulses_applied))
                self.touched["accuracy"] = self.events
            case InferAccuracy():
                if self._infer_started:
                    self.infer, self._infer_started = {}, False
                row = self.infer.setdefault((float(document.t_s), document.weights), {})
                for compensation, value in document.accuracy.items():
                    if value is not None:
                        row.setdefault(compensation, []).append(float(value))
                self.touched["accuracy"] = self.events
            case CurvePoint():
                points = self.curves.setdefault(document.procedure, (document.x_name, []))[1]
                points.append((document.x, document.mean_uS, document.std_uS))
                self.touched["curve"] = self.events
            case ProgramEnd() if self.program is not None:
                if document.converged_fraction is None:  # failed: no summary to show
                    self.next_program = None  # (one that never read anything: gone)
                    return
                program = self._shown_program()  # completed or cancelled: its summary
                program.end = document
                if document.final_uS is not None:  # the read after programming ended
                    self._read(program.source, document.final_uS, "end")
                self.touched["program"] = self.events
            case DriftEnd() if self.drift is not None:
                if self.next_drift is not None:  # ended before its first read: nothing new
                    self.next_drift = None
                    return
                self.drift.end = document
                self.touched["drift"] = self.events

    def _shown_program(self) -> _Program:
        """The programming shown, now the newer one (if any) has data."""
        if self.next_program is not None:
            if self.program is not None and self.program.end is not None:
                self.earlier_programs = [*self.earlier_programs[-2:], self.program]
            self.program, self.next_program = self.next_program, None
        assert self.program is not None
        return self.program

    def _source(
        self, kind: str, tile_of: np.ndarray, address: np.ndarray, tiles: list[int] | None = None
    ) -> MapSource:
        source = MapSource(kind, tile_of, address, tiles)
        self.map_sources = [*self.map_sources[-(MAP_SOURCES - 1) :], source]
        return source

    def _read(self, source: MapSource, values: np.ndarray, at: Any) -> None:
        source.values, source.at, source.verify = values, at, None
        self.map_values = values

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
        """``compute()``, again only when ``key`` is not the very object(s) it was for."""
        hit = self._cache.get(name)
        if hit is not None and _same(hit[0], key):
            return hit[1]
        value = compute()
        self._cache[name] = (key, value)
        return value

    def program_levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(levels, level index per device) of the newest programming."""
        if self.program is None:
            return None
        return self._program_levels(self.program)

    def _program_levels(self, program: _Program) -> tuple[np.ndarray, np.ndarray]:
        target = program.start.target_uS
        return self._cached("program_levels", target, lambda: group_levels(target))

    def drift_levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.drift is None:
            return None
        target = self.drift.start.target_uS
        return self._cached("drift_levels", target, lambda: group_levels(target))

    def error_histogram(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per level of the newest programming: counts of |read − target| per bin (in units of
        the tolerance; the last column counts devices not read yet), device count, and mean
        |read − target| over the devices read."""
        program = self.program
        if program is None or program.verify is None:
            return None
        read = program.verify.latest()
        if read is None:
            return None
        return self._cached("histogram", read, lambda: self._histogram(program, read))

    def _histogram(
        self, program: _Program, read: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        levels, inverse = self._program_levels(program)
        target = program.start.target_uS
        tolerance = float(program.start.tolerance_uS or 0.5)
        return error_histogram(read, target, inverse, levels.size, tolerance)

    def drift_means(self) -> list[np.ndarray]:
        """Mean conductance per level at each read time so far (reduces new reads only)."""
        drift = self.drift
        if drift is None:
            return []
        if drift.pending:
            found = self.drift_levels()
            if found is not None:
                levels, inverse = found
                for values in drift.pending:
                    drift.means.append(level_means(values, inverse, levels.size))
            drift.pending = []
        return drift.means

    def tile_shape(self) -> tuple[int, int] | None:
        """(rows, columns) of a tile: given, as the chip reported it (the run's record), from
        the emulator profile of the resource, else the smallest power-of-two square holding
        every address."""
        if self.geometry:
            return self.geometry
        for source in (self.info.chip if self.info else None, self.info.parameters if self.info else None):  # fmt: skip
            if source and source.get("rows") and source.get("columns"):
                return int(source["rows"]), int(source["columns"])
        shape = emulator_shape(self.resource)
        if shape:
            return shape
        _, shown = self.map_source()
        shown = shown or (self.map_sources[-1] if self.map_sources else None)
        if shown is None:
            return None
        address = shown.address
        return self._cached("shape", address, lambda: square_for(address))

    @staticmethod
    def _tiles_of(source: MapSource) -> list[int]:
        if source.tiles is None:  # found when first drawn, kept with the source
            source.tiles = [int(t) for t in np.unique(source.tile_of)]
        return source.tiles

    def map_source(self) -> tuple[int | None, MapSource | None]:
        """The map's tile — ``tile`` if given, else the first of the newest values read (or,
        before any, of the newest procedure to read) — and the newest values read on it."""
        read = [s for s in self.map_sources if s.latest() is not None]
        tile = self.tile
        if tile is None:
            newest = read[-1] if read else (self.map_sources[-1] if self.map_sources else None)
            tiles = self._tiles_of(newest) if newest is not None else []
            tile = tiles[0] if tiles else None
        if tile is None:
            return None, None
        return tile, next((s for s in reversed(read) if tile in self._tiles_of(s)), None)

    def map_tile(self) -> int | None:
        return self.map_source()[0]

    def map_label(self) -> str | None:
        """Where the map's values come from: "program iteration 7", "drift t = 1 d"."""
        source = self.map_source()[1]
        return source.label() if source is not None else None

    def tile_image(self) -> np.ndarray | None:
        """The map's tile as rows × columns of conductance, NaN where not read."""
        tile, source = self.map_source()
        shape = self.tile_shape()
        values = source.latest() if source is not None else None
        if source is None or values is None or shape is None:
            return None
        tile_of, address = source.tile_of, source.address
        if values.shape != address.shape:
            return None
        return self._cached(
            "image",
            (values, tile, shape),
            lambda: tile_image(values, tile_of, address, tile, shape),
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
                error = p.end.values().get("error") if p.end is not None else None
                if error:
                    text += f": {error}"
                if not any(error and error in shown for shown in errors):
                    (errors if p.status == "failed" else warnings).append(text)
        program = self.program
        if program is not None:
            stuck = program.end.stuck_devices if program.end is not None else None
            if stuck is None and program.step is not None:
                stuck = program.step.stuck_devices
            devices = int(program.start.devices or 0)
            if stuck:
                share = f" ({stuck / devices:.2%})" if devices else ""
                warnings.append(f"{stuck} stuck devices{share}: not responding, left alone")
            fraction = program.end.converged_fraction if program.end is not None else None
            if fraction is not None and fraction < 0.9:
                warnings.append(
                    f"only {fraction:.1%} converged within "
                    f"{program.start.max_iterations} iterations"
                )
        if self.drift is not None and self.drift.end is not None:
            poor = [
                level
                for level in self.drift.end.levels or []
                if (level.get("good_fit_fraction") or 0.0) < 0.5
            ]
            if poor:
                warnings.append(
                    f"drift: under half the fits good at {len(poor)} level(s), e.g. "
                    f"{poor[0].get('target_uS', 0):.2f} µS"
                )
        return [("error", e) for e in errors] + [("warning", w) for w in warnings]


def _same(a: Any, b: Any) -> bool:
    """The very same object — or tuples of the very same objects (numbers: equal)."""
    if a is b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(
            x is y or (isinstance(x, (int, float, tuple)) and x == y)
            for x, y in zip(a, b, strict=True)
        )
    return False
