"""The panels of what is measured: program-and-verify (convergence and a histogram of errors
per level), drift (mean conductance per level against log time, ν per level), accuracy
(inference against time, training per epoch) and characterization curves."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from pcm_hil.procedures.drift import fit_drift
from pcm_hil.ui.dashboard.draw import Context, Grid, bar, panel
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
    program = state.program
    title = "program-and-verify"
    if program is None:
        return panel(Text("no programming yet", style="dim"), title)
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


def drift_panel(state: DashboardState, height: int, width: int, ctx: Context) -> Panel:
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
        return panel(Group(head, Text("waiting for the first read", style="dim")), "drift")
    levels = found[0]
    fitted = {}
    for fit in (drift.end.levels if drift.end is not None else None) or []:
        fitted[round(float(fit.get("target_uS") or 0.0), 3)] = fit
    matrix = np.vstack(means)  # read times × levels
    room = height - 2 - 1
    groups = _group_rows(levels.size, room - 1)
    if not groups:
        return panel(head, "drift")
    fixed = 10 + 12 + 8 + (21 if ctx.large else 0)  # the other columns and their gaps
    spark_width = max(min(len(drift.times), width - fixed), 4)
    table = Grid()
    table.add_column("level µS", justify="right", no_wrap=True)
    first, last = span(drift.times[0]), span(drift.times[-1])
    table.add_column(f"G vs log t, {first}→{last}" if ctx.large else "G vs log t", no_wrap=True)
    table.add_column("G µS", justify="right", no_wrap=True)
    table.add_column("ν", justify="right", no_wrap=True)
    if ctx.large:
        table.add_column("ν std", justify="right", no_wrap=True)
        table.add_column("good fits", justify="right", no_wrap=True)
    series_of = []  # mean conductance per row of the table: a level or a group of levels
    for rows in groups:
        if rows.stop - rows.start == 1:
            series_of.append(matrix[:, rows.start])
        else:
            with np.errstate(invalid="ignore"):
                series_of.append(np.nanmean(matrix[:, rows], axis=1))
    fit_from = float(start.fit_from_s or 0.0)
    estimates = _nu_estimates(np.asarray(drift.times), np.column_stack(series_of), fit_from)
    for rows, series, estimate in zip(groups, series_of, estimates.tolist(), strict=True):
        single = rows.stop - rows.start == 1
        row: list[str | Text] = [
            _level_label(levels, rows),
            Text(sparkline(series, spark_width), style="cyan"),
        ]
        row.append(f"{number(series[0], '.2f')}→{number(series[-1], '.2f')}")
        group = [fitted.get(round(float(v), 3)) for v in levels[rows]]
        level = group[0] if single else None
        fits = [g for g in group if g is not None]
        if not single and drift.end and len(fits) == len(group):
            nus = [nu for nu in (g.get("nu_mean") for g in fits) if nu is not None]
            level = {"nu_mean": float(np.mean(nus)) if nus else None}
        if level is not None:
            row.append(Text(number(level.get("nu_mean"), ".4f"), style="bold"))
            if ctx.large:
                row.append(number(level.get("nu_std"), ".4f"))
                good = level.get("good_fit_fraction")
                row.append(
                    f"{good:.0%} of {level.get('n_devices', 0)}" if good is not None else "–"
                )
        else:
            shown = f"≈{estimate:.3f}" if math.isfinite(estimate) else "…"
            row.append(Text(shown, style="dim"))
            if ctx.large:
                row += ["", ""]
        table.add_row(*row)
    subtitle = "ν: per-device fits, mean of good ones" if drift.end else "≈ν from level means"
    return panel(Group(head, table), "drift", subtitle)


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
