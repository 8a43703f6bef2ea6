"""Programming physics of a chip from its characterization runs: the melting threshold, the
melt-quench programming curve and accumulative partial SET.

- **Melting threshold** (a RESET before each short pulse): a device melt-quenches at or above
  its own threshold, landing near the crystalline conductance; below it, a short pulse only
  nudges its RESET state. The first current at which a device reads high brackets its
  threshold; their mean and spread (less the grid's, Sheppard) are ``i_melt_uA`` and
  ``i_melt_spread_uA``.
- **Programming curve** (reads ``settle`` after each pulse): the devices' mean and std per
  current above every threshold, against the model's logistic curve averaged over the
  mid-point spread (Gauss–Hermite), its cycle noise clipped at the crystalline conductance: ``i_curve_mid_uA``, ``i_curve_slope_uA``, ``i_curve_mid_spread_uA``,
  ``g_crystalline_uS``, ``g_reset_uS`` and ``cycle_noise_rel``. The device spreads of the top
  and bottom and ``cycle_noise_uS`` keep their values (the std cannot tell them from
  ``cycle_noise_rel``: both scale with G).
- **Accumulation** (from RESET, reads ``settle`` after each pulse): the step from one read to
  the next, in cells of pulse number × conductance (binned by the read before the previous, so
  that the previous read's noise averages out; the step model averaged over each cell's
  spread of conductance), against the step model ``mean = max(offset +
  boost·e^(−n/n_decay) − slope·G, 0)``, ``std = slope_s·G + offset_s + boost_s·e^(−n/n_decay)``
  with read noise added and the floor's clipping of negative steps.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from pcm_hil.emulator.calibration import PcmModel
from pcm_hil.emulator.devices import read_noise_q
from pcm_hil.twin.estimate import fit
from pcm_hil.twin.fit_noise import time_factor

#: Gauss–Hermite nodes and weights (probabilists'), over the mid-point spread.
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
#: The programming curve's fitted parameters, in ``curve_moments``' order.
CURVE = (
    "i_curve_mid_uA",
    "i_curve_slope_uA",
    "g_crystalline_uS",
    "g_reset_uS",
    "i_curve_mid_spread_uA",
    "cycle_noise_rel",
)
#: The accumulation's fitted parameters: the mean step's four, then the spread's three.
ACCUMULATION = (
    "set_mean_offset_uS",
    "set_mean_slope",
    "set_mean_boost_uS",
    "set_n_decay",
    "set_std_offset_uS",
    "set_std_slope",
    "set_std_boost_uS",
)
#: Accumulation steps from above this fraction of the crystalline conductance are left out.
BELOW_CEILING = 0.75


def stuck_devices(reads: np.ndarray) -> np.ndarray:
    """Devices of a programming-curve run (reads: point × device, currents increasing) that
    do not follow it: their highest read lies less than a third of the median device's above
    the mean of their last three (at the largest currents) — a working device falls from
    near the crystalline conductance to near RESET, a stuck one stays put, read noise aside."""
    reads = np.asarray(reads, np.float64)
    fall = reads.max(axis=0) - reads[-3:].mean(axis=0)
    return fall < np.median(fall) / 3


def stuck_in_accumulation(reads: np.ndarray, top_uS: float) -> np.ndarray:
    """Devices of an accumulation run (reads: point × device, point 0 right after the RESET)
    that do not accumulate: above half of ``top_uS`` right after the RESET (stuck SET), or
    risen by under a fifth of the median rise over the last five pulses (stuck RESET)."""
    reads = np.asarray(reads, np.float64)
    rise = reads[-5:].mean(axis=0) - reads[0]
    return (reads[0] > 0.5 * top_uS) | (rise < 0.2 * np.median(rise))


def fit_melt_threshold(
    current_uA: np.ndarray, reads: np.ndarray
) -> tuple[dict[str, tuple[float, float]], int]:
    """(``i_melt_uA`` and ``i_melt_spread_uA`` as (value, standard error), the number of
    devices that bracketed their threshold) from reads (point × device) after a RESET and
    one pulse of each of ``current_uA`` (increasing)."""
    currents = np.asarray(current_uA, np.float64)
    reads = np.asarray(reads, np.float64)
    high = 0.5 * np.max(np.quantile(reads, 0.9, axis=1))
    melted = reads >= high
    first = np.argmax(melted, axis=0)
    bracketed = melted.any(axis=0) & ~melted[0]  # not high from the start, high at some point
    if np.count_nonzero(bracketed) < 3:
        return {}, 0
    k = first[bracketed]
    # the threshold lies in (c[k−1], c[k]]: the middle, less the grid's variance
    lower, upper = currents[k - 1], currents[k]
    threshold = 0.5 * (lower + upper)
    grid = float(np.mean((upper - lower) ** 2)) / 12.0
    n = threshold.size
    spread = float(np.sqrt(max(threshold.var(ddof=1) - grid, 0.0)))
    width = float(np.sqrt(threshold.var(ddof=1)))
    return {
        "i_melt_uA": (float(threshold.mean()), width / np.sqrt(n)),
        "i_melt_spread_uA": (spread, max(width, spread) / np.sqrt(2.0 * (n - 1))),
    }, n


def curve_moments(
    model: PcmModel, current_uA: np.ndarray, curve_params: ArrayLike, settle_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over devices of a read ``settle_s`` after one melt-quench pulse of each
    current (the model's device spreads of the top and bottom, and its read noise, with the
    curve's parameters given in ``CURVE``'s order: mid, slope, top, bottom, mid spread,
    cycle noise)."""
    mid, slope, top, bottom, mid_spread, cycle_rel = np.asarray(curve_params, np.float64)
    current = np.asarray(current_uA, np.float64)[:, None]
    shift = (current - mid - mid_spread * _NODES[None, :]) / slope
    up = 1.0 / (1.0 + np.exp(np.clip(shift, -60, 60)))  # the crystalline fraction per node
    s2 = model.g_reset_spread_ln**2
    bottom_mean = bottom * np.exp(s2 / 2)
    bottom_var = bottom**2 * np.exp(s2) * (np.exp(s2) - 1)
    curve = bottom_mean + (top - bottom_mean) * up
    # cycle noise, clipped at the crystalline conductance: min(X, top) = −max(−X, −top)
    cycle_sd = (cycle_rel + model.cycle_noise_uS / model.g_max_uS) * curve
    negated, cycle_var = _clipped_normal(-curve, cycle_sd, np.full_like(curve, -top))
    node_mean = -negated
    mean = node_mean @ _WEIGHTS
    device = (node_mean**2) @ _WEIGHTS - mean**2
    device += ((top * model.g_crystalline_spread * up) ** 2 + bottom_var * (1 - up) ** 2) @ _WEIGHTS
    factor = float(time_factor(model, np.asarray(settle_s)))
    read = (read_noise_q(model, node_mean).astype(np.float64) * factor * node_mean) ** 2 @ _WEIGHTS
    return mean, np.sqrt(np.maximum(device, 0.0) + cycle_var @ _WEIGHTS + read)


