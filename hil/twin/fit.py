"""A chip's digital twin: the device model fitted to its characterization runs
(``pcm-hil twin fit RUN… --output chip.toml``).

The runs are those of ``pcm-hil characterize campaign`` (or any runs of the same procedures):
each is recognized by what it holds, and each fits the parameters it identifies —

========================  ===============================================================
run                       parameters
========================  ===============================================================
read-noise, timed         ``read_noise_q_scale``, ``read_noise_q_exponent`` (``fit_noise``)
programming curve after   ``i_melt_uA``, ``i_melt_spread_uA`` (``fit_programming``)
a RESET at each point
programming curve         ``i_curve_mid_uA``, ``i_curve_slope_uA``, ``i_curve_mid_spread_uA``,
                          ``g_crystalline_uS``, ``g_reset_uS``, ``cycle_noise_rel``
accumulation              ``set_mean_offset_uS``, ``set_mean_slope``, ``set_mean_boost_uS``,
                          ``set_n_decay``, ``set_std_offset_uS``, ``set_std_slope``,
                          ``set_std_boost_uS``
drift                     ``nu_mean_slope``, ``nu_mean_offset``, ``nu_mean_low``,
                          ``nu_std_slope``, ``nu_std_offset``, ``nu_std_low`` (``fit_drift``)
curve and accumulation    ``stuck_set_fraction``, ``stuck_reset_fraction``
========================  ===============================================================

drift first, then in the table's order, each with the parameters fitted before it (read noise
undoes the fitted drift; the curve and accumulation fits subtract the fitted read noise). A parameter is taken only when the data pin it down
(``Estimate.identified``); every other keeps its value (the default's, or ``start``'s) and the
fit says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from pcm_hil.data import run_tables
from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.model_file import check_physical, dumps_model
from pcm_hil.twin.estimate import Estimate
from pcm_hil.twin.fit_drift import NAMES, fit_drift
from pcm_hil.twin.fit_noise import fit_read_noise
from pcm_hil.twin.fit_programming import (
    ACCUMULATION,
    CURVE,
    fit_accumulation,
    fit_melt_threshold,
    fit_programming_curve,
    stuck_devices,
    stuck_in_accumulation,
)

#: What each kind of run can fit, for the report of what was not identified.
FITS = {
    "read noise": ("read_noise_q_scale", "read_noise_q_exponent"),
    "melting threshold": ("i_melt_uA", "i_melt_spread_uA"),
    "programming curve": CURVE,
    "accumulation": ACCUMULATION,
    "drift": tuple(f"nu_{s}_{p}" for s in ("mean", "std") for p in NAMES),
    "stuck devices": ("stuck_set_fraction", "stuck_reset_fraction"),
}
#: Every parameter a twin fit estimates.
FITTED = tuple(name for names in FITS.values() for name in names)


def perturbed(seed: int, span: float = 0.3, model: PcmModel = DEFAULT_MODEL) -> PcmModel:
    """``model`` with each of ``FITTED`` scaled by a factor drawn uniformly in 1 ± ``span``
    (seeded; drawn again until the model is physical): the chips the fit's recovery is
    checked on (tests/test_twin_fit.py, benchmarks/bench_twin.py)."""
    rng = np.random.default_rng(seed)
    while True:
        factors = rng.uniform(1 - span, 1 + span, len(FITTED))
        found = model.with_overrides(
            **{n: getattr(model, n) * f for n, f in zip(FITTED, factors, strict=True)}
        )
        if check_physical(found) is None:
            return found


class TwinFitError(ValueError):
    """Runs a twin cannot be fitted from: one line saying which and why."""


@dataclass
class TwinFit:
    """The fitted model, every estimate made (taken or not) and why the others were kept."""

    model: PcmModel
    runs: tuple[int, ...]
    estimates: dict[str, Estimate] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    """Parameters a fit was attempted for but not taken: name → why."""

    @property
    def fitted(self) -> list[str]:
        return [name for name, e in self.estimates.items() if name not in self.kept]

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Per parameter, what ``dumps_model`` writes beside its value."""
        found: dict[str, dict[str, Any]] = {}
        for name, e in self.estimates.items():
            if name in self.kept:
                found[name] = {"note": f"not fitted: {self.kept[name]}"}
            else:
                found[name] = {
                    "source": "fitted",
                    "uncertainty": float(f"{e.uncertainty:.4g}"),
                    "runs": list(e.runs),
                }
        return found

    def text(self) -> str:
        """The model file's text (``emulator/model_file.py``)."""
        return dumps_model(self.model, self.provenance())


