"""Running a sweep on Dask distributed (``run_sweep``), recorded as one run, a document per
point as it completes.

Each point is a task: ``client.submit(compute_point, …)`` on a ``LocalCluster`` of worker
processes by default, or on the cluster of ``scheduler`` (``tcp://host:8786``). Dask
distributed is the scheduler because it is what the lab's cluster already runs and it gives,
for free, what a sweep needs from one: tasks moved off a worker that dies, worker resources
for points pinned to a chip, a dashboard. Results come back to this process, which alone
writes the run store (SQLite takes one writer): a point is recorded once, when its result
arrives, so a worker lost mid-point costs that point's time and nothing else.

A point with a ``chip`` parameter (a name) runs only on a worker that holds that chip: one
started with the Dask worker resource ``chip-<name>=1`` and the chip's resource string in
``$PCM_HIL_CHIPS`` (``name=resource;…``), so one sweep drives the chips of several bench PCs
in parallel, each chip one point at a time.

A killed sweep resumes (``resume=RUN``): a new run that names the old one, computes only the
points it lacks, and ``load_sweep`` reads the two as one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.documents.sweep import SweepEnd, SweepPoint, SweepStart
from pcm_hil.records.session import record
from pcm_hil.records.store import RunStore
from pcm_hil.sweep.functions import chip_resource_name, point_function
from pcm_hil.sweep.spec import SweepSpec, point_seed

#: The key of a point function's result naming the dimension of each list it returns.
DIMS = "dims"


@dataclass
class SweepResult:
    """The run the sweep was recorded as, and every point's result by index (those of the
    run it resumed included)."""

    run_id: int
    status: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


def compute_point(function: str, parameters: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """One point, on a worker: the function's result (numbers and lists of numbers, as plain
    Python), the worker's address and the seconds it took."""
    started = time.perf_counter()
    result = point_function(function)(dict(parameters), seed)
    if not isinstance(result, Mapping):
        raise TypeError(f"sweep function {function!r} returned {type(result).__name__}, not a dict")
    result = dict(result)
    dims = {str(k): str(v) for k, v in dict(result.pop(DIMS, {})).items()}
    plain = {str(k): _plain(k, v) for k, v in result.items()}
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid {os.getpid()}"
    return {
        "result": plain,
        "dims": dims,
        "worker": worker,
        "seconds": time.perf_counter() - started,
    }


def _plain(name: Any, value: Any) -> Any:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim > 1:
        raise TypeError(f"result {name!r}: a number or a list of numbers, not {value!r}")
    return array.tolist()


def completed_points(store: RunStore, run_id: int) -> tuple[SweepStart, dict[int, SweepPoint]]:
    """A recorded sweep's start document and its points by index (those of the runs it
    resumed too, the newest winning)."""
    start: SweepStart | None = None
    points: dict[int, SweepPoint] = {}
    for event in store.events(run_id):
        document = event.document
        if isinstance(document, SweepStart):
            start = document
        elif isinstance(document, SweepPoint):
            points[document.index] = document
    if start is None:
        raise ValueError(f"run {run_id} is not a sweep")
    if start.resumed_from_run is not None:
        _, earlier = completed_points(store, start.resumed_from_run)
        points = {**earlier, **points}
    return start, points


def run_sweep(
    spec: SweepSpec,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int = 2,
    store: RunStore | str | os.PathLike | None = None,
    resume: int | None = None,
    meta: Mapping[str, Any] | None = None,
    listeners: Iterable[Listener] = (),
) -> SweepResult:
    """Run ``spec``'s points on Dask and record them (see the module): on ``client`` if
    given, else on ``scheduler``'s cluster, else on a ``LocalCluster`` of ``workers``
    processes (one thread each) started and stopped here. ``resume``: a sweep run of the
    same spec whose completed points are not computed again."""
    opened = store if isinstance(store, RunStore) else RunStore(store)
    try:
        done: dict[int, dict[str, Any]] = {}
        if resume is not None:
            opened.run(resume)  # UnknownRunError, one line, for a run not in the store
            earlier, points = completed_points(opened, resume)
            was = SweepSpec(earlier.function, dict(earlier.axes), dict(earlier.fixed), earlier.seed)
            if was.canonical() != spec.canonical():  # axis order and value types count
                raise ValueError(f"run {resume} swept another spec: it cannot be resumed with this")
            done = {i: dict(p.result) for i, p in points.items()}
        todo = [(i, p) for i, p in spec.points() if i not in done]
        with (
            _client(client, scheduler, workers) as dask_client,
            record("sweep", meta=meta, store=opened, listeners=tuple(listeners)) as run,
        ):
            result = _run(dask_client, spec, todo, done, resume, run)
        return result
    finally:
        if not isinstance(store, RunStore):
            opened.close()


