"""Export a recorded run: NumPy .npz, CSV, or HDF5 (h5py, the ``hdf5`` extra).

Every format holds the run's record (what, when, on what, how it ended) and every event:
its document's name and version, kind, procedure, progress, wall time, scalars and arrays.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from pcm_hil.records.store import RunStore

FORMATS = ("npz", "csv", "hdf5")


def export_run(store: RunStore, run_id: int, fmt: str, output: str | Path | None = None) -> Path:
    """Write run ``run_id`` in format ``fmt``; returns the path written (default
    ``run-<id>.<ext>`` in the current directory; CSV writes a directory of files)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    info = store.run(run_id)
    events = list(store.events(run_id))
    values = {e.seq: e.document.values() for e in events}
    suffix = {"npz": ".npz", "csv": "", "hdf5": ".h5"}[fmt]
    path = Path(output) if output else Path(f"run-{run_id}{suffix}")
    record = json.dumps(info.as_dict())
    if fmt == "npz":
        arrays = {"run": np.array(record)}
        for event in events:
            scalars = {k: v for k, v in values[event.seq].items() if not isinstance(v, np.ndarray)}
            head = {
                "document": event.document.name,
                "version": event.document.version,
                "kind": event.kind,
                "procedure": event.procedure,
                "done": event.done,
                "total": event.total,
                "wall_time_s": event.wall_time_s,
                "data": scalars,
            }
            arrays[f"event{event.seq:05d}"] = np.array(json.dumps(head))
            for name, value in values[event.seq].items():
                if isinstance(value, np.ndarray):
                    arrays[f"event{event.seq:05d}.{name}"] = value
        with open(path, "wb") as f:
            # allow_pickle given: no key of ``arrays`` can be taken for it; the store's arrays
            # are numeric (rebuilt from raw bytes), the records strings
            np.savez_compressed(f, allow_pickle=False, **arrays)
    elif fmt == "csv":
        path.mkdir(parents=True, exist_ok=True)
        (path / "run.json").write_text(record + "\n", encoding="utf-8")
        keys = sorted(
            {k for e in events for k, v in values[e.seq].items() if not isinstance(v, np.ndarray)}
        )
        with open(path / "events.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            columns = ["seq", "document", "kind", "procedure", "done", "total", "wall_time_s"]
            writer.writerow([*columns, *keys])
            for e in events:
                data = values[e.seq]
                cells = [
                    json.dumps(data[k])
                    if isinstance(data.get(k), (list, dict))
                    else data.get(k, "")
                    for k in keys
                ]
                row = [e.seq, e.document.name, e.kind, e.procedure, e.done, e.total, e.wall_time_s]
                writer.writerow([*row, *cells])
        for e in events:
            for name, value in values[e.seq].items():
                if isinstance(value, np.ndarray):
                    np.savetxt(
                        path / f"event{e.seq:05d}-{name}.csv",
                        np.atleast_2d(value).reshape(
                            -1, value.shape[-1] if value.ndim > 1 else value.size
                        ),
                        delimiter=",",
                    )
    else:
        try:
            import h5py
        except ImportError as error:
            raise RuntimeError("HDF5 export needs h5py: pip install 'pcm-hil[hdf5]'") from error
        with h5py.File(path, "w") as f:
            f.attrs["run"] = record
            for e in events:
                group = f.create_group(f"event{e.seq:05d}")
                group.attrs["document"] = e.document.name
                group.attrs["version"] = e.document.version
                for key in ("kind", "procedure", "done", "total", "wall_time_s"):
                    group.attrs[key] = getattr(e, key)
                for name, value in values[e.seq].items():
                    if isinstance(value, np.ndarray):
                        group.create_dataset(name, data=value, compression="gzip")
                    else:
                        group.attrs[name] = json.dumps(value)
    return path
