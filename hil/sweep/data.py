"""A recorded sweep as labelled arrays: ``load_sweep(run)`` — an xarray Dataset over the
sweep's axes (the points of the run it resumed included), a variable per result; a result
that is a list runs along the dimension its function names (``dims``), else one of its own,
``<name>_index``, as long as the longest such list. Points not computed, and the ends of
shorter lists, are NaN."""

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
    lists: dict[str, bool] = {}  # result name → whether it is a list
    dimension: dict[str, str] = {}
    sizes: dict[str, int] = {}  # dimension → its longest list
    for point in points.values():
        dimension.update(point.dims or {})
    for point in points.values():
        for name, value in point.result.items():
            is_list = isinstance(value, list)
            if lists.setdefault(name, is_list) != is_list:
                raise ValueError(
                    f"sweep run {run_id}: result {name!r} is a number in some points, a list in others"
                )
            if is_list:
                dim = dimension.get(name, f"{name}_index")
                sizes[dim] = max(sizes.get(dim, 0), len(value))
    taken = sorted(set(lists) & (set(axes) | {"computed", "seconds"}))
    if taken:
        raise ValueError(
            f"sweep run {run_id}: result(s) {', '.join(taken)} named as an axis or a built-in"
        )
    data: dict[str, Any] = {}
    for name, is_list in lists.items():
        dim = dimension.get(name, f"{name}_index")
        values = np.full((*shape, sizes[dim]) if is_list else shape, np.nan)
        for index, point in points.items():
            if name in point.result:
                cell = np.unravel_index(index, shape)
                if is_list:  # the cell's row (a view); a shorter list leaves NaN after it
                    values[cell][: len(point.result[name])] = point.result[name]
                else:
                    values[cell] = point.result[name]
        data[name] = ((*axes, dim) if is_list else tuple(axes), values)
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
