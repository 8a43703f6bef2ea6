"""Reading a recorded run back far enough to continue it: what a program-and-verify had left
to program, how far a drift measurement had got. Both read the run's typed documents.

``check_same_chip`` refuses to continue a run on another chip than the one it recorded: the
way it is reached, its identity and geometry, and its clock mode must match. For a drift
measurement that is not enough (every emulator seed reports the same serial, and another
client may have moved the chip's clock on): ``check_reads_ahead`` refuses a chip whose clock
has passed every read time left, ``check_devices_hold`` one whose devices do not hold what
the run last read of them, drift since allowed for.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from pcm_hil.documents.drift import DriftRead, DriftStart
from pcm_hil.documents.program import ProgramIteration, ProgramStart, ProgramTrace
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
    trace = None
    for event in store.events(run_id):
        document = event.document
        if isinstance(document, ProgramStart):
            start, trace = document, ProgramTrace(int(document.devices))
        elif isinstance(document, ProgramIteration) and trace is not None:
            trace.add(document)
    if start is None or trace is None:
        raise ValueError(f"run {run_id} holds no program-and-verify to resume")
    left = ~trace.finished
    return start.tile[left], start.address[left], start.target_uS[left], int((~left).sum())


#: How far, as the median over a drift run's usable devices, a read of them may lie from what
#: the run last knew of them (drift since allowed for, ``held_deviation_uS``) and still be
#: taken for the same devices, µS. Two means of 4 reads of the same devices differ by read
#: noise alone, a median |ΔG| of about 0.3 µS on the emulator (g_max 25 µS); the devices of
#: another chip, unprogrammed, by about 10 µS. 2 µS is several times the noise and a fraction
#: of the spacing of 8 levels (3 µS).
HELD_TOLERANCE_US = 2.0
#: The largest drift exponent allowed for between the run's last read and now: PCM's mean ν
#: rises with the amorphous fraction to about 0.1 for the RESET state (the aihwkit PCM model,
#: fitted on a million IBM devices, caps it there; the emulator follows it). Drift only lowers
#: conductance, G(t) = G(t_read)·(t/t_read)^−ν, so a device now lies between its last read
#: and that read × (t_now/t_read)^−0.1 — most devices, that is: ν spreads about its mean,
#: and the median over the devices is what is compared.
DRIFT_NU_MAX = 0.1
#: Without a settle time (``settle_s`` 0), a verify read follows its device's last pulse within
#: about a millisecond (the next command): the soonest time from which a device known only by
#: its programming target has drifted, s.
VERIFY_READ_AFTER_S = 1e-3


@dataclass(frozen=True)
class DriftRecord:
    """A drift measurement read back from its run: its ``progress`` (what
    ``measure_drift(resume=…)`` continues), its fit (``fit_from_s``) and ``reads_per_point``,
    and what it last knew of its devices: ``known_uS`` per device on the chip's clock at
    ``known_at_s`` (per device), within ``known_within_uS`` — the last recorded read (within
    0), else the programming target (within the programming tolerance, as the verify read
    ``ProgramStart.settle_s`` after the last pulse found it); None when the run recorded
    neither (a measurement of devices it did not program)."""

    progress: DriftProgress
    fit_from_s: float
    reads_per_point: int
    known_uS: np.ndarray | None
    known_at_s: np.ndarray | None
    known_within_uS: float

    @property
    def end_of_programming_s(self) -> float:
        """The chip's clock at the end of programming: the read times count from there."""
        return self.progress.end_of_programming_s


