"""Figures of a drift measurement: each level's conductance against time since programming on
log–log axes with its fitted power law, the drift exponents ν per level, and their mean
against conductance beside the published μ_ν(G).

The per-device ν are those of the procedure itself (``fit_drift`` on the stored reads, each at
its device's own time since programming, over the reads from ``fit_from_s`` on); a level's
statistics are over its good fits, as ``DriftEnd`` reports them. A run cut off before three
reads past ``fit_from_s`` gets its curves without a fit, and no ν figures.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pcm_hil.documents.base import Document
from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.devices import drift_exponent_stats
from pcm_hil.figures.style import level_colours, new_figure
from pcm_hil.procedures.drift import fit_drift, measure_drift

#: The standard error of ν at or below which a fit is good: ``measure_drift``'s own default
#: (the run does not record it; no caller of ``measure_drift`` changes it).
MAX_NU_ERROR: float = float(inspect.signature(measure_drift).parameters["max_nu_error"].default)

#: Reads ``fit_drift`` needs past ``fit_from_s`` to fit a device.
MIN_FIT_READS = 3

#: The spread band of the drift curves: these percentiles of the level's usable devices.
BAND_PERCENTILES = (10.0, 90.0)


@dataclass
class DriftData:
    """What the figures are drawn from: the devices (``target_uS``, ``usable``), the reads
    (``t_s`` after the end of programming; ``conductance_uS``, reads × devices, µS), each
    device's time since its programming at each read (``elapsed_s``, reads × devices, s), and
    the fits (``nu``; ``good``: usable with a standard error of ν ≤ ``MAX_NU_ERROR``)."""

    start: DriftStart
    end: DriftEnd | None
    t_s: np.ndarray
    conductance_uS: np.ndarray
    elapsed_s: np.ndarray
    nu: np.ndarray
    good: np.ndarray

    @property
    def target_uS(self) -> np.ndarray:
        return np.asarray(self.start.target_uS, dtype=np.float64)

    @property
    def usable(self) -> np.ndarray:
        return np.asarray(self.start.usable, dtype=bool)

    @property
    def fitted(self) -> bool:
        """Whether any device has a good fit."""
        return bool(self.good.any())

    def levels(self) -> list[tuple[float, np.ndarray]]:
        """(target µS, mask of its devices) per distinct target, lowest first."""
        targets = self.target_uS
        return [(float(t), targets == t) for t in np.unique(targets)]


def drift_data(documents: list[Document]) -> DriftData | None:
    """The last drift measurement the documents hold, its reads and fits (None without one
    that read at least once)."""
    start: DriftStart | None = None
    reads: list[DriftRead] = []
    end: DriftEnd | None = None
    for document in documents:
        if isinstance(document, DriftStart):
            start, reads, end = document, [], None
        elif isinstance(document, DriftRead) and start is not None:
            reads.append(document)
        elif isinstance(document, DriftEnd) and start is not None:
            end = document
    if start is None or not reads:
        return None
    read_at = np.array([r.read_at_s for r in reads], dtype=np.float64)
    conductance = np.stack([np.asarray(r.conductance_uS) for r in reads])
    programmed_at = np.asarray(start.programmed_at_s, dtype=np.float64)
    elapsed = read_at[:, None] - programmed_at[None, :]
    nu, _residual, nu_error = fit_drift(elapsed, conductance, start.fit_from_s)
    good = np.asarray(start.usable, dtype=bool) & (nu_error <= MAX_NU_ERROR)
    t_s = np.array([r.t_s for r in reads], dtype=np.float64)
    return DriftData(start, end, t_s, conductance, elapsed, nu, good)


def drift_figures(documents: list[Document]) -> dict[str, Figure]:
    """``drift-curves``, and with fits ``drift-nu`` and ``drift-nu-vs-g``, of the last drift
    measurement the documents hold (none without one that read)."""
    data = drift_data(documents)
    if data is None:
        return {}
    figures = {"drift-curves": _curves_figure(data)}
    if data.fitted:
        figures["drift-nu"] = _nu_figure(data)
        figures["drift-nu-vs-g"] = _nu_vs_g_figure(data)
    return figures


def level_time_s(data: DriftData, mask: np.ndarray) -> np.ndarray:
    """Per read, the time since programming of the level's usable devices (their median), s:
    the x of the level's curve (the same for every level when all were programmed at once;
    the time after the end of programming where none has a programming time)."""
    elapsed = data.elapsed_s[:, mask & data.usable]
    if not np.isfinite(elapsed).any():
        return data.t_s
    return np.nanmedian(elapsed, axis=1)


def fitted_power_law(
    data: DriftData, mask: np.ndarray, t_s: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """The level's fitted power law at ``t_s``, µS, and its ν̄ (the mean ν of its good fits,
    as ``DriftEnd`` reports it): G = A·t^−ν̄, A placed through the level's mean conductance
    over the reads it was fitted on (least squares in log G, slope held at ν̄). None without
    a good fit in the level or a read to place it by."""
    good = mask & data.good
    if not good.any():
        return None
    nu_mean = float(data.nu[good].mean())
    t = level_time_s(data, mask)
    mean = data.conductance_uS[:, mask & data.usable].mean(axis=1, dtype=np.float64)
    window = (t >= data.start.fit_from_s) & (mean > 0)
    if not window.any():
        return None
    log_a = float(np.mean(np.log(mean[window]) + nu_mean * np.log(t[window])))
    return np.exp(log_a - nu_mean * np.log(t_s)), nu_mean


def _curves_figure(data: DriftData) -> Figure:
    """Each level's mean conductance and spread band against time since programming, log–log,
    with its fitted power law; the title says how far the run got and whether it was fitted."""
    start = data.start
    low, high = BAND_PERCENTILES
    reads = f"{start.resumed + len(data.t_s)} of {len(start.times_s)} reads"
    ended = data.end is not None and data.end.status == "completed"
    how = "completed" if ended else (data.end.status if data.end is not None else "cut off")
    past = int((level_time_s(data, data.usable) >= start.fit_from_s).sum())
    if past < MIN_FIT_READS:
        note = (
            f"{how} after {reads}: {past} past {start.fit_from_s:g} s, "
            f"a fit needs {MIN_FIT_READS}: ν not fitted"
        )
    elif not data.fitted:
        note = f"{how}, {reads}: no good fit (standard error of ν ≤ {MAX_NU_ERROR:g})"
    else:
        note = f"{how}, {reads}; dashed: fitted power law " + r"$G = A\,t^{-\bar{\nu}}$"
    figure, (ax,) = new_figure(
        f"Drift: mean and {low:g}–{high:g}th percentile of "
        f"{int(data.usable.sum())} usable devices per level\n{note}"
    )
    groups = data.levels()
    for (target, mask), colour in zip(groups, level_colours(len(groups)), strict=True):
        use = mask & data.usable
        if not use.any():
            continue
        t = level_time_s(data, mask)
        g = data.conductance_uS[:, use].astype(np.float64)
        ax.fill_between(
            t, *np.percentile(g, BAND_PERCENTILES, axis=1), color=colour, alpha=0.2, gid="spread"
        )
        nu_mean = _fit_line(ax, data, mask, t) if data.fitted else None
        label = f"{target:.3g} µS" + (f", ν̄ = {nu_mean:.3f}" if nu_mean is not None else "")
        ax.plot(t, g.mean(axis=1), "o-", color=colour, markersize=3, label=label, gid="mean")
    fit_from = ax.axvline(
        start.fit_from_s, color="grey", linestyle=":", linewidth=1, gid="fit-from"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time since programming (s)")
    ax.set_ylabel("conductance (µS)")
    if len(groups) <= 16:  # highest level on top, as drawn
        handles = [line for line in ax.lines if line.get_gid() == "mean"][::-1]
        labels = [str(line.get_label()) for line in handles]
        fits = [line for line in ax.lines if line.get_gid() == "fit"]
        handles += [*fits[:1], fit_from]
        labels += ["fitted power law"] * bool(fits) + [f"fit from {start.fit_from_s:g} s"]
        figure.legend(
            handles, labels, title="target", fontsize="x-small", loc="outside right center"
        )
    return figure


def _fit_line(ax: Axes, data: DriftData, mask: np.ndarray, t: np.ndarray) -> float | None:
    """Draw the level's fitted power law (black, dashed: it shows on its level's own line)
    over the reads it was fitted on; its ν̄."""
    inside = t[t >= data.start.fit_from_s]
    if inside.size == 0:
        return None
    span = np.geomspace(inside[0], inside[-1], 50)
    fit = fitted_power_law(data, mask, span)
    if fit is None:
        return None
    ax.plot(span, fit[0], "--", color="black", linewidth=0.9, zorder=3, gid="fit")
    return fit[1]


def _progress(data: DriftData) -> str:
    """How many of the scheduled reads the fits rest on, and whether the run ended."""
    start = data.start
    reads = f"fitted on {start.resumed + len(data.t_s)} of {len(start.times_s)} reads"
    if data.end is None:
        return f"{reads}, run not ended"
    return reads if data.end.status == "completed" else f"{reads}, run {data.end.status}"


def _nu_figure(data: DriftData) -> Figure:
    """ν of the good fits, one histogram per level, on shared bins."""
    nu = data.nu[data.good]
    figure, (ax,) = new_figure(
        f"Drift exponent ν per device: {int(data.good.sum())} good fits of "
        f"{int(data.usable.sum())} usable devices\n(good: standard error of ν ≤ {MAX_NU_ERROR:g};"
        f" {_progress(data)})"
    )
    low, high = float(nu.min()), float(nu.max())
    bins = np.linspace(low, high, 41) if high > low else np.linspace(low - 0.01, low + 0.01, 41)
    groups = data.levels()
    for (target, mask), colour in zip(groups, level_colours(len(groups)), strict=True):
        values = data.nu[mask & data.good]
        counts, _ = np.histogram(values, bins=bins)
        ax.stairs(counts, bins, color=colour, label=f"{target:.3g} µS")
    ax.set_xlabel(f"drift exponent ν (fitted from {data.start.fit_from_s:g} s on)")
    ax.set_ylabel("devices")
    if len(groups) <= 16:
        ax.legend(title="target", fontsize="small", ncols=2)
    return figure


def _nu_vs_g_figure(data: DriftData) -> Figure:
    """Mean ± std of ν over each level's good fits against its target, beside μ_ν ± σ_ν of
    the published model."""
    figure, (ax,) = new_figure(
        f"Drift exponent vs conductance: measured beside published\n({_progress(data)})"
    )
    rows = [
        (target, float(data.nu[m].mean()), float(data.nu[m].std()))
        for target, mask in data.levels()
        if (m := mask & data.good).any()
    ]
    targets, means, stds = (np.array(column) for column in zip(*rows, strict=True))
    ax.errorbar(
        targets, means, yerr=stds, fmt="o", color="C3", capsize=3,
        label="measured mean ± std per level", gid="measured",
    )  # fmt: skip
    g_max = DEFAULT_MODEL.g_max_uS
    fine = np.geomspace(min(0.1, float(targets.min()) / 2), max(g_max, float(targets.max())), 200)
    mu, sigma = (np.asarray(a, dtype=np.float64) for a in drift_exponent_stats(DEFAULT_MODEL, fine))
    ax.plot(
        fine,
        mu,
        color="black",
        label="published μ_ν ± σ_ν (IBM aihwkit PCM model)",
        gid="published",
    )
    ax.fill_between(fine, mu - sigma, mu + sigma, color="black", alpha=0.12, gid="published-std")
    ax.set_xscale("log")
    ax.set_xlabel("target conductance (µS)")
    ax.set_ylabel(f"drift exponent ν (fitted from {data.start.fit_from_s:g} s on)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return figure
