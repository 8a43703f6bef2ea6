"""A recorded run as labelled arrays: ``load_run`` and ``run_tables``.

Each part of a run (each procedure it ran, ``parts``) gives one or more tables, each an
``xarray.Dataset`` with named dimensions (``device``, ``time``, ``iteration``, ``point``,
``chip``, …), coordinates locating every value (a device's tile, address, row, column, target
and level; a read's time after programming), units and descriptions in each variable's
attributes, and the run's record (id, chip identity, metadata, note, tags, seed, parameters)
in the dataset's. ``Dataset.to_dataframe()`` gives the tidy table.

The tables of each procedure:

- ``program``: one row per device (final read, error, converged, stuck, iterations), and
  ``program.verify``, every verify read (iteration × device);
- ``drift``: every read (time × device) with each device's fit (ν, its standard error, the
  fit's RMS residual, G(t0));
- ``programming-curve``, ``accumulation``: point × device; ``read-noise``: per device (and
  per time); ``infer``: chip × weights × time × compensation; ``train``: per epoch; any other
  procedure, per step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path

import xarray as xr

from pcm_hil.data.curves import (
    curve_tables,
    infer_tables,
    read_noise_tables,
    step_tables,
    train_tables,
)
from pcm_hil.data.devices import annotate, drift_tables, program_tables
from pcm_hil.data.parts import Part, run_attributes, split_parts
from pcm_hil.records.store import RunStore

#: The tables of a part, by its procedure: ``build(part, columns) -> {name: Dataset}``.
BUILDERS: dict[str, Callable[[Part, int | None], dict[str, xr.Dataset]]] = {
    "program": program_tables,
    "drift": drift_tables,
    "programming-curve": curve_tables,
    "accumulation": curve_tables,
    "read-noise": read_noise_tables,
    "infer": infer_tables,
    "train": train_tables,
}

#: Suffixes of the files ``load_run`` takes as an exported run rather than a store.
EXPORT_SUFFIXES = (".nc", ".h5", ".hdf5", ".nc4")


#: ``run_tables(..., parts=MAIN)``: only the run's main part (see ``run_tables``).
MAIN = "<main>"


def run_tables(
    run: int,
    *,
    store: RunStore | str | os.PathLike | None = None,
    parts: Collection[str] | None = None,
) -> dict[str, xr.Dataset]:
    """Every table of run ``run`` of ``store`` (a ``RunStore``, a store file, or None for the
    default store), by name: first the tables of the run's own procedure (``drift`` for a drift
    run) or, in a script's run (``pcm_hil.record``), of the last procedure it ran. A run that
    has not ended (still running, or killed) gives what it recorded so far. ``parts``: build
    only the tables of these parts (``program``, ``drift``, ``program-2``, …; ``MAIN``: the
    first-named part only)."""
    own = isinstance(store, RunStore)
    opened = store if isinstance(store, RunStore) else RunStore(store, readonly=True)
    try:
        info = opened.run(run)
        events = list(opened.events(run))
    finally:
        if not own:
            opened.close()
    found = split_parts(events)
    names = [part.name for part in found]
    main = info.procedure if info.procedure in names else (found[-1].name if found else "")
    wanted = None if parts is None else {main if p == MAIN else p for p in parts}
    columns = (info.chip or {}).get("columns")
    tables: dict[str, xr.Dataset] = {}
    for part in found:
        if wanted is not None and part.name not in wanted:
            continue
        build = BUILDERS.get(part.procedure, step_tables)
        for name, table in build(part, columns).items():
            table.attrs = {**run_attributes(info, part.procedure), "table": name, **table.attrs}
            if table.attrs.get("resumed_from_run") is not None:
                table = _with_earlier_reads(table, store, opened if own else None)
            tables[name] = table
    order = list(tables)
    ordered = sorted(order, key=lambda name: (name.split(".")[0] != main, order.index(name)))
    return {name: tables[name] for name in ordered}


def _with_earlier_reads(table: xr.Dataset, store, opened: RunStore | None) -> xr.Dataset:
    """A resumed drift measurement's table with the reads of the run it resumed first (the
    fits are over both); as it is when that run is no longer in the store."""
    source = int(table.attrs["resumed_from_run"])
    try:
        earlier = run_tables(
            source, store=opened if opened is not None else store, parts=["drift"]
        ).get("drift")
    except (KeyError, LookupError, ValueError):
        earlier = None
    if earlier is None or earlier.sizes.get("device") != table.sizes.get("device"):
        table.attrs["earlier_reads"] = f"not found: run {source} is not in the store"
        return table
    reads = ["conductance_uS", "read_at_s"]
    time_vars = xr.concat([earlier[reads], table[reads]], dim="time")
    merged = table.drop_vars([*reads, "t_s"]).assign(
        conductance_uS=time_vars.conductance_uS, read_at_s=time_vars.read_at_s
    )
    merged = merged.assign_coords(t_s=time_vars.t_s)
    merged.attrs["earlier_reads"] = f"the first {earlier.sizes['time']} reads, from run {source}"
    return annotate(merged)


def load_run(
    run: int | str | os.PathLike,
    table: str | None = None,
    *,
    store: RunStore | str | os.PathLike | None = None,
) -> xr.Dataset:
    """A recorded run as an ``xarray.Dataset``: ``run`` is a run id (in ``store``, default the
    user's run store) or the path of a run exported as NetCDF (``runs export --format
    netcdf``). ``table`` names one of its tables (``run_tables``; default: the first, the run's
    own procedure's main table — ``drift`` for a drift run, whose programming is ``program`` —
    or in a script's run the last procedure's).
    """
    if isinstance(run, (str, os.PathLike)) and not str(run).isdigit():
        return _load_export(Path(run), table)
    part = MAIN if table is None else table.split(".")[0]
    tables = run_tables(int(str(run)), store=store, parts=[part])  # only the part asked for
    if (table is None and not tables) or (table is not None and table not in tables):
        tables = run_tables(int(str(run)), store=store)  # a part with no data yet, or to name them
    if not tables:
        raise ValueError(f"run {run} holds no table yet (no procedure step was recorded)")
    if table is None:
        return next(iter(tables.values()))
    if table not in tables:
        raise KeyError(f"run {run} has no table {table!r}; it has: {', '.join(tables)}")
    return tables[table]


def _load_export(path: Path, table: str | None) -> xr.Dataset:
    """A table of an exported NetCDF file: its main table is the file's root group."""
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise ValueError(
            f"{path}: not a run id nor an exported run ({', '.join(EXPORT_SUFFIXES)}); "
            "a run store is given as store=…"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with xr.open_dataset(path, engine="h5netcdf") as root:
        main = root.attrs.get("table")
        if table is None or table == main:
            return root.load()
    try:
        with xr.open_dataset(path, engine="h5netcdf", group=table) as group:
            return group.load()
    except OSError:  # h5netcdf's word for a group that is not there
        raise KeyError(f"{path} has no table {table!r}") from None
