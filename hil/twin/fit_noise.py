"""Read noise of a chip from a read-noise run: Q_s against conductance.

The device model's read noise (aihwkit PCM model): a read ``t`` after programming has relative
std ``Q_s(G)·√ln((t + t_read)/(2·t_read))``, ``Q_s = min(scale·(G/g_max)^−exponent, cap)``.
A read-noise run holds, per device and read time, the mean and std of ``reads`` reads taken at
once; Q_s belongs to the conductance the device was programmed to, G(t0), which the mean read
gives once the mean drift since (μ_ν of the model, fitted first) is undone. With ``t_read`` at
its default, ``ln(std/mean) − ½·ln ln(...)`` is linear in
``ln(G/g_max)`` below the cap: ordinary least squares gives ln(scale) and the exponent. The
cap is not fitted (few devices sit under it, and at the bottom of the range the floor and the
drift of near-RESET devices blur it); neither is t_read (the noise depends on it as
√ln(1/t_read): ±10% in t_read moves it by under 0.5%).
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from scipy.special import digamma

from pcm_hil.emulator.calibration import PcmModel
from pcm_hil.emulator.devices import drift_exponent_stats

#: Reads whose Q_s is above this fraction of the model's cap are left out: near the cap the
#: power law no longer holds.
BELOW_CAP = 0.6


def log_std_bias(n: int) -> float:
    """E[ln s] − ln σ for the sample std s (ddof 1) of ``n`` normal draws:
    ½·(ψ(k/2) + ln 2 − ln k), k = n − 1 (s²·k/σ² is χ² with k degrees of freedom)."""
    k = n - 1
    return 0.5 * (float(digamma(k / 2)) + math.log(2.0) - math.log(k))


def time_factor(model: PcmModel, t_s: np.ndarray) -> np.ndarray:
    """√ln((t + t_read)/(2·t_read)) with t floored at the model's t_min."""
    t = np.maximum(np.asarray(t_s, dtype=np.float64), model.read_noise_t_min_s)
    t_read = model.read_noise_t_read_s
    return np.sqrt(np.log((t + t_read) / (2 * t_read)))


def fit_read_noise(
    model: PcmModel,
    t_s: np.ndarray,
    mean_uS: np.ndarray,
    std_uS: np.ndarray,
    reads: int,
    fixed: Collection[str] = (),
) -> dict[str, tuple[float, float]]:
    """``read_noise_q_scale`` and ``read_noise_q_exponent`` (value, standard error) from
    per-device means and stds (ddof 1) of ``reads`` reads, arrays (time × device) with the
    read times ``t_s``; ``model`` gives g_max, t_read, t_min and the cap, and the values of
    those named in ``fixed`` (held: the other fitted alone). Empty when fewer than three
    usable devices."""
    mean = np.asarray(mean_uS, dtype=np.float64)
    std = np.asarray(std_uS, dtype=np.float64)
    t = np.asarray(t_s, np.float64)[:, None]
    factor = np.broadcast_to(time_factor(model, t), mean.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = std / mean / factor
        # Q_s belongs to the programmed conductance G(t0): undo the mean drift since
        g_t0 = mean * (np.maximum(t, model.drift_t_start_s) / model.drift_t0_s) ** (
            drift_exponent_stats(model, np.maximum(mean, 1e-6))[0].astype(np.float64)
        )
        x = np.log(g_t0 / model.g_max_uS)
    finite = np.isfinite(q) & np.isfinite(x) & (q > 0) & (mean > 2 * model.g_floor_uS)
    finite &= np.isfinite(mean)
    if reads < 2 or np.count_nonzero(finite) < 3:
        return {}
    cap = BELOW_CAP * model.read_noise_q_cap
    # Devices are left out by where the power law puts them (their conductance), never by
    # their own noisy Q: cutting on the observed Q would keep the lucky low ones near the
    # cap and flatten the fitted exponent. First pass: the model's own law.
    predicted = model.read_noise_q_scale * np.exp(-model.read_noise_q_exponent * x)
    hold_scale = "read_noise_q_scale" in fixed
    hold_exponent = "read_noise_q_exponent" in fixed
    log_scale, exponent = math.log(model.read_noise_q_scale), model.read_noise_q_exponent
    errors = np.full(2, np.nan)
    for _ in range(3):
        usable = finite & (predicted < cap)
        if np.count_nonzero(usable) < 3:
            return {}
        y = np.log(q[usable]) - log_std_bias(reads)
        xs = x[usable]
        if hold_scale and hold_exponent:
            break
        if hold_exponent:  # ln Q = a − e·x with e held: a is the mean of y + e·x
            values = y + exponent * xs
            log_scale = float(values.mean())
            residual = values - log_scale
            errors = np.array([residual.std(ddof=1) / math.sqrt(y.size), np.nan])
        elif hold_scale:  # e by least squares through the held intercept
            values = log_scale - y
            exponent = float(values @ xs / (xs @ xs))
            residual = values - exponent * xs
            spread = float(residual @ residual) / max(y.size - 1, 1)
            errors = np.array([np.nan, math.sqrt(spread / float(xs @ xs))])
        else:
            design = np.column_stack([np.ones(y.size), -xs])
            coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
            residual = y - design @ coefficients
            dof = max(y.size - 2, 1)
            covariance = np.linalg.inv(design.T @ design) * float(residual @ residual) / dof
            log_scale, exponent = float(coefficients[0]), float(coefficients[1])
            errors = np.sqrt(np.diag(covariance))
        predicted = np.exp(log_scale - exponent * x)
    scale = math.exp(log_scale)
    return {
        "read_noise_q_scale": (scale, scale * float(errors[0])),
        "read_noise_q_exponent": (float(exponent), float(errors[1])),
    }
