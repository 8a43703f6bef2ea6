"""PCM device physics over every device of a chip, vectorized: pulses, drift, read noise.

State is a set of arrays of shape (tiles, devices_per_tile). Three phases, as in the
aihwkit noise model: programming (a pulse sets the conductance at t0 and draws a new drift
exponent), drift (G(t) = G(t0)·(t/t0)^−ν), and read noise (1/f, sampled at every read).

Time here is *equivalent time*: seconds at the reference temperature. The chip converts wall
or virtual time at the actual temperature into it (``chip.py``), so drift accelerates when hot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from pcm_hil.emulator.calibration import K_B_EV_PER_K, PcmModel
from pcm_hil.emulator.gaussian import standard_normal

NOT_STUCK, STUCK_SET, STUCK_RESET = 0, 1, 2


class Window(NamedTuple):
    """A rectangle of a tile's devices, rows × columns of a tile ``columns_per_tile`` wide:
    read as strided views of the state arrays, not gathered address by address."""

    columns_per_tile: int
    rows: slice
    columns: slice


def programming_curve_mean(
    model: PcmModel,
    current_uA: ArrayLike,
    i_mid_uA: float | np.ndarray | None = None,
    g_top_uS: float | np.ndarray | None = None,
    g_bottom_uS: float | np.ndarray | None = None,
) -> np.ndarray:
    """Mean conductance (µS) after a melt-quench pulse of ``current_uA``: a logistic fall from
    the crystalline conductance ``g_top_uS`` to the RESET conductance ``g_bottom_uS`` (seed 002
    Fig. 2a shape). Device parameters default to the model's medians."""
    i_mid = model.i_curve_mid_uA if i_mid_uA is None else i_mid_uA
    g_top = model.g_crystalline_uS if g_top_uS is None else g_top_uS
    g_bottom = model.g_reset_uS if g_bottom_uS is None else g_bottom_uS
    x = (np.asarray(current_uA, dtype=np.float32) - i_mid) / np.float32(model.i_curve_slope_uA)
    return g_bottom + (g_top - g_bottom) / (1.0 + np.exp(np.clip(x, -60, 60)))


def log_relative(model: PcmModel, g_uS: ArrayLike) -> np.ndarray:
    """ln(G/g_max), float32, floored at ln(1e-6): the variable of the drift and noise fits."""
    return np.log(
        np.maximum(
            np.asarray(g_uS, dtype=np.float32) / np.float32(model.g_max_uS), np.float32(1e-6)
        )
    )


