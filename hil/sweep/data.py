"""A recorded sweep as labelled arrays: ``load_sweep(run)`` — an xarray Dataset over the
sweep's axes (the points of the run it resumed included), a variable per result; a result
that is a list runs along the dimension its function names (``dims``), else one of its own,
``<name>_index``. Points not computed are NaN."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from pcm_hil.records.store import RunStore
from pcm_hil.sweep.run import completed_points


def load_sweep(run_id: int, store: RunStore | str | os.PathLike | None = None) -> xr.Dataset:
    """The sweep recorded as ``run_id`` (see the module)."""
    opened = store if isinstance(store, RunStore) else RunStore(store, readonly=True)
    try:
        start, points = completed_points(opened, run_id)
    finally:
        if not isinstance(store, RunStore):
            opened.close()
    axes = {name: list(values) for name, values in start.axes.items()}
    shape = tuple(len(v) for v in axes.values())
    names: dict[str, int] = {}  # result name → list length (0: a number)
    dimension: dict[str, str] = {}
    for point in points.values():
        for name, value in point.result.items():
            names[name] = max(names.get(name, 0), len(value) if isinstance(value, list) else 0)
        dimension.update(point.dims or {})
    data: dict[str, Any] = {}
    for name, length in names.items():
        values = np.full((*shape, length) if length else shape, np.nan)
        for index, point in points.items():
            if name in point.result:
                values[np.unravel_index(index, shape)] = point.result[name]
        dims = (*axes, dimension.get(name, f"{name}_index")) if length else tuple(axes)
        data[name] = (dims, values)
    computed = np.zeros(shape, bool)
    seconds = np.full(shape, np.nan)
    for index, point in points.items():
        computed[np.unravel_index(index, shape)] = True
        seconds[np.unravel_index(index, shape)] = point.seconds
    data["computed"] = (tuple(axes), computed)
    data["seconds"] = (tuple(axes), seconds)
    attrs = {"run": run_id, "function": start.function, "seed": start.seed}
    attrs.update({f"fixed_{k}": v for k, v in start.fixed.items()})
    if start.resumed_from_run is not None:
        attrs["resumed_from_run"] = start.resumed_from_run
    return xr.Dataset(data, coords={k: np.asarray(v) for k, v in axes.items()}, attrs=attrs)