def fit_programming_curve(
    model: PcmModel,
    current_uA: np.ndarray,
    reads: np.ndarray,
    settle_s: float,
    melt_uA: float,
    melt_spread_uA: float,
    fixed: Collection[str] = (),
) -> dict[str, tuple[float, float]]:
    """The programming curve's parameters (see the module) from reads (point × device) of the
    devices not stuck; ``melt_uA`` ± ``melt_spread_uA`` the threshold (points within four
    spreads of it are left out: not every device melts there); those named in ``fixed`` held
    at the model's values."""
    currents = np.asarray(current_uA, np.float64)
    reads = np.asarray(reads, np.float64)
    mean_obs, std_obs = reads.mean(axis=1), reads.std(axis=1, ddof=1)
    n = reads.shape[1]
    use = currents >= melt_uA + 4 * melt_spread_uA
    if np.count_nonzero(use) < 7:
        return {}
    c, m, s = currents[use], mean_obs[use], std_obs[use]
    se_m, se_s = s / np.sqrt(n), s / np.sqrt(2.0 * (n - 1))

    def residuals(p: np.ndarray) -> np.ndarray:
        mean, std = curve_moments(model, c, p, settle_s)
        return np.concatenate([(m - mean) / se_m, (s - std) / se_s])

    top0, bottom0 = float(m.max()) / 0.95, max(float(m.min()), 1e-3)
    mid0 = float(np.interp(-(top0 + bottom0) / 2, -mean_obs, currents))
    guess = dict(zip(CURVE, [mid0, 30.0, top0, bottom0, 10.0, 0.1], strict=True))
    values, errors = fit(
        residuals,
        [getattr(model, n) if n in fixed else guess[n] for n in CURVE],
        [50.0, 3.0, 1.0, 1e-3, 0.0, 0.0],
        [1000.0, 300.0, 300.0, 50.0, 200.0, 1.0],
        [n in fixed for n in CURVE],
    )
    names = CURVE
    return {k: (float(v), float(e)) for k, v, e in zip(names, values, errors, strict=True)}


def _clipped_normal(mean: np.ndarray, std: np.ndarray, floor: np.ndarray):
    """Mean and variance of max(X, floor), X ~ N(mean, std²)."""
    std = np.maximum(std, 1e-9)
    a = (floor - mean) / std
    below, density = norm.cdf(a), norm.pdf(a)
    first = floor * below + mean * (1 - below) + std * density
    second = floor**2 * below + (mean**2 + std**2) * (1 - below) + (mean + floor) * std * density
    return first, np.maximum(second - first**2, 0.0)