def fit_twin(runs: Sequence[int], store: Any = None, start: PcmModel = DEFAULT_MODEL) -> TwinFit:
    """Fit the device model to ``runs`` of ``store`` (a ``RunStore``, a store file, or None
    for the default store), starting from ``start`` (see the module). ``TwinFitError`` when
    none of the runs holds a measurement a fit uses."""
    runs = list(dict.fromkeys(int(r) for r in runs))  # each run once
    found: dict[str, list[tuple[int, xr.Dataset]]] = {}
    chips: dict[tuple[str, str], int] = {}
    for run in runs:
        for table in run_tables(run, store=store).values():
            kind = _kind(table)
            if kind is None:
                continue
            if found.get(kind):
                raise TwinFitError(
                    f"runs {found[kind][0][0]} and {run} both hold a {kind} measurement: "
                    "fit one campaign's runs at a time"
                )
            found[kind] = [(run, table)]
            chip = (str(table.attrs.get("chip_model", "")), str(table.attrs.get("chip_serial", "")))
            if chips and chip not in chips:
                raise TwinFitError(
                    f"run {run} was measured on chip {' '.join(chip)}, run {next(iter(chips.values()))} "
                    f"on {' '.join(next(iter(chips)))}: a twin is one chip's"
                )
            chips.setdefault(chip, run)
    if not found:
        raise TwinFitError(
            f"runs {', '.join(map(str, runs))} hold no measurement a twin is fitted from "
            "(programming curve, accumulation, drift, read noise): run "
            "pcm-hil characterize campaign"
        )
    twin = TwinFit(start, tuple(runs))
    if "drift" in found:
        _drift(twin, found["drift"])
    if "read noise" in found:
        _read_noise(twin, found["read noise"])
    melt: tuple[float, float] = (twin.model.i_melt_uA, twin.model.i_melt_spread_uA)
    if "melting threshold" in found:
        melt = _melting_threshold(twin, found["melting threshold"])
    if "programming curve" in found:
        _programming_curve(twin, found["programming curve"], melt)
    if "accumulation" in found:
        _accumulation(twin, found["accumulation"])
    _stuck(twin, found)
    return twin


def _kind(table: xr.Dataset) -> str | None:
    procedure = table.attrs.get("procedure")
    if procedure == "programming-curve" and "conductance_uS" in table:
        return "melting threshold" if "reset_uA" in table.attrs else "programming curve"
    if procedure == "accumulation" and "conductance_uS" in table:
        return "accumulation"
    if procedure == "read-noise" and "std_by_time_uS" in table:
        return "read noise"
    if procedure == "drift" and "nu" in table:
        return "drift"
    return None


def _take(
    twin: TwinFit,
    fit_with: Callable[[frozenset[str]], dict[str, tuple[float, float]]],
    runs: list[int],
    kind: str,
) -> None:
    """Run one fit (``fit_with(held)``: its estimates with the parameters ``held`` at the
    model's values) and take what the data identify: a parameter they do not pin down is
    held at its value and the others fitted again without it, so that they do not lean on
    its unidentified fit (a line's offset fitted for a slope that is then not taken would
    miss the data). The model takes the rest if it stays physical with them.

    A refit's standard errors hold only if the held values are right; they are not known to
    be (the data do not identify them), so each parameter refitted keeps at least the
    standard error of the fit with nothing held: holding a line's offset at its default
    makes its slope look several times surer than the data say (measured: the drift's
    μ_ν slope 0.0007 held vs 0.006 free on one chip, missing the truth by 4 of the former).
    The widened errors decide what is identified in the next round too: a parameter the
    data pin down only if the held ones are right is held as well."""
    values = fit_with(frozenset())
    if not values:
        for name in FITS[kind]:
            twin.kept[name] = f"too little {kind} data in runs {_ids(runs)}"
        return
    free = dict(values)
    held: dict[str, tuple[float, float]] = {}
    for _ in range(len(values)):
        loose = {n: v for n, v in values.items() if n not in held and not Estimate(*v).identified}
        if not loose:
            break
        held.update(loose)
        refit = fit_with(frozenset(held))
        if not refit:
            break
        widened = {
            name: (value, float(np.fmax(error, free[name][1])))
            for name, (value, error) in refit.items()
        }
        values = {**widened, **held}
    taken = {}
    for name, (value, error) in values.items():
        twin.estimates[name] = Estimate(value, error, tuple(runs))
        if name in held:
            twin.kept[name] = f"runs {_ids(runs)} do not identify it ({value:.4g} ± {error:.2g})"
        else:
            taken[name] = value
    model = twin.model.with_overrides(**taken)
    problem = check_physical(model)
    if problem:
        for name in taken:
            twin.kept[name] = f"the fitted values make the model unphysical: {problem}"
        return
    twin.model = model


def _ids(runs: list[int]) -> str:
    return ", ".join(str(r) for r in sorted(set(runs)))


def _read_noise(twin: TwinFit, tables: list[tuple[int, xr.Dataset]]) -> None:
    run, table = tables[0]
    model = twin.model
    data = (
        np.asarray(table["t_s"]),
        np.asarray(table["mean_by_time_uS"]),
        np.asarray(table["std_by_time_uS"]),
        int(table.attrs.get("reads", 0)),
    )
    _take(twin, lambda held: fit_read_noise(model, *data, fixed=held), [run], "read noise")


def _melting_threshold(twin: TwinFit, tables: list[tuple[int, xr.Dataset]]) -> tuple[float, float]:
    run, table = tables[0]
    values, _ = fit_melt_threshold(
        np.asarray(table["current_uA"]), np.asarray(table["conductance_uS"])
    )
    _take(twin, lambda held: values, [run], "melting threshold")
    return twin.model.i_melt_uA, twin.model.i_melt_spread_uA  # fitted, if taken


