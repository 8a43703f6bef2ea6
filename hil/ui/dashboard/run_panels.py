"""The panels about the run itself: the instrument and the run (identity), progress — the
phase line (what is under way, for how long, a spinner) above a line per procedure with
elapsed time and ETA — and the errors and warnings."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from pcm_hil.documents.analog import InferAccuracy, InferChip, TrainEpoch
from pcm_hil.documents.characterize import CurvePoint
from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.program import ProgramIteration
from pcm_hil.ui.dashboard.draw import Context, bar, panel
from pcm_hil.ui.dashboard.format import duration, number, span
from pcm_hil.ui.dashboard.phase import phase_text
from pcm_hil.ui.dashboard.state import DashboardState, ProcedureProgress

STATUS_STYLE = {
    "running": "bold yellow",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold magenta",
    "killed": "bold red",
}
STATUS_MARK = {"running": "▶", "completed": "✓", "failed": "✗", "cancelled": "■", "killed": "✗"}


def identity_panel(state: DashboardState, ctx: Context) -> Panel:
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
    return panel(Group(*lines), "pcm-hil")


def _progress_line(p: ProcedureProgress, width: int, ctx: Context, live: bool) -> Text:
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
        when = f"{duration(elapsed)} " + (
            "finishing" if p.total and p.done >= p.total else f"ETA {duration(eta)}"
        )
    elif p.status == "running":
        when = f"{duration(elapsed)} {status}"
    else:
        when = f"{duration(elapsed)} {p.status}"
    name = p.name[:18]
    note = _note(p) if ctx.large else ""
    fixed = 2 + len(name) + 1 + 1 + len(counts) + 1 + len(pct) + 1 + len(when)
    fixed += len(note) + 2 if note else 0
    gauge = bar(p.done / p.total if p.total else (1.0 if ended else 0.0), width - fixed, ctx.colour)
    line = Text.assemble((mark + " ", style), (name, "bold"), " ", gauge, " ", counts, " ", pct)
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
    step, start = p.step, p.start
    if isinstance(step, DriftRead) and isinstance(start, DriftStart) and 0 < step.t_s <= 2 * took:
        if not np.size(start.times_s):
            return None
        return max(float(np.max(start.times_s)) - float(step.t_s) - since, 0.0)
    return max(took / p.done * (p.total - p.done) - since, 0.0)


def _note(p: ProcedureProgress) -> str:
    """A few words on the newest step, by its document's type."""
    step = p.step
    match step:
        case None:
            return ""
        case ProgramIteration() if step.devices:
            return f"{step.converged / step.devices:.1%} converged"
        case DriftRead():
            return f"t = {span(step.t_s)}"
        case TrainEpoch():
            accuracy = step.test_accuracy
            return f"epoch {step.epoch}" + (f" {accuracy:.1%}" if accuracy is not None else "")
        case InferAccuracy():
            return f"{step.weights} t = {span(step.t_s)}"
        case InferChip():
            return f"chip {step.chip} ({step.identity.get('serial', '?')}): {step.weights}"
        case CurvePoint():  # the swept value first
            values = {step.x_name: step.x, "mean_uS": step.mean_uS, "std_uS": step.std_uS}
        case _:
            values = step.values()
    scalars = [
        f"{k}={number(v, '.3g') if isinstance(v, float) else v}"
        for k, v in values.items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ]
    return " ".join(scalars[:2])[:30]


def phase_line(state: DashboardState, ctx: Context) -> Text:
    """What the run is doing now and for how long, with a spinner while it runs."""
    status = state.status()
    mark, what, how_long = phase_text(state.phase, state.procedures.values(), status, ctx.now)
    running = status == "running"
    line = Text.assemble(
        (mark + " ", "bold yellow" if running else STATUS_STYLE.get(status, "bold")),
        (what, "" if running else "bold"),
    )
    if how_long:
        line.append(" · ")
        line.append(how_long, style="bold" if running else "dim")
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def progress_panel(state: DashboardState, width: int, lines: int, ctx: Context) -> Panel:
    """The phase line, then the newest ``lines`` procedures' progress."""
    live = state.running()
    shown = list(state.procedures.values())[-lines:] if lines > 0 else []
    body: list[RenderableType] = [_progress_line(p, width - 4, ctx, live) for p in shown]
    if state.procedures:
        body.insert(0, phase_line(state, ctx))
    else:
        body = [Text("waiting for the first event…", style="dim")]
    hidden = len(state.procedures) - len(shown)
    subtitle = f"+{hidden} earlier" if hidden > 0 else None
    return panel(Group(*body), "progress", subtitle)


def alerts_panel(state: DashboardState, lines: int) -> Panel:
    alerts = state.alerts()
    body: list[RenderableType] = []
    for severity, text in alerts[: max(lines, 1)]:
        style, mark = ("bold red", "✗ ") if severity == "error" else ("yellow", "! ")
        body.append(Text(mark + text, style=style, no_wrap=True, overflow="ellipsis"))
    if not body:
        body = [Text("no errors or warnings", style="dim")]
    more = len(alerts) - len(body)
    return panel(Group(*body), "errors & warnings", f"+{more} more" if more > 0 else None)
