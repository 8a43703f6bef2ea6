"""Reading a recorded run back far enough to continue it: what a program-and-verify had left
to program, how far a drift measurement had got. Both read the run's typed documents.

``check_same_chip`` refuses to continue a run on another chip than the one it recorded: the
way it is reached, its identity and geometry, and its clock mode must match.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np

from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.program import ProgramIteration, ProgramStart
from pcm_hil.procedures.drift import DriftProgress
from pcm_hil.protocols.chip import ChipInfo
from pcm_hil.records.store import RunInfo, RunStore

#: The identity and geometry fields a resumed run's chip must share with the recorded one
#: (not the firmware: an update between the two keeps the chip and what it holds).
SAME_CHIP_FIELDS = ("manufacturer", "model", "serial", "tiles", "rows", "columns")


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


def resource_kind(resource: str | None) -> str | None:
    """How a resource string reaches its chip: ``embedded emulator``, ``bench``, ``TCP``,
    ``serial``, another VISA interface (``GPIB``, ``USB``, …) or a registered scheme; None
    for no resource."""
    if not resource:
        return None
    text = resource.strip()
    scheme = text.partition("?")[0].lower()
    if scheme == "emulator":
        return "embedded emulator"
    if scheme.startswith("bench:"):
        return "bench"
    if re.match(r"^(tcpip\d*::|socket://|rfc2217://)", text, re.IGNORECASE):
        return "TCP"
    if re.match(r"^(asrl|serial:|/dev/|com\d|loop://)", text, re.IGNORECASE):
        return "serial"
    visa = re.match(r"^([a-z]+)\d*::", text, re.IGNORECASE)
    return visa[1].upper() if visa else scheme


def chip_differences(run: RunInfo, resource: str, info: ChipInfo, clock_mode: str) -> list[str]:
    """What differs between the chip ``run`` recorded and this one (``resource``, what it
    reports of itself, its clock mode ``VIRT`` or ``REAL``), each as "what then → now";
    what the run did not record is not compared."""
    found = []
    then_kind, now_kind = resource_kind(run.resource), resource_kind(resource)
    if then_kind is not None and then_kind != now_kind:
        found.append(f"reached through {then_kind} → {now_kind}")
    recorded = {**(run.chip or {}), **(run.identity or {})}
    geometry = {"tiles": info.tiles, "rows": info.rows, "columns": info.columns}
    current = {**asdict(info.identity), **geometry}
    for name in SAME_CHIP_FIELDS:
        if name in recorded and str(recorded[name]) != str(current[name]):
            found.append(f"{name} {recorded[name]} → {current[name]}")
    then_clock = run.parameters.get("clock_mode")
    if then_clock and _clock(then_clock) != _clock(clock_mode):
        found.append(f"clock {_clock(then_clock)} → {_clock(clock_mode)}")
    return found


def check_same_chip(run: RunInfo, resource: str, info: ChipInfo, clock_mode: str) -> None:
    """ValueError, naming what differs (``chip_differences``), unless this is the chip
    ``run`` recorded, reached the same way, on the same clock."""
    differences = chip_differences(run, resource, info, clock_mode)
    if differences:
        raise ValueError(
            f"run {run.id} was recorded on another chip than {resource}: " + "; ".join(differences)
        )


def _clock(mode: str) -> str:
    """``VIRT`` or ``REAL``, however the chip spelled it."""
    return "VIRT" if mode.strip().upper().startswith("VIRT") else "REAL"
