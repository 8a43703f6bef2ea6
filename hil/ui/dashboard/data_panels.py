"""The panels of what is measured: program-and-verify (convergence and a histogram of errors
per level), drift (each level's change since its first read on one log-time axis and one
vertical scale for all levels — ``drift_axis`` — and ν per level), accuracy (inference
against time, training per epoch) and characterization curves."""

from __future__ import annotations

import math
import warnings

import numpy as np
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from pcm_hil.procedures.drift import fit_drift
from pcm_hil.ui.dashboard.draw import Context, Grid, bar, panel
from pcm_hil.ui.dashboard.drift_axis import (
    PENDING,
    on_columns,
    relative_drift,
    shared_scale,
    time_axis,
)
from pcm_hil.ui.dashboard.format import SPARK, number, span, sparkline
from pcm_hil.ui.dashboard.reduce import ERROR_EDGES, ERROR_LABELS
from pcm_hil.ui.dashboard.state import DashboardState


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


def program_panel(state: DashboardState, height: int, width: int, ctx: Context) -> Panel:
    """Convergence, the setup and per target level a histogram of |read − target| of the
    programming shown — the newest with data: a newer one starting keeps the one before on
    screen until its first verify read — and a line on those shown before it, room allowing."""
    program = state.program
    title = "program-and-verify"
    if program is None:
        return panel(Text("no programming yet", style="dim"), title)
    if state.next_program is not None:
        title += " · the next starting"
    start, step, end = program.start, program.step, program.end
    tolerance = float(start.tolerance_uS or 0.5)
    devices = int(start.devices or 0)
    head = Text()
    if end is not None:
        head.append("converged ", style="bold")
        head.append(f"{end.converged_fraction or 0.0:.1%}", style="bold green")
        head.append(f" · stuck {end.stuck_devices or 0}")
        head.append(
            f" · iterations {number(end.iterations_mean, '.1f')}"
            f" (p99 {number(end.iterations_p99, '.0f')})"
        )
        head.append(f" · error σ {number(end.error_std_uS, '.3f')} µS")
    elif step is not None:
        converged = int(step.converged)
        of = int(step.devices or devices or 1)
        head.append("converged ", style="bold")
        head.append(f"{converged / of:.1%}", style="bold yellow")
        head.append(f" ({converged}/{of}) · stuck {step.stuck_devices}")
        head.append(f" · iteration {step.iteration}/{start.max_iterations}")
    else:
        head.append(f"{devices} devices · waiting for the first verify read", style="dim")
    head.no_wrap, head.overflow = True, "ellipsis"
    setup = Text(
        f"{start.strategy} · tolerance ±{tolerance:g} µS · {devices} devices"
        f" · tile(s) {','.join(str(t) for t in start.tiles or [])}",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    parts: list[RenderableType] = [head]
    room = height - 2 - 1
    histogram = state.error_histogram()
    found = state.program_levels()  # not None when the histogram is not
    if room >= 5 or histogram is None:
        parts.append(setup)
        room -= 1
    levels_found = found[0].size if found is not None else 0
    if state.earlier_programs and room >= levels_found + 2:
        parts.append(_earlier(state.earlier_programs))
        room -= 1
    subtitle = f"|Δ| = |read − target| in t = {tolerance:g} µS"
    if histogram is None or found is None or room < 2:
        if histogram is not None and room == 1:
            parts.append(setup)
        return panel(Group(*parts), title, subtitle if histogram is not None else None)
    counts, total, mean_error = histogram
    levels = found[0]
    groups = _group_rows(levels.size, room - 1)
    scale = 2 if ctx.large else 1
    table = Grid()
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
        row: list[str | Text] = [_level_label(levels, rows), f"{conv:.1%}", bars]
        if ctx.large:
            read = total[rows] - counts[rows, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = float(np.nansum(mean_error[rows] * read) / read.sum())
            row += [number(mean, ".3f"), str(n), str(unread) if unread else ""]
        table.add_row(*row)
    parts.append(table)
    return panel(Group(*parts), title, subtitle)


def _earlier(programs: list) -> Text:
    """A line on the programmings shown before, newest first."""
    said = []
    for program in reversed(programs):
        end, start = program.end, program.start
        tiles = ",".join(str(t) for t in start.tiles or [])
        said.append(
            f"tile(s) {tiles}, {start.devices} devices, "
            f"{end.converged_fraction or 0.0:.1%} converged, stuck {end.stuck_devices or 0}"
        )
    return Text("before: " + "; ".join(said), style="dim", no_wrap=True, overflow="ellipsis")


def drift_panel(state: DashboardState, height: int, width: int, ctx: Context) -> Panel:
    """Per level (or group of levels): its drift since its first read against log time on the
    axes of ``drift_axis`` — the columns laid out from the read schedule, one vertical scale
    for all levels, printed in the column's header — its mean conductance first → last, and ν
    (fitted per device once the measurement ends, estimated from the level means before)."""
    drift = state.drift
    if drift is None:
        return panel(Text("no drift measurement yet", style="dim"), "drift")
    start = drift.start
    times = start.times_s
    planned = int(np.size(times)) if times is not None else 0
    means = state.drift_means()
    found = state.drift_levels()
    head = Text(
        f"{len(drift.times)}/{planned} reads"
        + (f", t = {span(drift.times[0])} … {span(drift.times[-1])}" if drift.times else "")
        + f" · fit from {span(start.fit_from_s)}"
        + f" · {start.devices} devices",
        no_wrap=True,
        overflow="ellipsis",
    )
    if found is None or not means:
        head.append(" · waiting for the first read", style="dim")
        return panel(head, "drift")
    levels = found[0]
    fitted = {}
    for fit in (drift.end.levels if drift.end is not None else None) or []:
        fitted[round(float(fit.get("target_uS") or 0.0), 3)] = fit
    matrix = np.vstack(means)  # read times × levels
    explain = ctx.large and height - 2 - 1 >= levels.size + 2
    room = height - 2 - 1 - (1 if explain else 0)
    groups = _group_rows(levels.size, room - 1)
    if not groups:
        return panel(head, "drift")
    read_times = np.asarray(drift.times, dtype=np.float64)
    relative = relative_drift(matrix)  # read times × levels, % since each level's first read
    series_of, relative_of = [], []  # per row of the table: a level or a group of levels
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a group not read yet: NaN
        for rows in groups:
            series_of.append(np.nanmean(matrix[:, rows], axis=1))
            relative_of.append(np.nanmean(relative[:, rows], axis=1))
    fit_from = float(start.fit_from_s or 0.0)
    estimates = _nu_estimates(read_times, np.column_stack(series_of), fit_from)
    cells = []  # per row: the cells left of the sparkline, and those right of it
    for rows, series, estimate in zip(groups, series_of, estimates.tolist(), strict=True):
        single = rows.stop - rows.start == 1
        right: list[str | Text] = [f"{number(series[0], '.2f')}→{number(series[-1], '.2f')}"]
        group = [fitted.get(round(float(v), 3)) for v in levels[rows]]
        level = group[0] if single else None
        fits = [g for g in group if g is not None]
        if not single and drift.end and len(fits) == len(group):
            nus = [nu for nu in (g.get("nu_mean") for g in fits) if nu is not None]
            level = {"nu_mean": float(np.mean(nus)) if nus else None}
        if level is not None:
            right.append(Text(number(level.get("nu_mean"), ".4f"), style="bold"))
            if ctx.large:
                right.append(number(level.get("nu_std"), ".4f"))
                good = level.get("good_fit_fraction")
                right.append(
                    f"{good:.0%} of {level.get('n_devices', 0)}" if good is not None else "–"
                )
        else:
            shown = f"≈{estimate:.3f}" if math.isfinite(estimate) else "…"
            right.append(Text(shown, style="dim"))
            if ctx.large:
                right += ["", ""]
        cells.append((_level_label(levels, rows), right))
    headers = ["level µS", "G µS", "ν"] + (["ν std", "good fits"] if ctx.large else [])
    others = [[label, *right] for label, right in cells]
    fixed = sum(  # the other columns' widths, and a space after each column
        max(len(headers[k]), *(Text(str(r[k])).cell_len for r in others)) + 1
        for k in range(len(headers))
    )
    room_across = max(width - fixed - 1, 4)
    axis = time_axis(times, drift.times, room_across)
    columns = on_columns(np.column_stack(relative_of), axis)  # columns × rows
    scale = shared_scale(columns)
    ends = f"{span(axis.first_s)}→{span(axis.last_s)}"
    header = _fitting(
        max(room_across, axis.columns),
        f"ΔG/G₀ {scale.label()} vs log t, {ends}",
        f"ΔG/G₀ {scale.label()}, {ends}",
        f"ΔG/G₀ {scale.label()}",
        scale.label(),
    )
    table = Grid()
    table.add_column("level µS", justify="right", no_wrap=True)
    table.add_column(header, no_wrap=True)
    table.add_column("G µS", justify="right", no_wrap=True)
    table.add_column("ν", justify="right", no_wrap=True)
    if ctx.large:
        table.add_column("ν std", justify="right", no_wrap=True)
        table.add_column("good fits", justify="right", no_wrap=True)
    for k, (label, right) in enumerate(cells):
        line = Text()
        for char in scale.line(columns[:, k]):
            line.append(char, style="bright_black" if char == PENDING else "cyan")
        table.add_row(label, line, *right)
    parts: list[RenderableType] = [head]
    if explain:
        parts.append(
            Text(
                f"ΔG/G₀ = change since each level's first read ({span(drift.times[0])})"
                f" · one scale, {scale.step_pct:g}% a step · {PENDING} not read yet",
                style="dim",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    parts.append(table)
    subtitle = "ν: per-device fits, mean of good ones" if drift.end else "≈ν from level means"
    return panel(Group(*parts), "drift", subtitle)


def _fitting(width: int, *choices: str) -> str:
    """The first of ``choices`` at most ``width`` long, else the last."""
    return next((c for c in choices if len(c) <= width), choices[-1])


def _nu_estimates(times: np.ndarray, series: np.ndarray, fit_from: float) -> np.ndarray:
    """≈ν per column of ``series`` (read times × levels or groups of levels, mean conductance)
    fitted as the drift measurement fits each device: ``fit_drift`` over the reads at or after
    ``fit_from`` with a positive time and a finite, positive mean; NaN where fewer than 3
    reads qualify."""
    usable = (times > 0)[:, None] & np.isfinite(series)
    nu, _rms, _error = fit_drift(times[:, None], np.where(usable, series, 0.0), fit_from)
    return nu


def accuracy_panel(state: DashboardState, height: int, width: int, ctx: Context) -> Panel:
    parts: list[RenderableType] = []
    room = height - 2
    if state.infer:
        columns = list(dict.fromkeys((w, c) for (_, w), row in state.infer.items() for c in row))
        table = Grid()
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
            table.add_row(span(t), *cells)
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
            parts.append(Text(sparkline(accuracies, width - 6), style="cyan"))
        keep = room - len(parts) - (sum(2 + len(t.rows) for t in parts if isinstance(t, Grid)))
        if keep >= 3:
            table = Grid()
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
        return panel(Text("no inference or training yet", style="dim"), "accuracy")
    chips = max((len(v) for row in state.infer.values() for v in row.values()), default=0)
    return panel(Group(*parts), "accuracy", f"mean over {chips} chips" if chips > 1 else None)


def curve_panel(state: DashboardState, height: int, width: int, ctx: Context) -> Panel:
    name, (x_name, points) = list(state.curves.items())[-1]
    table = Grid()
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
            number(x, ".0f"),
            number(mean, ".2f"),
            number(std, ".2f"),
            bar(fraction, bar_width, ctx.colour),
        )
    return panel(table, name, f"{len(points)} points")
