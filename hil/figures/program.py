"""Figures of program-and-verify: where each level's devices landed, how far from their
targets beside the published σ_prog, and how many iterations they took."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from pcm_hil.documents.base import Document
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.figures.style import ecdf, level_colours, levels, new_figure
from pcm_hil.procedures.program import published_programming_sigma


def program_figures(documents: list[Document]) -> dict[str, Figure]:
    """``program-levels``, ``program-errors`` and ``program-iterations`` of each
    program-and-verify the documents hold that iterated (the second one's named
    ``program-levels-2`` and so on: a demo programs its network, then its drift devices)."""
    figures: dict[str, Figure] = {}
    for number, (start, iterations, end) in enumerate(_programmings(documents), start=1):
        suffix = "" if number == 1 else f"-{number}"
        for name, figure in _programming_figures(start, iterations, end).items():
            figures[f"{name}{suffix}"] = figure
    return figures


def _programming_figures(
    start: ProgramStart, iterations: list[ProgramIteration], end: ProgramEnd | None
) -> dict[str, Figure]:
    targets = np.asarray(start.target_uS, dtype=np.float64)
    last = iterations[-1]
    trace = ProgramTrace(targets.size)
    for iteration in iterations:
        trace.add(iteration)
    if end is not None and end.final_uS is not None:  # the read after programming ended
        final = np.asarray(end.final_uS, dtype=np.float64)
        counted = np.asarray(end.converged, dtype=bool)
        read = "read after programming"
    else:  # cut off (or recorded before version 2): the last verify reads; a finished
        # device converged when that read is within the tolerance (else it was found stuck)
        final = trace.conductance_uS.astype(np.float64)
        counted = trace.finished & start.within(final)
        read = "last verify read"
    stuck = end.stuck_devices if end is not None else last.stuck_devices
    finished_at = (
        np.asarray(end.iterations) * counted
        if end is not None and end.iterations is not None
        else trace.finished_iteration * counted
    )
    state = _state(start, last, end)
    return {
        "program-levels": _levels_figure(targets, final, read, last, stuck, state),
        "program-errors": _errors_figure(targets, final, counted, read, start.tolerance_uS, state),
        "program-iterations": _iterations_figure(finished_at, stuck, state),
    }


def _state(start: ProgramStart, last: ProgramIteration, end: ProgramEnd | None) -> str:
    """How far the programming got, for the titles: its end, or where it was cut off."""
    if end is None:
        return f"not ended: at iteration {last.iteration} of {start.max_iterations}"
    if end.status != "completed":
        return f"{end.status} at iteration {last.iteration} of {start.max_iterations}"
    return f"{start.devices:,} devices, {len(np.unique(start.target_uS))} levels"


def _programmings(
    documents: list[Document],
) -> list[tuple[ProgramStart, list[ProgramIteration], ProgramEnd | None]]:
    """Each program-and-verify of the documents that recorded an iteration: its start, its
    iterations and its end (None if cut off)."""
    found: list[tuple[ProgramStart, list[ProgramIteration], ProgramEnd | None]] = []
    for document in documents:
        if isinstance(document, ProgramStart):
            found.append((document, [], None))
        elif isinstance(document, ProgramIteration) and found:
            found[-1][1].append(document)
        elif isinstance(document, ProgramEnd) and found:
            found[-1] = (found[-1][0], found[-1][1], document)
    return [programming for programming in found if programming[1]]


def _levels_figure(
    targets: np.ndarray,
    final: np.ndarray,
    read: str,
    last: ProgramIteration,
    stuck: int | None,
    state: str,
) -> Figure:
    figure, (ax,) = new_figure(
        f"Programmed conductance per level ({state})\n"
        f"{last.converged:,} of {last.devices:,} converged, {stuck or 0:,} stuck"
    )
    groups = list(levels(targets))
    for (_, target, mask), colour in zip(groups, level_colours(len(groups)), strict=True):
        x, y = ecdf(final[mask])
        ax.step(x, y, where="post", color=colour, label=f"{target:.3g} µS")
        ax.axvline(target, color=colour, linestyle=":", linewidth=0.8, gid="target")
    ax.set_xlabel(f"conductance, {read} (µS)")
    ax.set_ylabel("fraction of the level's devices")
    ax.set_ylim(0, 1)
    if len(groups) <= 16:  # beside the axes: inside, it would hide the highest levels
        ax.legend(title="target", fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return figure


def _errors_figure(
    targets: np.ndarray,
    final: np.ndarray,
    counted: np.ndarray,
    read: str,
    tolerance_uS: float,
    state: str,
) -> Figure:
    """Error of the converged devices per level."""
    figure, (hist, sigma) = new_figure(
        f"Programming error of the converged devices: {read} − target ({state})", columns=2
    )
    error = final - targets
    finite = np.isfinite(error) & counted
    span = max(
        4 * tolerance_uS, float(np.percentile(np.abs(error[finite]), 99.5)) if finite.any() else 1.0
    )
    bins = np.linspace(-span, span, 61)
    groups = list(levels(targets))
    stds = []
    for (_, target, mask), colour in zip(groups, level_colours(len(groups)), strict=True):
        values = error[mask & finite]
        counts, _ = np.histogram(values, bins=bins)
        hist.stairs(counts, bins, color=colour, label=f"{target:.3g} µS")
        stds.append(float(np.std(values)) if values.size > 1 else np.nan)
    edges = [
        hist.axvline(edge, color="black", linestyle="--", linewidth=0.8, gid="tolerance")
        for edge in (-tolerance_uS, tolerance_uS)
    ]
    hist.legend([edges[0]], [f"±{tolerance_uS:g} µS tolerance"], fontsize="small", loc="upper left")
    hist.set_xlabel("error (µS)")
    hist.set_ylabel("devices")
    level_targets = np.array([target for _, target, _ in groups])
    sigma.plot(level_targets, stds, "o", color="C3", label="measured σ per level", gid="measured")
    fine = np.linspace(0.0, max(float(level_targets.max()), 25.0), 200)
    sigma.plot(
        fine,
        published_programming_sigma(fine),
        color="black",
        label="published σ_prog (Nandakumar 2019)",
        gid="published",
    )
    sigma.set_xlabel("target conductance (µS)")
    sigma.set_ylabel("error std σ (µS)")
    sigma.set_ylim(bottom=0)
    sigma.legend(fontsize="small")
    return figure


def _iterations_figure(finished_at: np.ndarray, stuck: int | None, state: str) -> Figure:
    """CDF of the iterations the devices took to converge (0: they did not)."""
    done = finished_at[finished_at > 0]
    figure, (ax,) = new_figure(
        f"Iterations to converge ({state})\n"
        + (
            f"mean {done.mean():.1f}; {int((finished_at == 0).sum()):,} not converged, "
            f"{stuck or 0:,} of them found stuck"
            if done.size
            else "none converged yet"
        )
    )
    x, y = ecdf(done.astype(np.float64))
    ax.step(x, y, where="post", color="C0", gid="iterations")
    ax.set_xlabel("iterations until the device converged")
    ax.set_ylabel("fraction of converged devices")
    ax.set_ylim(0, 1)
    return figure
