"""Sweeps on Dask: how a sweep of inference points scales from one worker to two on this
2-core machine, and what Dask costs per point — printed side by side in one run.

1. **Scaling.** A sweep of ``--points`` (≥ 32) ``infer`` points — the bundled MLP, plain and
   noise-aware weights, one chip each (``chip_seed``), accuracy at five times after
   programming without compensation and with GDC — on a LocalCluster of 1 worker process,
   then of 2; the wall time of each (workers warmed: their network trained before the clock
   starts) and the speed-up.
2. **Per-point overhead.** ``--tasks`` points of a function that does nothing: through Dask
   and the run store (``run_sweep``) against calling it directly; the overhead per point.
3. **What moves per point.** The pickled size of a point's task (function name, parameters,
   seed) and of its result, and the run store's bytes per point.

    python benchmarks/bench_sweep.py [--points 32] [--tasks 200] [--json]

Target: speed-up ≥ 1.7× on 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pcm_hil.records.store import RunStore
from pcm_hil.sweep import SweepSpec, run_sweep
from pcm_hil.sweep.run import compute_point, local_cluster


def nothing(parameters, seed):
    """A point that does nothing: what is left is Dask's and the run store's cost."""
    return {"x": float(parameters["i"])}


def inference_spec(points: int) -> SweepSpec:
    chips = max(1, points // 2)
    return SweepSpec(
        "infer",
        axes={"weights": ["plain", "noise-aware"], "chip_seed": list(range(chips))},
        fixed={"network": "mlp", "profile": "default"},
        seed=1,
    )


def timed_sweep(spec: SweepSpec, workers: int, store: RunStore) -> tuple[float, int]:
    from distributed import Client

    with local_cluster(workers) as cluster, Client(cluster) as client:
        # warm every worker: the network trained once per process, as in a long sweep
        client.run(
            lambda: __import__("pcm_hil.sweep.functions").sweep.functions._network("mlp", "plain")
        )
        client.run(
            lambda: __import__("pcm_hil.sweep.functions").sweep.functions._network(
                "mlp", "noise-aware"
            )
        )
        started = time.perf_counter()
        result = run_sweep(spec, client=client, store=store)
        return time.perf_counter() - started, len(result.results)


def overhead(tasks: int, store: RunStore) -> dict:
    spec = SweepSpec("bench_sweep:nothing", axes={"i": list(range(tasks))}, seed=0)
    started = time.perf_counter()
    for _index, point in spec.points():
        compute_point(spec.function, spec.parameters(point), 0)
    direct = time.perf_counter() - started
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as client:
        before = os.path.getsize(store.path)
        started = time.perf_counter()
        run_sweep(spec, client=client, store=store)
        through = time.perf_counter() - started
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = os.path.getsize(store.path) - before
    task = pickle.dumps((spec.function, spec.parameters({"i": 1}), 123))
    result = pickle.dumps(compute_point(spec.function, spec.parameters({"i": 1}), 0))
    return {
        "tasks": tasks,
        "direct_s": direct,
        "dask_s": through,
        "overhead_ms_per_point": 1e3 * (through - direct) / tasks,
        "task_bytes": len(task),
        "result_bytes": len(result),
        "store_bytes_per_point": grown / tasks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]
    )
    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder) / "runs.sqlite") as store:
        spec = inference_spec(args.points)
        one, n = timed_sweep(spec, 1, store)
        two, _ = timed_sweep(spec, 2, store)
        cost = overhead(args.tasks, store)
        infer_result = pickle.dumps(
            compute_point("infer", spec.parameters(next(spec.points())[1]), 0)
        )
    report = {
        "points": n,
        "one_worker_s": one,
        "two_workers_s": two,
        "speed_up": one / two,
        "per_point_s": one / n,
        "infer_result_bytes": len(infer_result),
        **cost,
    }
    if args.json:
        print(json.dumps(report))
        return
    table = Table(title=f"A sweep of {n} inference points (MLP, 5 times × none/GDC)")
    for column in ("", "wall s", "per point s", "speed-up", "target"):
        table.add_column(column, justify="right")
    table.add_row("1 worker", f"{one:.1f}", f"{one / n:.2f}", "1.00", "")
    table.add_row(
        "2 workers",
        f"{two:.1f}",
        f"{two / n:.2f}",
        f"{one / two:.2f}",
        "≥ 1.7× " + ("met" if one / two >= 1.7 else "NOT met"),
    )
    Console().print(table)
    table = Table(title=f"Dask's cost per point ({cost['tasks']} points that do nothing)")
    for column in (
        "direct s",
        "run_sweep s",
        "overhead ms/point",
        "task B",
        "result B",
        "store B/point",
        "infer result B",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{cost['direct_s']:.3f}",
        f"{cost['dask_s']:.2f}",
        f"{cost['overhead_ms_per_point']:.2f}",
        str(cost["task_bytes"]),
        str(cost["result_bytes"]),
        f"{cost['store_bytes_per_point']:.0f}",
        str(report["infer_result_bytes"]),
    )
    Console().print(table)


if __name__ == "__main__":
    main()