def drift_exponent_stats(
    model: PcmModel, g_uS: ArrayLike, log_g: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(μ_ν, σ_ν) of the drift exponent for devices programmed to ``g_uS`` [code].
    ``log_g``, if given, is ``log_relative(model, g_uS)`` already computed."""
    log_g = log_relative(model, g_uS) if log_g is None else log_g
    mean = np.clip(
        model.nu_mean_slope * log_g + model.nu_mean_offset, model.nu_mean_low, model.nu_mean_high
    )
    std = np.clip(
        model.nu_std_slope * log_g + model.nu_std_offset, model.nu_std_low, model.nu_std_high
    )
    return mean.astype(np.float32), std.astype(np.float32)


def read_noise_q(model: PcmModel, g_uS: ArrayLike, log_g: np.ndarray | None = None) -> np.ndarray:
    """Q_s = min(scale·(G/g_max)^−exponent, cap) of the 1/f read-noise model [code]."""
    log_g = log_relative(model, g_uS) if log_g is None else log_g
    q = model.read_noise_q_scale * np.exp(-model.read_noise_q_exponent * log_g)
    return np.minimum(q, model.read_noise_q_cap).astype(np.float32)


def read_noise_relative_std(model: PcmModel, g_uS: ArrayLike, elapsed_s: ArrayLike) -> np.ndarray:
    """Relative std of a read ``elapsed_s`` after programming [code; t_min is a choice]."""
    t = np.maximum(np.asarray(elapsed_s, dtype=np.float64), model.read_noise_t_min_s)
    t_read = model.read_noise_t_read_s
    return read_noise_q(model, g_uS) * np.sqrt(np.log((t + t_read) / (2 * t_read)))


def partial_set_step_stats(
    model: PcmModel, g_uS: ArrayLike, n_pulses: ArrayLike, strength: float | np.ndarray = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of a partial-SET increment in µS for devices at ``g_uS`` that have had
    ``n_pulses`` partial-SET pulses since their last melt-quench [derived, Nandakumar 2018].
    ``strength`` scales the G-independent terms (1 = the published model); the mean is
    never negative."""
    g = np.asarray(g_uS, dtype=np.float32)
    boost = np.exp(-np.asarray(n_pulses, dtype=np.float32) / np.float32(model.set_n_decay))
    mean = (
        strength * (model.set_mean_offset_uS + model.set_mean_boost_uS * boost)
        - model.set_mean_slope * g
    )
    std = model.set_std_slope * g + strength * (
        model.set_std_offset_uS + model.set_std_boost_uS * boost
    )
    return np.maximum(mean, 0.0), std


class PcmDevices:
    """The state of every PCM device on a chip, and what pulses and reads do to it.

    ``rng`` is the chip's seeded generator; device-to-device parameters are drawn from it at
    construction, cycle noise at every pulse and read noise at every read.
    """

    def __init__(
        self, tiles: int, devices_per_tile: int, model: PcmModel, rng: np.random.Generator
    ) -> None:
        self.model = model
        self.rng = rng
        shape = (tiles, devices_per_tile)
        f4 = np.float32
        m = model
        # Device-to-device parameters, fixed for the chip's life.
        self.g_reset = (
            m.g_reset_uS * np.exp(m.g_reset_spread_ln * rng.standard_normal(shape, dtype=f4))
        ).astype(f4)
        self.g_crystalline = (
            m.g_crystalline_uS * (1 + m.g_crystalline_spread * rng.standard_normal(shape, dtype=f4))
        ).astype(f4)
        self.i_melt = (
            m.i_melt_uA + m.i_melt_spread_uA * rng.standard_normal(shape, dtype=f4)
        ).astype(f4)
        self.i_mid = (
            m.i_curve_mid_uA + m.i_curve_mid_spread_uA * rng.standard_normal(shape, dtype=f4)
        ).astype(f4)
        draw = rng.random(shape, dtype=f4)
        self.stuck = np.zeros(shape, dtype=np.int8)
        self.stuck[draw < m.stuck_set_fraction] = STUCK_SET
        self.stuck[
            (draw >= m.stuck_set_fraction) & (draw < m.stuck_set_fraction + m.stuck_reset_fraction)
        ] = STUCK_RESET
        # Programmed state: a fresh chip is fully RESET, programmed at equivalent time 0;
        # stuck-SET devices sit at their crystalline conductance.
        self.g_prog = np.where(self.stuck == STUCK_SET, self.g_crystalline, self.g_reset).astype(f4)
        self.t_prog = np.zeros(shape, dtype=np.float64)
        self.n_set = np.zeros(shape, dtype=np.int32)
        self.nu = np.zeros(shape, dtype=f4)
        self.q_s = np.zeros(shape, dtype=f4)
        self._scratch_arrays: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._restart_drift(slice(None), slice(None), 0.0)  # every device

    @property
    def shape(self) -> tuple[int, int]:
        return self.g_prog.shape

    # --- programming ----------------------------------------------------------------------------

    def pulse(
        self,
        tile: int,
        addresses: np.ndarray,
        amplitude_uA: ArrayLike,
        width_ns: ArrayLike,
        now_eq_s: float,
    ) -> None:
        """Apply one pulse to each addressed device (addresses unique, arrays checked by the
        caller). Melt-quench at or above a device's melting threshold, partial SET between
        the crystallization and melting thresholds, nothing below; stuck devices ignore
        pulses. Drift restarts for every device that changed."""
        m = self.model
        amplitude = np.broadcast_to(np.asarray(amplitude_uA, dtype=np.float32), addresses.shape)
        width = np.broadcast_to(np.asarray(width_ns, dtype=np.float32), addresses.shape)
        live = self.stuck[tile][addresses] == NOT_STUCK
        melt = live & (amplitude >= self.i_melt[tile][addresses])
        partial = live & ~melt & (amplitude >= m.i_crystallize_uA)
        if melt.any():
            where = addresses[melt]
            g_top = self.g_crystalline[tile][where]
            g_reset = self.g_reset[tile][where]
            mean = programming_curve_mean(
                m, amplitude[melt], self.i_mid[tile][where], g_top, g_reset
            )
            noise = m.cycle_noise_rel * mean + m.cycle_noise_uS * (mean / m.g_max_uS)
            value = mean + noise * standard_normal(self.rng, where.size)
            self.g_prog[tile][where] = np.clip(value, 0.5 * g_reset, g_top)
            self.n_set[tile][where] = 0
            self._restart_drift(tile, where, now_eq_s)
        if partial.any():
            where = addresses[partial]
            # the step acts on the state on the t0 scale, G(max(t, t0)): the conductance
            # above G(t0) that a device shows in its first seconds has not drifted away yet
            # and is not a state a step builds on (else back-to-back pulses compound it)
            g_now = self.drifted(tile, where, now_eq_s, since_t0=True)
            strength = (amplitude[partial] - m.i_crystallize_uA) / (
                m.set_reference_amplitude_uA - m.i_crystallize_uA
            )
            strength = np.minimum(
                strength * width[partial] / m.set_reference_width_ns, m.set_strength_max
            )
            mean, std = partial_set_step_stats(m, g_now, self.n_set[tile][where], strength)
            step = mean + std * standard_normal(self.rng, where.size)
            # crystallization never takes a device below half its RESET conductance
            floor = 0.5 * self.g_reset[tile][where]
            self.g_prog[tile][where] = np.clip(g_now + step, floor, self.g_crystalline[tile][where])
            self.n_set[tile][where] += 1
            self._restart_drift(tile, where, now_eq_s)

    def _restart_drift(self, tile: int | slice, where: np.ndarray | slice, now_eq_s: float) -> None:
        """A programming event: stamp the time, draw ν from its G-dependent distribution
        (indexed as ``array[tile][where]``: a row view, then a 1-D gather — three times as
        fast as ``array[tile, where]``)."""
        g = self.g_prog[tile][where]
        log_g = log_relative(self.model, g)
        mean, std = drift_exponent_stats(self.model, g, log_g)
        nu = np.abs(mean + std * standard_normal(self.rng, np.shape(g)))
        stuck = self.stuck[tile][where]
        self.nu[tile][where] = np.where(stuck == STUCK_SET, 0.0, nu)
        self.q_s[tile][where] = read_noise_q(self.model, g, log_g)
        self.t_prog[tile][where] = now_eq_s

    # --- reading -----------------------------------------------------------------------------------

    def drifted(
        self, tile: int, addresses: np.ndarray, now_eq_s: float, since_t0: bool = False
    ) -> np.ndarray:
        """Noise-free conductance now (µS): the programmed value drifted since programming
        (with ``since_t0``, not above G(t0): the drift from t0 on only)."""
        elapsed = (now_eq_s - self.t_prog[tile][addresses]).astype(np.float32)
        m = self.model
        floor = m.drift_t0_s if since_t0 else m.drift_t_start_s
        log_ratio = np.log(np.maximum(elapsed, np.float32(floor)) / np.float32(m.drift_t0_s))
        return self.g_prog[tile][addresses] * np.exp(-self.nu[tile][addresses] * log_ratio)

    def read(
        self,
        tile: int,
        addresses: np.ndarray | slice | Window,
        now_eq_s: float,
        temperature_K: float,
    ) -> np.ndarray:
        """A read of the addressed devices (``slice(None)`` for the whole tile, a ``Window``
        for a rectangle, read as rows × columns): drift, the temperature dependence of
        conduction and 1/f read noise, in µS (float32)."""
        m = self.model
        f4 = np.float32

        def at(array: np.ndarray) -> np.ndarray:
            if isinstance(addresses, Window):
                grid = array[tile].reshape(-1, addresses.columns_per_tile)
                return grid[addresses.rows, addresses.columns]
            return array[tile][addresses]

        t_prog = at(self.t_prog)
        log_t, noise = self._scratch(t_prog.shape)
        # ln t in float32 (the subtraction runs in float64, rounded once on output), t floored
        # at the sooner of the drift onset and the read-noise floor
        np.subtract(now_eq_s, t_prog, out=log_t, casting="same_kind")
        np.maximum(log_t, f4(min(m.drift_t_start_s, m.read_noise_t_min_s)), out=log_t)
        np.log(log_t, out=log_t)
        # drift: G(t0)·(max(t, t_start)/t0)^−ν, exponent ν·(ln t0 − ln max(t, t_start));
        # ``conductance`` is the one fresh array: it is returned
        conductance = np.maximum(log_t, f4(np.log(m.drift_t_start_s)))
        np.subtract(f4(np.log(m.drift_t0_s)), conductance, out=conductance)
        conductance *= at(self.nu)
        np.exp(conductance, out=conductance)
        g_prog = at(self.g_prog)
        conductance *= g_prog
        # read noise: σ/G = Q_s·sqrt(ln(t/(2 t_read))); t ≥ t_min ≫ t_read, so dropping the
        # t_read in (t + t_read) changes σ by under t_read/t_min = 2.5e-7 relative.
        sigma = np.maximum(log_t, f4(np.log(m.read_noise_t_min_s)), out=log_t)
        sigma -= f4(np.log(2 * m.read_noise_t_read_s))
        np.sqrt(sigma, out=sigma)
        sigma *= at(self.q_s)
        standard_normal(self.rng, out=noise)
        noise *= sigma
        noise += f4(1.0)
        conductance *= noise
        if temperature_K != m.t_reference_K:
            conductance *= self.conduction_factor(g_prog, temperature_K, at(self.g_crystalline))
        np.maximum(conductance, f4(m.g_floor_uS), out=conductance)
        return conductance

    def _scratch(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Two float32 work arrays of ``shape``, kept between reads: fresh multi-MB temporaries
        on every read cost page faults (≈1000 per 1M-device read), not just arithmetic."""
        cache = self._scratch_arrays
        arrays = cache.get(shape)
        if arrays is None:
            if len(cache) >= 4:
                cache.clear()
            arrays = cache[shape] = (np.empty(shape, np.float32), np.empty(shape, np.float32))
        return arrays

    def conduction_factor(
        self, g_prog: np.ndarray, temperature_K: float, g_crystalline: np.ndarray
    ) -> np.ndarray:
        """Temperature factor of conduction, Arrhenius in the amorphous fraction [choice]."""
        m = self.model
        amorphous = np.clip(1.0 - g_prog / g_crystalline, 0.0, 1.0)
        inverse = 1.0 / temperature_K - 1.0 / m.t_reference_K
        return np.exp(-m.conduction_activation_eV * amorphous / K_B_EV_PER_K * inverse).astype(
            np.float32
        )

    # --- faults ---------------------------------------------------------------------------------

    def scale_drift(self, factor: float) -> None:
        """Multiply every ν by ``factor``, and the model's ν distribution with it: μ_ν and σ_ν
        (their slopes, offsets and clip bounds) scale by ``factor``, so every later draw
        |μ + σ·z| is ``factor`` times what it would have been."""
        names = [
            f"nu_{stat}_{part}"
            for stat in ("mean", "std")
            for part in ("slope", "offset", "low", "high")
        ]
        self.model = self.model.with_overrides(
            **{name: getattr(self.model, name) * factor for name in names}
        )
        with np.errstate(over="ignore"):
            self.nu *= np.float32(factor)

    def make_stuck(self, fraction: float, rng: np.random.Generator, now_eq_s: float) -> None:
        """Make each not-stuck device stuck with probability ``fraction``: stuck-SET or
        stuck-RESET in the proportion of the model's stuck fractions (half and half if it has
        none), each at its own crystalline or RESET conductance from ``now_eq_s`` on."""
        m = self.model
        new = (self.stuck == NOT_STUCK) & (rng.random(self.shape) < fraction)
        total = m.stuck_set_fraction + m.stuck_reset_fraction
        set_share = m.stuck_set_fraction / total if total > 0 else 0.5
        to_set = new & (rng.random(self.shape) < set_share)
        to_reset = new & ~to_set
        self.stuck[to_set] = STUCK_SET
        self.stuck[to_reset] = STUCK_RESET
        self.g_prog[to_set] = self.g_crystalline[to_set]
        self.g_prog[to_reset] = self.g_reset[to_reset]
        self.n_set[new] = 0
        self.t_prog[new] = now_eq_s
        self.nu[to_set] = 0.0
        g = self.g_prog[to_reset]
        mean, std = drift_exponent_stats(m, g)
        self.nu[to_reset] = np.abs(mean + std * rng.standard_normal(g.shape, dtype=np.float32))
        self.q_s[new] = read_noise_q(m, self.g_prog[new])

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of the programmed state (for checks that a rejected command changed nothing)."""
        return {
            name: getattr(self, name).copy() for name in ("g_prog", "t_prog", "n_set", "nu", "q_s")
        }
