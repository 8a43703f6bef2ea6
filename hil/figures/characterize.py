"""Figures of device characterization: the programming curve with the melting threshold
marked, the accumulation curve, and read noise.

Read noise is drawn from each device's mean and std of its reads, which ``read-noise.end``
keeps since version 2 (an older run has nothing to draw): against conductance, and, when the
run read again at times since programming (``--times``), against that time per conductance
bin, each beside the published fit.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pcm_hil.documents.base import Document, End, Start
from pcm_hil.documents.characterize import (
    AccumulationPoint,
    AccumulationStart,
    CurveEnd,
    CurvePoint,
    ProgrammingCurvePoint,
    ProgrammingCurveStart,
    ReadNoiseEnd,
)
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.devices import read_noise_relative_std
from pcm_hil.figures.style import level_colours, new_figure
from pcm_hil.procedures.characterize import conductance_bins

#: Where the melting threshold comes from: no published value was found; it is the emulator
#: model's documented choice (``PcmModel.i_melt_uA``, ± ``i_melt_spread_uA`` device to device).
MELTING_SOURCE = "emulator model default: a choice, no published value"

#: Times since programming at which the published read-noise fit is drawn when the reads'
#: own is not known, s: the model's shortest (``read_noise_t_min_s``), an hour and a day.
READ_NOISE_TIMES_S = (DEFAULT_MODEL.read_noise_t_min_s, 3600.0, 86400.0)

#: Devices drawn as points at most in the read-noise figure: more cost seconds and show no more.
DEVICE_POINTS = 20000


def characterization_figures(documents: list[Document]) -> dict[str, Figure]:
    """``programming-curve`` and ``accumulation`` of the last of each the documents hold (none
    for a curve without a measured point), and ``read-noise`` of the last read-noise run that
    recorded its devices' mean and std (``read-noise.end`` version 2)."""
    figures: dict[str, Figure] = {}
    start, points, end = _last_curve(documents, ProgrammingCurveStart, ProgrammingCurvePoint)
    if isinstance(start, ProgrammingCurveStart) and points:
        figures["programming-curve"] = programming_curve_figure(start, points, end)
    start, points, end = _last_curve(documents, AccumulationStart, AccumulationPoint)
    if isinstance(start, AccumulationStart) and points:
        figures["accumulation"] = accumulation_figure(start, points, end)
    noise = next(
        (d for d in reversed(documents) if isinstance(d, ReadNoiseEnd) and d.mean_uS is not None),
        None,
    )
    if noise is not None and noise.std_uS is not None and noise.reads:
        mean = np.asarray(noise.mean_uS, dtype=np.float64)
        keep = mean > 0
        relative = np.asarray(noise.std_uS, dtype=np.float64)[keep] / mean[keep]
        first = float(noise.times_s[0]) if noise.times_s is not None else None
        figures["read-noise"] = read_noise_figure(mean[keep], relative, noise.reads, first)
        if (
            noise.times_s is not None
            and noise.mean_by_time_uS is not None
            and noise.std_by_time_uS is not None
        ):
            figures["read-noise-vs-time"] = read_noise_time_figure(
                np.asarray(noise.times_s, dtype=np.float64),
                np.asarray(noise.mean_by_time_uS, dtype=np.float64),
                np.asarray(noise.std_by_time_uS, dtype=np.float64),
                noise.reads,
            )
    return figures


def _last_curve(
    documents: list[Document], start_type: type[Start], point_type: type[CurvePoint]
) -> tuple[Start | None, list[CurvePoint], End | None]:
    """The last curve of the kind: its start, points and end (None when cut off)."""
    start: Start | None = None
    points: list[CurvePoint] = []
    end: End | None = None
    for document in documents:
        if isinstance(document, start_type):
            start, points, end = document, [], None
        elif isinstance(document, point_type) and start is not None:
            points.append(document)
        elif isinstance(document, CurveEnd) and document.procedure == start_type.procedure:
            end = document if start is not None else None
    return start, points, end


