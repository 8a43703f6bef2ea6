"""Reading a recorded run back far enough to continue it: what a program-and-verify had left
to program, how far a drift measurement had got. Both read the run's typed documents."""

from __future__ import annotations

import numpy as np

from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.program import ProgramIteration, ProgramStart
from pcm_hil.procedures.drift import DriftProgress
from pcm_hil.records.store import RunStore


def unfinished_from_run(
    store: RunStore, run_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(tiles, addresses, targets, finished) of a recorded program-and-verify run: the devices
    that had neither converged nor been found stuck at its last recorded iteration — what is
    left to program when resuming it — and how many were finished. Programmed conductances
    are non-volatile, so the finished devices need nothing more."""
    start: ProgramStart | None = None
    finished = None
    for event in store.events(run_id):
        document = event.document
        if isinstance(document, ProgramStart):
            start, finished = document, None
        elif isinstance(document, ProgramIteration) and start is not None:
            finished = np.asarray(document.finished, dtype=bool)
    if start is None:
        raise ValueError(f"run {run_id} holds no program-and-verify to resume")
    left = np.ones(start.tile.size, dtype=bool) if finished is None else ~finished
    return start.tile[left], start.address[left], start.target_uS[left], int((~left).sum())


def progress_from_run(store: RunStore, run_id: int) -> DriftProgress:
    """The progress a recorded drift run had made: its drift start document and reads."""
    start: DriftStart | None = None
    read_at: list[float] = []
    reads: list[np.ndarray] = []
    for event in store.events(run_id):
        document = event.document
        if isinstance(document, DriftStart):
            start, read_at, reads = document, [], []
        elif isinstance(document, DriftRead) and start is not None:
            read_at.append(float(document.read_at_s))
            reads.append(np.asarray(document.conductance_uS))
    if start is None:
        raise ValueError(f"run {run_id} holds no drift measurement to resume")
    return DriftProgress(
        start.tile,
        start.address,
        start.target_uS,
        start.usable,
        start.programmed_at_s,
        start.times_s,
        read_at,
        reads,
    )