def _run(client, spec: SweepSpec, todo, done, resume, run) -> SweepResult:
    from distributed import as_completed

    emitter = Emitter(run.listeners, total=spec.size)
    emitter.done = len(done)
    start = SweepStart(
        function=spec.function,
        axes=spec.axes,
        fixed=spec.fixed,
        seed=spec.seed,
        points=spec.size,
        resumed_from_run=resume,
    )
    result = SweepResult(run.id, "completed", dict(done))
    computed = 0
    futures: dict[Any, tuple[int, dict]] = {}
    _check_chips(client, spec, todo)
    token = uuid.uuid4().hex  # task keys unique on a scheduler other sweeps share
    with cancellable(emitter, start, SweepEnd) as status:
        for index, point in todo:
            parameters = spec.parameters(point)
            chip = parameters.get("chip")
            future = client.submit(
                compute_point,
                spec.function,
                parameters,
                point_seed(spec.seed, parameters),
                key=f"sweep-{token}-point-{index}",
                pure=False,
                # a point on a chip runs only on a worker holding it, one at a time
                resources={chip_resource_name(str(chip)): 1} if chip is not None else None,
            )
            futures[future] = (index, point)
        try:
            for future in as_completed(list(futures)):
                index, point = futures.pop(future)
                try:
                    found = future.result()
                except Exception as error:  # the point's own error: the others are kept
                    raise RuntimeError(
                        f"point {index} {point}: {type(error).__name__}: {error}"
                    ) from error
                finally:
                    future.release()  # recorded or failed: not kept on a worker to redo
                result.results[index] = found["result"]
                computed += 1
                emitter.step(
                    SweepPoint(
                        index=index,
                        parameters=point,
                        result=found["result"],
                        worker=found["worker"],
                        seconds=found["seconds"],
                        dims=found["dims"] or None,
                    )
                )
        finally:  # cancelled, failed or done: nothing of this sweep left on the cluster
            client.cancel(list(futures))
    result.status = status.status
    emitter.end(SweepEnd(status=status.status, points_done=computed, points_resumed=len(done)))
    return result


def _check_chips(client: Any, spec: SweepSpec, todo: list[tuple[int, dict]]) -> None:
    """ValueError, before anything is submitted, for a chip no worker of the cluster holds
    (its points would wait for one forever)."""
    needed = {
        str(spec.parameters(point)["chip"]) for _, point in todo if "chip" in spec.parameters(point)
    }
    if not needed:
        return
    held = {
        name
        for worker in client.scheduler_info()["workers"].values()
        for name in (worker.get("resources") or {})
    }
    missing = sorted(c for c in needed if chip_resource_name(c) not in held)
    if missing:
        raise ValueError(
            f"no worker holds chip(s) {', '.join(missing)}: start one with "
            f"--resources chip-{missing[0]}=1 and $PCM_HIL_CHIPS"
        )


def local_cluster(workers: int) -> Any:
    """A Dask LocalCluster of ``workers`` processes, one thread each, on 127.0.0.1, without
    dashboards (a sweep's default; close it when done).

    Its processes ignore Ctrl-C (SIGINT, sent to the terminal's whole process group): the
    sweep's own process takes it, cancels the points and closes the cluster — the workers
    do not each print a KeyboardInterrupt traceback on the way. (An ignored SIGINT is
    inherited by the processes started meanwhile, and kept by Python and asyncio in them.)
    Their logs show errors only: a cancelled point is not worth a warning per worker, and a
    failing one is reported by the sweep itself, in a line."""
    import logging

    from distributed import LocalCluster

    with _sigint_ignored():
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
            # no dashboard; its HTTP server (health, metrics) on a free port, not 8787: a
            # second cluster on the machine would otherwise warn about it on stderr
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the block runs (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _client:
    """The Dask client to use: the given one (left open), one connected to ``scheduler``, or
    a LocalCluster of ``workers`` processes (both closed on leaving)."""

    def __init__(self, client: Any, scheduler: str | None, workers: int) -> None:
        self.given, self.scheduler, self.workers = client, scheduler, workers
        self.own: list[Any] = []

    def __enter__(self) -> Any:
        if self.given is not None:
            return self.given
        from distributed import Client

        if self.scheduler is not None:
            client = Client(self.scheduler, timeout="30s")
        else:
            cluster = local_cluster(self.workers)
            self.own.append(cluster)
            client = Client(cluster)
        self.own.insert(0, client)
        return client

    def __exit__(self, *exc: object) -> None:
        for thing in self.own:
            thing.close()
