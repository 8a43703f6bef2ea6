"""The per-device tables of program-and-verify and drift: one entry per device along the
dimension ``device``, located by the coordinates ``tile``, ``address``, ``row``, ``column``
and labelled by ``target_uS`` and ``level`` (the index of its target among the run's
distinct targets, lowest first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from pcm_hil.data.parts import Part
from pcm_hil.documents.drift import DriftEnd, DriftRead, DriftStart
from pcm_hil.documents.program import ProgramEnd, ProgramIteration, ProgramStart, ProgramTrace
from pcm_hil.procedures.drift import drift_fit

#: Units (UDUNITS spelling) and a description of every variable and coordinate, by name.
VARIABLES: dict[str, tuple[str, str]] = {
    "tile": ("1", "tile index"),
    "address": ("1", "device address in its tile, row-major"),
    "row": ("1", "row of the device in its tile"),
    "column": ("1", "column of the device in its tile"),
    "target_uS": ("uS", "target conductance"),
    "level": ("1", "index of the target among the run's distinct targets, lowest first"),
    "final_uS": (
        "uS",
        "conductance read when the device converged (since program.end version 3; else, and "
        "for devices that did not, once programming ended)",
    ),
    "repeat_uS": ("uS", "a second read right after final_uS: final − repeat is read noise"),
    "error_uS": ("uS", "final read minus target"),
    "converged": ("1", "a verify read came within the tolerance"),
    "stuck": ("1", "found not to respond to pulses, and left alone"),
    "iterations": ("1", "pulse-and-verify iterations the device took"),
    "iteration": ("1", "pulse-and-verify iteration, from 1"),
    "conductance_uS": ("uS", "conductance read"),
    "converged_devices": ("1", "devices converged by the end of the iteration"),
    "stuck_devices": ("1", "devices found stuck by the end of the iteration"),
    "usable": ("1", "programmed and not stuck: fitted"),
    "programmed_at_s": ("s", "chip clock at the device's last programming pulse"),
    "t_s": ("s", "time of the read after the end of programming"),
    "read_at_s": ("s", "chip clock at the read"),
    "nu": ("1", "drift exponent: G(t) = G(t0)·(t/t0)^−ν"),
    "nu_error": ("1", "standard error of ν"),
    "fit_rms": ("1", "RMS residual of ln G about the fit"),
    "g_t0_uS": ("uS", "fitted conductance at t0"),
    "good": ("1", "usable and ν known to within max_nu_error"),
}


def annotate(dataset: xr.Dataset) -> xr.Dataset:
    """Units and descriptions of the variables and coordinates ``VARIABLES`` knows."""
    for name in [*dataset.data_vars, *dataset.coords]:
        if name in VARIABLES:
            units, description = VARIABLES[str(name)]
            dataset[name].attrs.update(units=units, long_name=description)
    return dataset


def device_coords(
    tile: np.ndarray, address: np.ndarray, target_uS: np.ndarray | None, columns: int | None
) -> dict[str, Any]:
    """The coordinates along ``device``: where each device is, its target and level."""
    tile = np.asarray(tile, dtype=np.int32)
    address = np.asarray(address, dtype=np.int32)
    coords: dict[str, Any] = {"tile": ("device", tile), "address": ("device", address)}
    if columns:
        coords["row"] = ("device", (address // columns).astype(np.int32))
        coords["column"] = ("device", (address % columns).astype(np.int32))
    if target_uS is not None:
        target = np.asarray(target_uS, dtype=np.float32)
        _levels, level = np.unique(target, return_inverse=True)
        coords["target_uS"] = ("device", target)
        coords["level"] = ("device", level.astype(np.int32).ravel())
    return coords


def program_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """A program-and-verify: ``NAME`` per device, ``NAME.verify`` every verify read (iteration ×
    device, NaN where the device was not read)."""
    start = part.start
    if not isinstance(start, ProgramStart):
        return {}
    iterations = [s for s in part.steps if isinstance(s, ProgramIteration)]
    end = part.end if isinstance(part.end, ProgramEnd) else None
    n = int(start.devices)
    trace = ProgramTrace(n)
    verify = np.full((len(iterations), n), np.nan, dtype=np.float32)
    counted = np.zeros(n, dtype=np.int32)
    for k, step in enumerate(iterations):
        read = np.asarray(step.is_read, dtype=bool)
        # a device finished earlier is not read again (version 1 repeated its last read)
        fresh = read & ~trace.finished
        verify[k, read] = step.conductance_uS
        verify[k, read & ~fresh] = np.nan
        counted += fresh
        trace.add(step)
    target = np.asarray(start.target_uS, dtype=np.float32)
    if end is not None and end.final_uS is not None:
        final = np.asarray(end.final_uS, dtype=np.float32)
        converged = np.asarray(end.converged, dtype=bool)
        stuck = np.asarray(end.is_stuck, dtype=bool)
        taken = np.asarray(end.iterations, dtype=np.int32)
    else:  # cut off: the last verify reads; a finished device converged if within tolerance
        final = trace.conductance_uS
        within = start.within(final)
        converged, stuck, taken = trace.finished & within, trace.finished & ~within, counted
    coords = device_coords(start.tile, start.address, target, columns)
    attrs = {
        "strategy": start.strategy,
        "tolerance_uS": float(start.tolerance_uS),
        "max_iterations": int(start.max_iterations),
        "ended": (
            "yes"
            if end is not None and end.final_uS is not None
            else "no (cut off or failed: from the last verify reads)"
        ),
    }
    devices = xr.Dataset(
        {
            "final_uS": ("device", final),
            "error_uS": ("device", (final - target).astype(np.float32)),
            "converged": ("device", converged),
            "stuck": ("device", stuck),
            "iterations": ("device", taken),
            **(
                {"repeat_uS": ("device", np.asarray(end.repeat_uS, dtype=np.float32))}
                if end is not None and end.repeat_uS is not None
                else {}
            ),
        },
        coords=coords,
        attrs=attrs,
    )
    steps = xr.Dataset(
        {
            "conductance_uS": (("iteration", "device"), verify),
            "converged_devices": (
                "iteration",
                np.array([s.converged for s in iterations], np.int64),
            ),
            "stuck_devices": (
                "iteration",
                np.array([s.stuck_devices for s in iterations], np.int64),
            ),
        },
        coords={"iteration": np.array([s.iteration for s in iterations], np.int32), **coords},
        attrs=attrs,
    )
    return {part.name: annotate(devices), f"{part.name}.verify": annotate(steps)}


def drift_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """A drift measurement: ``NAME`` with every read (time × device) beside every device's
    fit. Fits recorded before per-device results were (or cut off before the end) are done
    here on the stored reads, as the procedure does them."""
    start = part.start
    if not isinstance(start, DriftStart):
        return {}
    reads = [s for s in part.steps if isinstance(s, DriftRead)]
    end = part.end if isinstance(part.end, DriftEnd) else None
    n = int(start.devices)
    conductance = np.asarray([r.conductance_uS for r in reads], dtype=np.float32).reshape(-1, n)
    read_at = np.asarray([r.read_at_s for r in reads], dtype=np.float64)
    programmed_at = np.asarray(start.programmed_at_s, dtype=np.float64)
    usable = np.asarray(start.usable, dtype=bool)
    if end is not None and end.nu is not None:
        nu, nu_error = end.nu, end.nu_error
        rms, g_t0, good = end.fit_rms, end.g_t0_uS, end.good
        t0, max_error = end.t0_s, end.max_nu_error
        fitted = "by the procedure"
    else:
        fit = drift_fit(read_at[:, None] - programmed_at[None, :], conductance, start.fit_from_s)
        max_error = 0.02  # measure_drift's default: older runs did not record theirs
        nu, nu_error, rms, g_t0, t0 = fit.nu, fit.nu_error, fit.fit_rms, fit.g_t0_uS, fit.t0_s
        good = usable & (fit.nu_error <= max_error)
        fitted = "here, from the stored reads"
    dataset = xr.Dataset(
        {
            "conductance_uS": (("time", "device"), conductance),
            "read_at_s": ("time", read_at),
            "usable": ("device", usable),
            "programmed_at_s": ("device", programmed_at),
            "nu": ("device", np.asarray(nu, dtype=np.float32)),
            "nu_error": ("device", np.asarray(nu_error, dtype=np.float32)),
            "fit_rms": ("device", np.asarray(rms, dtype=np.float32)),
            "g_t0_uS": ("device", np.asarray(g_t0, dtype=np.float32)),
            "good": ("device", np.asarray(good, dtype=bool)),
        },
        coords={
            "t_s": ("time", np.asarray([r.t_s for r in reads], dtype=np.float64)),
            **device_coords(start.tile, start.address, start.target_uS, columns),
        },
        attrs={
            "fit_from_s": float(start.fit_from_s),
            "t0_s": float(t0 if t0 is not None else start.fit_from_s),
            "max_nu_error": float(max_error if max_error is not None else 0.02),
            "reads_per_point": int(start.reads_per_point),
            "resumed_reads": int(start.resumed),
            "fitted": fitted,
            **(
                {"resumed_from_run": int(start.resumed_from_run)}
                if start.resumed_from_run is not None
                else {}
            ),
            "elapsed": "a read's time since its device's programming: read_at_s − programmed_at_s",
        },
    )
    return {part.name: annotate(dataset)}
