"""The tables of characterization, of networks on the chip, and of any other procedure.

- a programming or accumulation curve: ``point`` × ``device`` reads (when recorded: since
  documents version 2), with the swept value (``current_uA``, ``pulses``) and the mean and
  std over the devices per point;
- read noise: per device the mean and std of its reads, and per read time when timed;
- inference: accuracy over ``chip`` × ``weights`` × ``time`` × ``compensation`` (NaN where
  not measured), with each chip's identity as coordinates;
- training: per ``epoch``;
- any other procedure (the demo's stages, a lab's own): one row per ``step`` of its scalar
  fields, arrays of one shape stacked along ``step``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from pcm_hil.data.devices import annotate, device_coords
from pcm_hil.data.parts import Part
from pcm_hil.documents.analog import InferAccuracy, InferChip, InferStart, TrainEpoch, TrainStart
from pcm_hil.documents.characterize import (
    CharacterizationStart,
    CurvePoint,
    ReadNoiseEnd,
    ReadNoiseStart,
)

_UNITS = {
    "current_uA": ("uA", "melt-quench pulse current"),
    "pulses": ("1", "partial-SET pulses since the RESET (0: the RESET state)"),
    "mean_uS": ("uS", "mean over the devices (per point) or the reads (per device)"),
    "std_uS": ("uS", "standard deviation, ddof 0 over devices, ddof 1 over a device's reads"),
    "relative_std": ("1", "std / mean of a device's reads"),
    "mean_by_time_uS": ("uS", "mean of the device's reads at the time"),
    "std_by_time_uS": ("uS", "std (ddof 1) of the device's reads at the time"),
    "accuracy": ("1", "test accuracy, 0…1"),
    "t_s": ("s", "time after programming"),
    "pulses_applied": ("1", "programming pulses applied so far"),
    "test_accuracy": ("1", "test accuracy, 0…1"),
    "refreshed_pairs": ("1", "device pairs refreshed so far"),
}


def _units(dataset: xr.Dataset) -> xr.Dataset:
    annotate(dataset)
    for name in [*dataset.data_vars, *dataset.coords]:
        if name in _UNITS:
            units, description = _UNITS[str(name)]
            dataset[name].attrs.update(units=units, long_name=description)
    return dataset


def curve_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """A programming or accumulation curve (see the module)."""
    points = [s for s in part.steps if isinstance(s, CurvePoint)]
    start = part.start
    if not points or not isinstance(start, CharacterizationStart):
        return {}
    x_name = points[0].x_name
    data: dict[str, Any] = {
        "mean_uS": ("point", np.array([p.mean_uS for p in points], np.float64)),
        "std_uS": ("point", np.array([p.std_uS for p in points], np.float64)),
    }
    coords: dict[str, Any] = {x_name: ("point", np.array([p.x for p in points]))}
    per_device = [p.conductance_uS for p in points]
    if start.address is not None and all(c is not None for c in per_device):
        data["conductance_uS"] = (("point", "device"), np.asarray(per_device, np.float32))
        tile = np.full(np.asarray(start.address).size, start.tile)
        coords.update(device_coords(tile, start.address, None, columns))
    attrs = {k: v for k, v in start.values().items() if np.isscalar(v)}
    return {part.name: _units(xr.Dataset(data, coords=coords, attrs=attrs))}


def read_noise_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """Read noise (see the module): per device, and per time × device when timed."""
    start, end = part.start, part.end
    if not isinstance(start, ReadNoiseStart) or not isinstance(end, ReadNoiseEnd):
        return {}
    if end.mean_uS is None or end.std_uS is None:
        return {}
    mean = np.asarray(end.mean_uS, np.float32)
    std = np.asarray(end.std_uS, np.float32)
    data: dict[str, Any] = {
        "mean_uS": ("device", mean),
        "std_uS": ("device", std),
        "relative_std": ("device", (std / mean).astype(np.float32)),
    }
    coords: dict[str, Any] = {}
    if start.address is not None:
        tile = np.full(np.asarray(start.address).size, start.tile)
        coords.update(device_coords(tile, start.address, None, columns))
    if end.times_s is not None:
        coords["t_s"] = ("time", np.asarray(end.times_s, np.float64))
        data["mean_by_time_uS"] = (("time", "device"), np.asarray(end.mean_by_time_uS, np.float32))
        data["std_by_time_uS"] = (("time", "device"), np.asarray(end.std_by_time_uS, np.float32))
    attrs = {"reads": int(end.reads or 0), "tile": int(start.tile)}
    return {part.name: _units(xr.Dataset(data, coords=coords, attrs=attrs))}


def infer_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """The accuracy-vs-time experiment (see the module)."""
    start = part.start
    points = [s for s in part.steps if isinstance(s, InferAccuracy)]
    chips = [s for s in part.steps if isinstance(s, InferChip)]
    if not isinstance(start, InferStart):
        return {}
    compensations = sorted({c for p in points for c in p.accuracy}, key=_compensation_order)
    times = list(start.times_s)
    weights = list(start.weights)
    n_chips = int(start.chips)
    accuracy = np.full((n_chips, len(weights), len(times), len(compensations)), np.nan)
    for p in points:
        chip = p.chip or 0
        for name, value in p.accuracy.items():
            if value is not None and p.t_s in times:
                w, t = weights.index(p.weights), times.index(p.t_s)
                accuracy[chip, w, t, compensations.index(name)] = value
    serial = np.full(n_chips, "", dtype=object)
    resource = np.full(n_chips, "", dtype=object)
    for c in chips:
        if 0 <= c.chip < n_chips:
            serial[c.chip] = str(c.identity.get("serial", ""))
            resource[c.chip] = c.resource or ""
    dataset = xr.Dataset(
        {"accuracy": (("chip", "weights", "time", "compensation"), accuracy)},
        coords={
            "chip": np.arange(n_chips),
            "weights": np.array(weights, dtype=object),
            "t_s": ("time", np.asarray(times, np.float64)),
            "compensation": np.array(compensations, dtype=object),
            "chip_serial": ("chip", serial.astype(str)),
            "chip_resource": ("chip", resource.astype(str)),
        },
        attrs={"fp_accuracy": start.fp_accuracy} if start.fp_accuracy is not None else {},
    )
    return {part.name: _units(dataset)}


def _compensation_order(name: str) -> tuple[int, str]:
    order = {"none": 0, "gdc": 1, "gdc+bn": 2}
    return (order.get(name, 3), name)


def train_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """In-situ training, per epoch."""
    epochs = [s for s in part.steps if isinstance(s, TrainEpoch)]
    if not isinstance(part.start, TrainStart):
        return {}
    nan = float("nan")

    def column(name: str) -> np.ndarray:
        values = [getattr(e, name) for e in epochs]
        return np.array([nan if v is None else v for v in values], np.float64)

    dataset = xr.Dataset(
        {
            "pulses_applied": ("epoch", np.array([e.pulses_applied for e in epochs], np.int64)),
            "test_accuracy": ("epoch", column("test_accuracy")),
            "refreshed_pairs": ("epoch", column("refreshed_pairs")),
        },
        coords={"epoch": np.array([e.epoch for e in epochs], np.int32)},
        attrs={k: v for k, v in part.start.values().items() if v is not None},
    )
    return {part.name: _units(dataset)}


def step_tables(part: Part, columns: int | None) -> dict[str, xr.Dataset]:
    """Any procedure: a row per step of its scalar fields (text, numbers, booleans), and its
    arrays of one shape stacked (see the module). Nothing when it has no steps."""
    if not part.steps:
        return {}
    rows = [s.values() for s in part.steps]
    names = sorted({k for row in rows for k in row})
    data: dict[str, Any] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, np.ndarray) for v in present):
            shapes = {v.shape for v in present}
            if len(shapes) == 1 and len(present) == len(values):
                (shape,) = shapes
                dims = ("step", *(f"{name}_{k}" for k in range(len(shape))))
                data[name] = (dims, np.stack(present))
        elif present and all(isinstance(v, (bool, np.bool_)) for v in present):
            data[name] = ("step", np.array([bool(v) if v is not None else False for v in values]))
        elif present and all(isinstance(v, (int, float)) for v in present):
            data[name] = ("step", np.array([np.nan if v is None else v for v in values], float))
        elif present and all(isinstance(v, str) for v in present):
            data[name] = ("step", np.array(["" if v is None else v for v in values]))
    dataset = xr.Dataset(
        data,
        coords={"step": np.arange(1, len(rows) + 1), "wall_time_s": ("step", part.wall_times_s)},
    )
    return {part.name: _units(dataset)}
