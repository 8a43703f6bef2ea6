"""Device characterization over many devices at once: the programming curve, the
accumulation curve and read noise. Each step is one batched pulse and one batched read."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pcm_hil.documents.base import Start
from pcm_hil.documents.characterize import (
    AccumulationEnd,
    AccumulationPoint,
    AccumulationStart,
    CurveEnd,
    CurvePoint,
    ProgrammingCurveEnd,
    ProgrammingCurvePoint,
    ProgrammingCurveStart,
    ReadNoiseEnd,
    ReadNoiseRead,
    ReadNoiseStart,
)
from pcm_hil.documents.events import Emitter, Listener, cancellable
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip


@dataclass
class Curve:
    """A characterization result: a statistic of many devices against one swept variable."""

    kind: str
    x_name: str
    x: np.ndarray
    mean_uS: np.ndarray
    std_uS: np.ndarray
    devices: int
    status: str
    elapsed_s: float

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "status": self.status,
            "devices": self.devices,
            "elapsed_s": self.elapsed_s,
            "points": [
                {self.x_name: float(x), "mean_uS": float(m), "std_uS": float(s)}
                for x, m, s in zip(self.x, self.mean_uS, self.std_uS, strict=True)
            ],
        }


def _run(
    start: Start,
    point: type[CurvePoint],
    end: type[CurveEnd],
    xs: Sequence[float],
    step: Callable[[float], npt.ArrayLike],
    listeners: Iterable[Listener],
) -> Curve:
    """Drive ``step(x) -> reads`` over ``xs``; Ctrl-C keeps the points measured so far."""
    emitter = Emitter(listeners, total=len(xs))
    started = time.perf_counter()
    means, stds, done, devices = [], [], [], 0
    with cancellable(emitter, start, end) as run:
        for x in xs:
            reads = np.asarray(step(x), dtype=np.float64)
            devices = reads.size
            means.append(float(reads.mean()))
            stds.append(float(reads.std()))
            done.append(x)
            emitter.step(
                point(
                    mean_uS=means[-1],
                    std_uS=stds[-1],
                    conductance_uS=reads.astype(np.float32),
                    **{point.x_name: x},
                )
            )
    emitter.end(end(status=run.status, points=len(done)))
    return Curve(
        start.procedure,
        point.x_name,
        np.asarray(done),
        np.asarray(means),
        np.asarray(stds),
        devices,
        run.status,
        time.perf_counter() - started,
    )


def programming_curve(
    chip: Chip,
    tile: int,
    addresses: np.ndarray,
    currents_uA: Iterable[float],
    *,
    width_ns: float = 50.0,
    reset_uA: float | None = None,
    settle_s: float = 0.0,
    clock: ChipClock | None = None,
    listeners: Iterable[Listener] = (),
) -> Curve:
    """Conductance after one melt-quench pulse vs its current: every device gets each current
    in turn (one pulse command and one read per current); mean and std over the devices.
    With ``reset_uA`` every point starts from a RESET pulse of that current (below the
    melting threshold a pulse then crystallizes a RESET device a little instead: the melting
    threshold shows); each read waits ``settle_s`` after its pulse on ``clock`` (the chip's
    own if None)."""
    addresses = np.asarray(addresses)
    wait = _settle(chip, settle_s, clock)

    def step(current):
        if reset_uA is not None:
            chip.pulse(tile, addresses, float(reset_uA), width_ns)
        chip.pulse(tile, addresses, float(current), width_ns)
        wait()
        return chip.read(tile, addresses)

    currents = [float(c) for c in currents_uA]
    start = ProgrammingCurveStart(
        tile=tile,
        devices=int(addresses.size),
        width_ns=width_ns,
        address=_int32(addresses),
        reset_uA=reset_uA,
        settle_s=settle_s,
    )
    return _run(start, ProgrammingCurvePoint, ProgrammingCurveEnd, currents, step, listeners)


def accumulation_curve(
    chip: Chip,
    tile: int,
    addresses: np.ndarray,
    pulses: int = 20,
    *,
    amplitude_uA: float = 90.0,
    width_ns: float = 50.0,
    reset_uA: float = 500.0,
    settle_s: float = 0.0,
    clock: ChipClock | None = None,
    listeners: Iterable[Listener] = (),
) -> Curve:
    """Conductance vs the number of partial-SET pulses after a RESET (point 0 is the RESET
    state): mean and std over the devices. Each read waits ``settle_s`` after its pulse on
    ``clock`` (the chip's own if None)."""
    addresses = np.asarray(addresses)
    wait = _settle(chip, settle_s, clock)

    def step(n):
        if n == 0:
            chip.pulse(tile, addresses, reset_uA, width_ns)
        else:
            chip.pulse(tile, addresses, amplitude_uA, width_ns)
        wait()
        return chip.read(tile, addresses)

    start = AccumulationStart(
        tile=tile,
        devices=int(addresses.size),
        amplitude_uA=amplitude_uA,
        width_ns=width_ns,
        address=_int32(addresses),
        settle_s=settle_s,
        reset_uA=reset_uA,
    )
    return _run(start, AccumulationPoint, AccumulationEnd, list(range(pulses + 1)), step, listeners)


@dataclass
class ReadNoise:
    """Relative read noise vs conductance: devices binned by their mean conductance."""

    conductance_uS: np.ndarray
    relative_std: np.ndarray
    devices_per_bin: np.ndarray
    reads: int
    status: str
    elapsed_s: float

    def as_dict(self) -> dict:
        return {
            "kind": "read-noise",
            "status": self.status,
            "reads": self.reads,
            "elapsed_s": self.elapsed_s,
            "points": [
                {"conductance_uS": float(g), "relative_std": float(r), "devices": int(n)}
                for g, r, n in zip(
                    self.conductance_uS, self.relative_std, self.devices_per_bin, strict=True
                )
            ],
        }


def read_noise(
    chip: Chip,
    tile: int,
    addresses: np.ndarray,
    *,
    currents_uA: tuple[float, float] = (230.0, 480.0),
    reads: int = 20,
    bins: int = 8,
    width_ns: float = 50.0,
    times_s: Sequence[float] = (),
    clock: ChipClock | None = None,
    listeners: Iterable[Listener] = (),
) -> ReadNoise:
    """Program the devices over a spread of conductances (melt-quench currents spread over
    ``currents_uA``), read them all ``reads`` times, and report each device's relative std
    (std/mean of its reads), averaged in conductance bins. With ``times_s`` (s after the
    programming pulse, increasing) and a ``clock``, the ``reads`` reads are taken again at
    each of those times: read noise grows with the time since programming."""
    addresses = np.asarray(addresses)
    times = [float(t) for t in times_s]
    if times and clock is None:
        raise ValueError("reading at times since programming needs the chip's clock")
    if any(later <= earlier for earlier, later in itertools.pairwise(times)):
        raise ValueError("read-noise times must increase")
    emitter = Emitter(listeners, total=reads * max(len(times), 1))
    started = time.perf_counter()
    samples: list[np.ndarray] = []
    bursts: list[tuple[np.ndarray, np.ndarray]] = []  # (mean, std) at each time
    start = ReadNoiseStart(
        tile=tile, devices=int(addresses.size), reads=reads, address=_int32(addresses)
    )
    with cancellable(emitter, start, ReadNoiseEnd) as run:
        spread = np.linspace(*currents_uA, addresses.size, dtype=np.float32)
        chip.pulse(tile, addresses, spread, width_ns)
        programmed_at = clock.now() if clock is not None else 0.0
        schedule: list[float | None] = [*times] if times else [None]
        for t in schedule:
            if t is not None and clock is not None:
                clock.wait_until(programmed_at + t)
            burst = []
            for _ in range(reads):
                burst.append(chip.read(tile, addresses))
                emitter.step(ReadNoiseRead(read=len(samples) + len(burst), t_s=t))
            if not samples:
                samples = burst
            if len(burst) >= 2:
                data = np.asarray(burst, dtype=np.float64)
                bursts.append((data.mean(axis=0), data.std(axis=0, ddof=1)))
    mean = std = None
    if len(samples) >= 2:
        data = np.asarray(samples, dtype=np.float64)
        mean, std = data.mean(axis=0), data.std(axis=0, ddof=1)
    timed = times[: len(bursts)] if times else []
    emitter.end(
        ReadNoiseEnd(
            status=run.status,
            reads=len(samples),
            mean_uS=None if mean is None else mean.astype(np.float32),
            std_uS=None if std is None else std.astype(np.float32),
            times_s=np.asarray(timed, dtype=np.float64) if timed else None,
            mean_by_time_uS=(
                np.asarray([b[0] for b in bursts[: len(timed)]], dtype=np.float32)
                if timed
                else None
            ),
            std_by_time_uS=(
                np.asarray([b[1] for b in bursts[: len(timed)]], dtype=np.float32)
                if timed
                else None
            ),
        )
    )
    count: np.ndarray  # bin counts (integers) once measured
    g = rel = count = np.zeros(0)
    if mean is not None and std is not None:
        which = conductance_bins(mean, bins)
        count = np.bincount(which, minlength=bins)
        g = np.bincount(which, weights=mean, minlength=bins) / np.maximum(count, 1)
        rel = np.bincount(which, weights=std / mean, minlength=bins) / np.maximum(count, 1)
    return ReadNoise(g, rel, count, len(samples), run.status, time.perf_counter() - started)


def _settle(chip: Chip, settle_s: float, clock: ChipClock | None) -> Callable[[], None]:
    """A wait of ``settle_s`` on ``clock`` (the chip's own if None); nothing for 0."""
    if not (np.isfinite(settle_s) and settle_s >= 0):
        raise ValueError(f"settle_s = {settle_s} must be a time ≥ 0 s")
    if settle_s == 0:
        return lambda: None
    waiting = clock if clock is not None else ChipClock(chip)
    return lambda: waiting.wait(settle_s)


def conductance_bins(g_uS: np.ndarray, bins: int) -> np.ndarray:
    """Each device's bin (0…bins−1) among ``bins`` conductance bins of equal device count."""
    edges = np.quantile(g_uS, np.linspace(0, 1, bins + 1))
    return np.clip(np.searchsorted(edges, g_uS, side="right") - 1, 0, bins - 1)


def _int32(addresses: np.ndarray) -> np.ndarray:
    """Device addresses as stored: int32 (a tile holds far fewer than 2³¹ devices)."""
    return np.asarray(addresses, dtype=np.int32)
