"""A recorded run written as files a lab opens in one line, each table self-describing.

- ``netcdf`` (``run-ID.nc``) and ``hdf5`` (``run-ID.h5``, the same NetCDF-4 file, which is
  HDF5): the run's main table in the root group, every other table in a group of its name;
  units and descriptions in the variables' attributes, the run's record in each group's.
  ``xarray.open_dataset("run-12.nc")``; ``…, group="program.verify")`` for another table.
  Written through xarray's ``h5netcdf`` engine, compressed (zlib level 1, shuffled).
- ``parquet`` (``run-ID-parquet/``): one ``TABLE.parquet`` per table, the tidy table
  (``Dataset.to_dataframe()``, index as columns); each column's units and the run's record in
  the file's metadata (``pandas.read_parquet(…).attrs``).
- ``csv`` (``run-ID-csv/``): one ``TABLE.csv`` per table, a header row, values at the
  precision that reads back exactly (the shortest that round-trips, in the column's dtype),
  booleans as True/False.
- Both folder formats write ``metadata.json`` beside the tables: the run's record and every
  column's dtype, units and description. ``program.verify`` holds a row per read taken.

Exports are written to a temporary name beside the target and renamed into place: an export
cut short leaves no half file under the final name. Nothing but an earlier export is
written over (``check_target``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import xarray as xr

from pcm_hil.data.load import run_tables
from pcm_hil.records.store import RunStore

#: What a folder export writes beside its tables: the run's record and each column's units.
MARKER = "metadata.json"

#: Export formats and the default name of each (``{id}``: the run id).
FORMATS = {
    "netcdf": "run-{id}.nc",
    "hdf5": "run-{id}.h5",
    "parquet": "run-{id}-parquet",
    "csv": "run-{id}-csv",
}


def export_run(
    run: int,
    fmt: str,
    output: str | os.PathLike | None = None,
    *,
    store: RunStore | str | os.PathLike | None = None,
) -> Path:
    """Write run ``run`` in format ``fmt`` (``FORMATS``) to ``output`` (default: its default
    name in the current directory); the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    tables = run_tables(run, store=store)
    if not tables:
        raise ValueError(f"run {run} holds no table yet (no procedure step was recorded)")
    path = Path(output).absolute() if output else Path(FORMATS[fmt].format(id=run)).absolute()
    check_target(path, fmt)
    partial = path.with_name(f".{path.name}.partial")
    _remove(partial)
    try:
        if fmt in ("netcdf", "hdf5"):
            write_netcdf(tables, partial)
        else:
            partial.mkdir()
            write_folder(tables, partial, fmt)
        if path.is_dir():  # an export of ours (check_target): replaced whole
            shutil.rmtree(path)
        os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise
    return path


def check_target(path: Path, fmt: str) -> None:
    """Refuse to write over what is not an export: a folder for a file format; for a folder
    format, a folder holding anything but the files of an earlier export (``MARKER`` lists
    them). An existing file is replaced by a file format, refused by a folder format."""
    if not path.name or not path.parent.is_dir():
        raise ValueError(f"{path}: not a path in an existing folder")
    if fmt in ("netcdf", "hdf5"):
        if path.is_dir():
            raise ValueError(f"{path} is a folder: give the file to write, e.g. {path}/run.nc")
        return
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file: give a folder for the {fmt} tables")
    if path.is_dir() and any(path.iterdir()):
        listed = _export_files(path) or set()
        extra = sorted(p.name for p in path.iterdir() if p.name not in listed)
        if not listed or extra:
            raise ValueError(
                f"{path} holds other files ({', '.join(extra[:3]) or 'not an export'}"
                f"{'…' if len(extra) > 3 else ''}): give a new or empty folder"
            )


def _export_files(folder: Path) -> set[str] | None:
    """The files an earlier export wrote in ``folder`` (None: it is not one)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return {MARKER, *(t["file"] for t in marker["tables"].values())}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_netcdf(tables: dict[str, xr.Dataset], path: Path) -> None:
    """The tables in one NetCDF-4 file: the first in the root group, the others as groups."""
    for k, (name, table) in enumerate(tables.items()):
        encoding = {
            var: {"zlib": True, "complevel": 1, "shuffle": True}
            for var in table.data_vars
            if table[var].dtype.kind in "biuf" and table[var].ndim
        }
        try:
            table.to_netcdf(
                path,
                mode="w" if k == 0 else "a",
                group=None if k == 0 else name,
                engine="h5netcdf",
                encoding=encoding,
            )
        except (TypeError, ValueError) as error:  # h5netcdf's CompatibilityError is one
            raise ValueError(f"table {name} cannot be written as NetCDF: {error}") from None


def write_folder(tables: dict[str, xr.Dataset], folder: Path, fmt: str) -> None:
    """Each table as ``TABLE.parquet`` or ``TABLE.csv`` in ``folder``."""
    described: dict[str, Any] = {}
    for name, table in tables.items():
        frame = table.to_dataframe().reset_index()
        if name.endswith(".verify"):  # only the reads taken, not a row per device unread
            frame = frame.dropna(subset=["conductance_uS"]).reset_index(drop=True)
        units = {
            str(column): table[column].attrs.get("units", "")
            for column in frame.columns
            if column in table.variables
        }
        if fmt == "parquet":
            frame.attrs = {"run": _plain(table.attrs), "units": units}
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{name}.csv", index=False)
        described[name] = {
            "file": f"{name}.{fmt}",
            "rows": len(frame),
            "columns": {
                str(c): {
                    "dtype": str(frame[c].dtype),
                    "units": units.get(str(c), ""),
                    "description": table[c].attrs.get("long_name", "")
                    if c in table.variables
                    else "",
                }
                for c in frame.columns
            },
            "attributes": _plain(table.attrs),
        }
    text = json.dumps({"tables": described}, indent=2, default=str)
    (folder / MARKER).write_text(text + "\n", encoding="utf-8")


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v.item() if hasattr(v, "item") else v for k, v in attrs.items()}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