def _programming_curve(
    twin: TwinFit, tables: list[tuple[int, xr.Dataset]], melt: tuple[float, float]
) -> None:
    run, table = tables[0]
    reads = np.asarray(table["conductance_uS"], np.float64)
    reads = reads[:, ~stuck_devices(reads)]
    current, settle = np.asarray(table["current_uA"]), float(table.attrs.get("settle_s", 0.0))
    if _too_soon(twin, settle, [run], "programming curve"):
        return
    model = twin.model
    _take(
        twin,
        lambda held: fit_programming_curve(model, current, reads, settle, *melt, fixed=held),
        [run],
        "programming curve",
    )


def _accumulation(twin: TwinFit, tables: list[tuple[int, xr.Dataset]]) -> None:
    run, table = tables[0]
    m = twin.model
    amplitude = float(table.attrs.get("amplitude_uA", m.set_reference_amplitude_uA))
    width = float(table.attrs.get("width_ns", m.set_reference_width_ns))
    strength = min(
        (amplitude - m.i_crystallize_uA)
        / (m.set_reference_amplitude_uA - m.i_crystallize_uA)
        * width
        / m.set_reference_width_ns,
        m.set_strength_max,
    )
    reads = np.asarray(table["conductance_uS"], np.float64)
    reads = reads[:, ~stuck_in_accumulation(reads, m.g_crystalline_uS)]
    settle = float(table.attrs.get("settle_s", 0.0))
    if _too_soon(twin, settle, [run], "accumulation"):
        return
    _take(
        twin,
        lambda held: fit_accumulation(m, reads, settle, strength, fixed=held),
        [run],
        "accumulation",
    )


def _too_soon(twin: TwinFit, settle_s: float, runs: list[int], kind: str) -> bool:
    """Whether the run's reads were taken too soon after their pulses to fit: the model's
    parameters describe G(t0), and a read sooner sees (t0/t)^ν above it (ν per device).
    If so, its parameters are kept, and said why."""
    t0 = twin.model.drift_t0_s
    if settle_s >= 0.95 * t0:
        return False
    for name in FITS[kind]:
        twin.kept[name] = (
            f"run {_ids(runs)} read {settle_s:g} s after each pulse, not t0 = {t0:g} s "
            "(pcm-hil characterize campaign, or --settle 20)"
        )
    return True


def _drift(twin: TwinFit, tables: list[tuple[int, xr.Dataset]]) -> None:
    """ν against each device's level's mean G(t0), not its own: a device's G(t0) fitted from
    noisy reads scatters (tens of % near RESET), and a regressor that scatters flattens the
    fitted slope; the level's mean does not, and its devices' own departures from it are
    independent of ν's draw."""
    runs = [r for r, _ in tables]
    nu, error, g = [], [], []
    for _, table in tables:
        good = np.asarray(table["good"], bool)
        t0 = float(table.attrs.get("t0_s", twin.model.drift_t0_s))
        n = np.asarray(table["nu"], np.float64)[good]
        # G(t0 of the model) from the fit's G at its own reference time
        own = np.asarray(table["g_t0_uS"], np.float64)[good] * (twin.model.drift_t0_s / t0) ** -n
        level = np.asarray(table["target_uS"], np.float64)[good]
        _, which = np.unique(level, return_inverse=True)
        means = np.bincount(which, weights=own) / np.bincount(which)
        g.append(means[which])
        nu.append(n)
        error.append(np.asarray(table["nu_error"], np.float64)[good])
    model, data = twin.model, (np.concatenate(nu), np.concatenate(error), np.concatenate(g))
    _take(twin, lambda held: fit_drift(model, *data, fixed=held), runs, "drift")


def _stuck(twin: TwinFit, found: dict[str, list[tuple[int, xr.Dataset]]]) -> None:
    """Stuck devices among the programming-curve and accumulation runs' devices: those that
    did not move, SET when they sit above half the crystalline conductance. (Not those
    program-and-verify gave up on: a target out of a chip's reach looks the same to it.)"""
    runs: list[int] = []
    set_count = reset_count = total = 0
    half = 0.5 * twin.model.g_crystalline_uS
    for kind in ("programming curve", "accumulation"):
        for run, table in found.get(kind, []):
            reads = np.asarray(table["conductance_uS"], np.float64)
            if kind == "accumulation":
                stuck = stuck_in_accumulation(reads, twin.model.g_crystalline_uS)
            else:
                stuck = stuck_devices(reads)
            level = reads.mean(axis=0)
            set_count += int(np.count_nonzero(stuck & (level > half)))
            reset_count += int(np.count_nonzero(stuck & (level <= half)))
            total += reads.shape[1]
            runs.append(run)
    if total == 0:
        return
    values = {
        name: (count / total, np.sqrt(max(count, 1)) / total)
        for name, count in (
            ("stuck_set_fraction", set_count),
            ("stuck_reset_fraction", reset_count),
        )
    }
    _take(twin, lambda held: values, runs, "stuck devices")