def drift_from_run(store: RunStore, run_id: int) -> DriftRecord:
    """The drift measurement of a recorded run: its last drift start document, the reads
    after it, and its programming tolerance (``ProgramStart``)."""
    start: DriftStart | None = None
    tolerance_uS: float | None = None
    settle_s = 0.0
    read_at: list[float] = []
    reads: list[np.ndarray] = []
    for event in store.events(run_id):
        document = event.document
        if isinstance(document, ProgramStart):
            tolerance_uS = float(document.tolerance_uS)
            settle_s = float(document.settle_s)
        elif isinstance(document, DriftStart):
            start, read_at, reads = document, [], []
        elif isinstance(document, DriftRead) and start is not None:
            read_at.append(float(document.read_at_s))
            reads.append(np.asarray(document.conductance_uS))
    if start is None:
        raise ValueError(f"run {run_id} holds no drift measurement to resume")
    progress = DriftProgress(
        start.tile,
        start.address,
        start.target_uS,
        start.usable,
        start.programmed_at_s,
        start.times_s,
        read_at,
        reads,
        run_id=run_id,
        schedule_from_s=start.schedule_from_s,
    )
    programmed_at = np.asarray(start.programmed_at_s, dtype=np.float64)
    known, known_at, within = None, None, 0.0
    if reads:
        known, known_at = (
            np.asarray(reads[-1], np.float64),
            np.full(programmed_at.shape, read_at[-1]),
        )
    elif tolerance_uS is not None:  # met by the verify read settle_s after the last pulse
        known, known_at, within = (
            np.asarray(start.target_uS, np.float64),
            programmed_at + settle_s,
            tolerance_uS,
        )
    return DriftRecord(
        progress, float(start.fit_from_s), int(start.reads_per_point), known, known_at, within
    )


def progress_from_run(store: RunStore, run_id: int) -> DriftProgress:
    """The progress a recorded drift run had made: its drift start document and reads."""
    return drift_from_run(store, run_id).progress


def check_reads_ahead(record: DriftRecord, run_id: int, now_s: float) -> None:
    """ValueError unless a read time left to run ``run_id`` is still ahead of the chip's clock
    ``now_s``. ``measure_drift`` takes a read time already past at once, when resumed: with
    none ahead, every read left would be taken in the same instant, long after its time —
    one time point where the run planned several, and where the reads in the fit window
    were all still to come, none to fit ν to (all NaN)."""
    progress = record.progress
    left = progress.times_s[len(progress.reads) :]
    end = record.end_of_programming_s
    if left.size and now_s >= end + float(left[-1]):
        first, last = float(left[0]), float(left[-1])
        raise ValueError(
            f"the chip's clock ({now_s:.4g} s) is past the read times left in run {run_id}: "
            f"{left.size} reads, {first:.4g} … {last:.4g} s after its programming ended "
            f"({end:.4g} s), all due by {end + last:.4g} s; resumed, they would all be taken "
            "now, at once (has another client moved the clock on?)"
        )


def held_deviation_uS(record: DriftRecord, conductance_uS: np.ndarray, now_s: float) -> float:
    """How far a read of the run's devices now (``conductance_uS``, per device, at the chip's
    ``now_s``) lies from what the run last knew of them, µS: the median over its usable
    devices (all, if none is) of each one's distance from the band drift since allows —
    between what was known (+ its margin) and that (− its margin) × (t_now/t_known)^−ν_max,
    t counted from the device's programming. 0 for the same devices read again at once,
    noise aside. NaN when the run knew nothing to compare with."""
    if record.known_uS is None or record.known_at_s is None:
        return float("nan")
    progress = record.progress
    programmed_at = np.asarray(progress.programmed_at_s, dtype=np.float64)
    then = np.maximum(record.known_at_s - programmed_at, VERIFY_READ_AFTER_S)
    now = np.maximum(now_s - programmed_at, then)
    known, within = record.known_uS, record.known_within_uS
    upper = known + within
    lower = np.maximum(known - within, 0.0) * (now / then) ** -DRIFT_NU_MAX
    read = np.asarray(conductance_uS, dtype=np.float64)
    distance = np.maximum(np.maximum(read - upper, lower - read), 0.0)
    usable = np.asarray(progress.usable, dtype=bool) & np.isfinite(distance)
    if not usable.any():
        usable = np.isfinite(distance)
    return float(np.median(distance[usable])) if usable.any() else float("nan")


def check_devices_hold(
    record: DriftRecord, run_id: int, conductance_uS: np.ndarray, now_s: float
) -> None:
    """ValueError unless the run's devices, read now, hold what it last knew of them
    (``held_deviation_uS`` at most ``HELD_TOLERANCE_US``): a chip with the same identity
    but other devices (another emulator seed, say) would mix two chips in one measurement."""
    deviation = held_deviation_uS(record, conductance_uS, now_s)
    if deviation > HELD_TOLERANCE_US:
        what = "last read" if record.progress.reads else "programmed"
        raise ValueError(
            f"the devices of run {run_id} do not hold what it {what}: median |ΔG| = "
            f"{deviation:.3g} µS beyond the drift since (the same devices: within "
            f"{HELD_TOLERANCE_US:g} µS) — another chip?"
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
