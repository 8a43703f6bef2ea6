"""Export a recorded run: NumPy .npz, CSV, or HDF5 (h5py, the ``hdf5`` extra).

Every format holds the run's record (what, when, on what, how it ended) and every event:
its kind, procedure, progress, wall time, scalars and arrays.
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
    suffix = {"npz": ".npz", "csv": "", "hdf5": ".h5"}[fmt]
    path = Path(output) if output else Path(f"run-{run_id}{suffix}")
    record = json.dumps(info.as_dict())
    if fmt == "npz":
        arrays = {"run": np.array(record)}
        for event in events:
            scalars = {k: v for k, v in event.data.items() if not isinstance(v, np.ndarray)}
            head = {
                "kind": event.kind,
                "procedure": event.procedure,
                "done": event.done,
                "total": event.total,
                "wall_time": event.wall_time,
                "data": scalars,
            }
            arrays[f"event{event.seq:05d}"] = np.array(json.dumps(head))
            for name, value in event.data.items():
                if isinstance(value, np.ndarray):
                    arrays[f"event{event.seq:05d}.{name}"] = value
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
    elif fmt == "csv":
        path.mkdir(parents=True, exist_ok=True)
        (path / "run.json").write_text(record + "\n", encoding="utf-8")
        keys = sorted(
            {k for e in events for k, v in e.data.items() if not isinstance(v, np.ndarray)}
        )
        with open(path / "events.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["seq", "kind", "procedure", "done", "total", "wall_time", *keys])
            for e in events:
                values = [
                    json.dumps(e.data[k])
                    if isinstance(e.data.get(k), (list, dict))
                    else e.data.get(k, "")
                    for k in keys
                ]
                writer.writerow([e.seq, e.kind, e.procedure, e.done, e.total, e.wall_time, *values])
        for e in events:
            for name, value in e.data.items():
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
                for key in ("kind", "procedure", "done", "total", "wall_time"):
                    group.attrs[key] = getattr(e, key)
                for name, value in e.data.items():
                    if isinstance(value, np.ndarray):
                        group.create_dataset(name, data=value, compression="gzip")
                    else:
                        group.attrs[name] = json.dumps(value)
    return path