def curve_arrays(points: list[CurvePoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(swept values, mean µS, std µS) of a curve's points, in the order measured."""
    return (
        np.array([p.x for p in points], dtype=np.float64),
        np.array([p.mean_uS for p in points], dtype=np.float64),
        np.array([p.std_uS for p in points], dtype=np.float64),
    )


def _ending(points: list[CurvePoint], end: End | None) -> str:
    """How the curve ended, for the title: "" when completed."""
    if end is not None and end.status == "completed":
        return ""
    how = end.status if end is not None else "cut off"
    return f", {how} after {len(points)} points"


def programming_curve_figure(
    start: ProgrammingCurveStart, points: list[CurvePoint], end: End | None
) -> Figure:
    """Mean ± std of the conductance after one melt-quench pulse against its current (µA),
    with the melting threshold of the emulator model marked."""
    current, mean, std = curve_arrays(points)
    figure, (ax,) = new_figure(
        f"Programming curve: {start.devices} devices of tile {start.tile}, "
        f"{start.width_ns:g} ns pulses{_ending(points, end)}"
    )
    ax.errorbar(
        current, mean, yerr=std, fmt="o-", color="C0", markersize=4, capsize=3,
        label="measured mean ± std over the devices", gid="measured",
    )  # fmt: skip
    melt, spread = DEFAULT_MODEL.i_melt_uA, DEFAULT_MODEL.i_melt_spread_uA
    ax.axvspan(melt - spread, melt + spread, color="C3", alpha=0.12, gid="melting-spread")
    ax.axvline(
        melt, color="C3", linestyle="--", gid="melting-threshold",
        label=f"melting threshold {melt:g} ± {spread:g} µA\n({MELTING_SOURCE})",
    )  # fmt: skip
    ax.set_xlabel("programming pulse current (µA)")
    ax.set_ylabel("conductance after the pulse (µS)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return figure


def accumulation_figure(
    start: AccumulationStart, points: list[CurvePoint], end: End | None
) -> Figure:
    """Mean (left) and std (right) of the conductance over the devices against the number of
    partial-SET pulses since a RESET (0: the RESET state)."""
    pulses, mean, std = curve_arrays(points)
    figure, (mean_ax, std_ax) = new_figure(
        f"Accumulation: {start.devices} devices of tile {start.tile}, partial-SET pulses of "
        f"{start.amplitude_uA:g} µA, {start.width_ns:g} ns{_ending(points, end)}",
        columns=2,
    )
    mean_ax.plot(pulses, mean, "o-", color="C0", markersize=4, gid="mean")
    std_ax.plot(pulses, std, "o-", color="C0", markersize=4, gid="std")
    for ax, what in ((mean_ax, "mean"), (std_ax, "std")):
        ax.set_xlabel("partial-SET pulses since RESET")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"conductance {what} over the devices (µS)")
        ax.set_ylim(bottom=0)
    return figure


def read_noise_figure(
    mean_uS: np.ndarray,
    relative_std: np.ndarray,
    reads: int,
    elapsed_s: float | None = None,
    bins: int = 8,
) -> Figure:
    """Relative read noise against conductance: per device, the mean of its ``reads`` reads
    (µS) and their relative std (std with ddof 1 / mean; ``device_read_noise`` of the reads),
    taken about ``elapsed_s`` after the devices were programmed (None: not known); the mean
    of the relative std in ``bins`` conductance bins of equal device count; and the published
    fit σ_read/G(G, t) [code, aihwkit PCM model] at ``elapsed_s``, or, not known, at each of
    ``READ_NOISE_TIMES_S``."""
    g = np.asarray(mean_uS, dtype=np.float64)
    relative = np.asarray(relative_std, dtype=np.float64)
    centres, binned = binned_read_noise(g, relative, bins)
    when = f"{elapsed_s:g} s after programming" if elapsed_s is not None else "time not recorded"
    figure, (ax,) = new_figure(f"Read noise: {g.size} devices read {reads} times, {when}")
    shown = spread_sample(g.size, DEVICE_POINTS)
    ax.plot(
        g[shown], relative[shown], ".", color="C0", alpha=0.25, markersize=2,
        label="devices" if shown.size == g.size else f"{shown.size} of the devices",
        gid="devices",
    )  # fmt: skip
    ax.plot(centres, binned, "o-", color="C3", label="mean per conductance bin", gid="measured")
    fine = np.geomspace(max(float(g.min()), 0.05), max(float(g.max()), 1.0), 200)
    times = (elapsed_s,) if elapsed_s is not None else READ_NOISE_TIMES_S
    for t, style in zip(times, ("-", "--", ":"), strict=False):
        ax.plot(
            fine, read_noise_relative_std(DEFAULT_MODEL, fine, t), style, color="black",
            label=f"published fit (IBM aihwkit), {t:g} s after programming", gid="published",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean conductance of the device's reads (µS)")
    ax.set_ylabel("relative read noise σ/G (dimensionless)")
    ax.legend(fontsize="x-small")
    return figure


def read_noise_time_figure(
    times_s: np.ndarray,
    mean_uS: np.ndarray,
    std_uS: np.ndarray,
    reads: int,
    bins: int = 4,
) -> Figure:
    """Relative read noise against time since programming: the devices split into ``bins``
    conductance bins of equal count by their mean at the first time; per bin and time the
    mean of the devices' relative std (std/mean of their ``reads`` reads, ``mean_uS`` and
    ``std_uS`` times × devices); beside the published fit σ_read/G(G, t) at each bin's mean
    conductance [code, aihwkit PCM model]."""
    first = mean_uS[0]
    keep = (mean_uS > 0).all(axis=0)
    which = np.full(first.size, -1)
    which[keep] = conductance_bins(first[keep], bins)
    figure, (ax,) = new_figure(
        f"Read noise vs time since programming\n{int(keep.sum())} devices, {reads} reads "
        f"at each of {times_s.size} times"
    )
    fine = np.geomspace(float(times_s.min()), float(times_s.max()), 100)
    for number, colour in enumerate(level_colours(bins)):
        members = keep & (which == number)
        relative = (std_uS[:, members] / mean_uS[:, members]).mean(axis=1)
        g = float(first[members].mean())
        ax.plot(
            times_s, relative, "o-", color=colour, gid=f"bin-{number}",
            label=f"devices near {g:.3g} µS (measured)",
        )  # fmt: skip
        ax.plot(
            fine, read_noise_relative_std(DEFAULT_MODEL, np.full(fine.size, g), fine), "--",
            color=colour, gid=f"published-{number}",
        )  # fmt: skip
    ax.plot([], [], "--", color="black", label="published fit (IBM aihwkit) at the bin's mean G")
    ax.set_xscale("log")
    ax.set_xlabel("time since programming (s)")
    ax.set_ylabel("relative read noise σ/G (dimensionless)")
    ax.legend(fontsize="x-small")
    return figure


def spread_sample(count: int, points: int) -> np.ndarray:
    """Indices of at most ``points`` of ``count`` items, evenly spread (all when fewer)."""
    if count <= points:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, points)).astype(np.int64))


def device_read_noise(reads_uS: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per device (columns of ``reads_uS``, reads × devices): mean of its reads, µS, and their
    relative std (std with ddof 1 / mean); devices with a non-positive mean are left out."""
    mean = reads_uS.mean(axis=0)
    keep = mean > 0
    return mean[keep], reads_uS[:, keep].std(axis=0, ddof=1) / mean[keep]


def binned_read_noise(
    g_uS: np.ndarray, relative: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean conductance and mean relative std in ``bins`` bins of equal device count, as
    ``procedures.characterize.read_noise`` reports them."""
    which = conductance_bins(g_uS, bins)
    count = np.maximum(np.bincount(which, minlength=bins), 1)
    return (
        np.bincount(which, weights=g_uS, minlength=bins) / count,
        np.bincount(which, weights=relative, minlength=bins) / count,
    )
