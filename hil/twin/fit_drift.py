"""Drift of a chip from a drift run: the drift exponent's mean and spread against conductance.

The device model draws each programming event's ν from N(μ_ν, σ_ν²) with
``μ_ν = clip(slope·ln(G/g_max) + offset, low, high)`` and the same form for σ_ν (aihwkit PCM
model), G the programmed conductance G(t0). A drift run holds, per device, its fitted ν, the
standard error of that fit and its conductance at the fit's reference time; G(t0) follows from
them. The mean's three parameters (slope, offset, low) come from a least-squares fit over the
devices; the spread's from the scatter of ν about the fitted mean in conductance bins, less
the fits' own error. The upper clips are not fitted: they bind only below ~0.2 µS (μ_ν) and
~0.4 µS (σ_ν), under any level a lab programs.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from numpy.typing import ArrayLike

from pcm_hil.emulator.calibration import PcmModel
from pcm_hil.twin.estimate import fit

#: The fitted parts of each clipped line.
NAMES = ("slope", "offset", "low")
#: Bootstrap refits for the standard errors, and the seed of their resampling.
BOOTSTRAP = 40
BOOTSTRAP_SEED = 0
#: Conductance bins for the spread of ν (equal device counts).
SPREAD_BINS = 12


def clipped_line(x: np.ndarray, line: ArrayLike, high: float) -> np.ndarray:
    """clip(slope·x + offset, low, high), ``line`` = (slope, offset, low)."""
    slope, offset, low = np.asarray(line, np.float64)
    return np.clip(slope * x + offset, low, high)


def fit_drift(
    model: PcmModel,
    nu: np.ndarray,
    nu_error: np.ndarray,
    g_t0_uS: np.ndarray,
    fixed: Collection[str] = (),
) -> dict[str, tuple[float, float]]:
    """(value, standard error) of ``nu_mean_slope``, ``nu_mean_offset``, ``nu_mean_low``,
    ``nu_std_slope``, ``nu_std_offset`` and ``nu_std_low`` from per-device ν, its standard
    error and G(t0) (µS) of good fits; those named in ``fixed`` held at the model's values.
    The standard errors are the spread of BOOTSTRAP refits over the devices resampled (a
    seeded generator: the same runs fit the same): where the line bends into its clip, the
    linearized errors of one fit understate how far the data let it move. Empty with fewer
    than 2·SPREAD_BINS devices."""
    nu = np.asarray(nu, np.float64)
    error = np.asarray(nu_error, np.float64)
    g = np.asarray(g_t0_uS, np.float64)
    ok = np.isfinite(nu) & np.isfinite(error) & np.isfinite(g) & (g > 0)
    if np.count_nonzero(ok) < 2 * SPREAD_BINS:
        return {}
    nu, error, x = nu[ok], error[ok], np.log(g[ok] / model.g_max_uS)
    held = (
        [f"nu_mean_{n}" in fixed for n in NAMES],
        [f"nu_std_{n}" in fixed for n in NAMES],
    )
    best = _fit_lines(model, nu, error, x, held)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    again = np.array(
        [
            _fit_lines(model, nu[pick], error[pick], x[pick], held)
            for pick in rng.integers(0, nu.size, (BOOTSTRAP, nu.size))
        ]
    )
    errors = again.std(axis=0, ddof=1)
    errors[np.concatenate(held)] = np.nan
    keys = [f"nu_{stat}_{n}" for stat in ("mean", "std") for n in NAMES]
    return {k: (float(v), float(e)) for k, v, e in zip(keys, best, errors, strict=True)}


def _fit_lines(
    model: PcmModel,
    nu: np.ndarray,
    error: np.ndarray,
    x: np.ndarray,
    held: tuple[list[bool], list[bool]],
) -> np.ndarray:
    """The mean's and the spread's (slope, offset, low), one fit."""
    high_mean, high_std = model.nu_mean_high, model.nu_std_high
    std_params = np.array([model.nu_std_slope, model.nu_std_offset, model.nu_std_low])
    mean_params = np.array([model.nu_mean_slope, model.nu_mean_offset, model.nu_mean_low])
    for _ in range(2):  # the mean weighted by the spread, the spread about the mean
        weight = np.sqrt(clipped_line(x, std_params, high_std) ** 2 + error**2)

        def mean_residual(p: np.ndarray, w: np.ndarray = weight) -> np.ndarray:
            return (nu - clipped_line(x, p, high_mean)) / w

        mean_params, _ = fit(
            mean_residual,
            mean_params,
            [-0.2, -0.2, 0.0],
            [0.2, 0.3, high_mean],
            held[0],
        )
        residual = nu - clipped_line(x, mean_params, high_mean)
        bins = np.array_split(np.argsort(x), SPREAD_BINS)
        centre = np.array([x[b].mean() for b in bins])
        # per bin: σ² = mean(r² − err²), r the residual about the mean; its standard error
        # from the scatter of r² − err² itself (the fits' errors vary from device to device)
        excess = [(residual[b] - residual[b].mean()) ** 2 - error[b] ** 2 for b in bins]
        sigma = np.sqrt(np.maximum(np.array([e.mean() for e in excess]), 1e-8))
        se = np.array([e.std(ddof=1) / np.sqrt(e.size) for e in excess]) / (2 * sigma)

        def std_residual(
            p: np.ndarray, at: np.ndarray = centre, y: np.ndarray = sigma, e: np.ndarray = se
        ) -> np.ndarray:
            return (y - clipped_line(at, p, high_std)) / e

        std_params, _ = fit(
            std_residual,
            std_params,
            [-0.2, -0.2, 0.0],
            [0.2, 0.3, high_std],
            held[1],
        )
    return np.concatenate([mean_params, std_params])