def fit_accumulation(
    model: PcmModel,
    reads: np.ndarray,
    settle_s: float,
    strength: float = 1.0,
    cells: int = 6,
    fixed: Collection[str] = (),
) -> dict[str, tuple[float, float]]:
    """The partial-SET step model (see the module) from reads (point × device; point 0 the
    RESET state, point n after n pulses) of devices not stuck, taken ``settle_s`` after each
    pulse. ``strength`` is the pulses' strength in the model's terms (1 at its reference
    amplitude and width): the G-independent terms fitted are divided by it. Those named in
    ``fixed`` are held at the model's values."""
    reads = np.asarray(reads, np.float64)
    factor = float(time_factor(model, np.asarray(settle_s)))

    def noise(g: np.ndarray) -> np.ndarray:
        return read_noise_q(model, np.maximum(g, 1e-3)).astype(np.float64) * factor * g

    rows = []  # per cell: k, mean G before, Var(G true), mean step, var step, count, floor
    ceiling = BELOW_CEILING * model.g_crystalline_uS
    for n in range(1, reads.shape[0]):
        before, step = reads[n - 1], reads[n] - reads[n - 1]
        key = reads[n - 2] if n >= 2 else before
        keep = key < ceiling  # chosen by the earlier read, as the cells: not by before's noise
        order = np.argsort(key[keep])
        for cell in np.array_split(order, cells if n >= 2 else 1):
            if cell.size < 16:
                continue
            g, d = before[keep][cell], step[keep][cell]
            read_var = np.mean(noise(g) ** 2)
            spread = max(float(g.var(ddof=1) - read_var), 0.0)
            # the read noise of the two reads a step is the difference of, over the cell
            both = read_var + np.mean(noise(np.maximum(g + d, 0.0)) ** 2)
            # the sample variance's standard error from the steps' own fourth moment: a cell
            # mixes conductances, so its steps are not normal (heavier tails)
            centred = d - d.mean()
            fourth, second = np.mean(centred**4), np.mean(centred**2)
            n_cell = cell.size
            se_var = np.sqrt(max(fourth - second**2 * (n_cell - 3) / (n_cell - 1), 0.0) / n_cell)
            rows.append((n - 1, g.mean(), spread, d.mean(), d.var(ddof=1), n_cell, both, se_var))
    if len(rows) < 10:
        return {}
    k, g, g_var, d_mean, d_var, count, read_var, se_var = (
        np.array(col, np.float64) for col in zip(*rows, strict=True)
    )
    floor = 0.5 * model.g_reset_uS - g
    se_mean = np.sqrt(d_var / count)

    def moments(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The observed step's mean and variance in each cell."""
        offset, slope, boost, decay, s_offset, s_slope, s_boost = p
        excess = np.exp(-k / decay)
        # the cell's conductances spread (g_var): the mean step, max(linear, 0), averaged over it
        linear = strength * (offset + boost * excess) - slope * g
        mean, mean_var = _clipped_normal(linear, slope * np.sqrt(g_var), np.zeros_like(g))
        std = s_slope * g + strength * (s_offset + s_boost * excess)
        step_var = mean_var + std**2 + s_slope**2 * g_var
        step_mean, step_var = _clipped_normal(mean, np.sqrt(step_var), floor)
        return step_mean, step_var + read_var

    m = model
    start = np.array(
        [
            m.set_mean_offset_uS,
            m.set_mean_slope,
            m.set_mean_boost_uS,
            m.set_n_decay,
            m.set_std_offset_uS,
            m.set_std_slope,
            m.set_std_boost_uS,
        ]
    )
    lower = np.array([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0])
    upper = np.array([20.0, 1.0, 30.0, 50.0, 20.0, 1.0, 30.0])
    # Two stages: the mean's four parameters from the mean steps (the step's spread only
    # matters to them through the floor, at the first pulse), then the spread's three from the
    # variances with the mean's held — a joint fit would let any misfit of the read noise in
    # the variances pull on the mean's slope.
    held = np.array([n in fixed for n in ACCUMULATION])
    values = start.copy()
    errors = np.full(7, np.nan)
    for _ in range(2):
        mean_part, mean_errors = fit(
            lambda q: (d_mean - moments(np.concatenate([q, values[4:]]))[0]) / se_mean,
            values[:4],
            lower[:4],
            upper[:4],
            held[:4],
        )
        values[:4] = mean_part
        std_part, std_errors = fit(
            lambda q: (d_var - moments(np.concatenate([values[:4], q]))[1]) / se_var,
            values[4:],
            lower[4:],
            upper[4:],
            held[4:],
        )
        values[4:] = std_part
        errors = np.concatenate([mean_errors, std_errors])
    names = ACCUMULATION
    return {k: (float(v), float(e)) for k, v, e in zip(names, values, errors, strict=True)}
