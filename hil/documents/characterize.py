"""The documents of device characterization (``procedures.characterize``): the programming
curve, the accumulation curve and read noise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class CurvePoint(Step):
    """One point of a characterization curve: mean and std of the devices' conductance, µS,
    at the swept value ``x`` (named ``x_name``); since version 2, every device's read
    (``conductance_uS``, µS, in the start document's order of ``address``)."""

    version: ClassVar[int] = 2
    x_name: ClassVar[str]
    mean_uS: float
    std_uS: float
    conductance_uS: np.ndarray | None = field(default=None, kw_only=True)

    @property
    def x(self) -> float:
        return float(getattr(self, self.x_name))


@dataclass(frozen=True)
class CharacterizationStart(Start):
    """Which devices are characterized: ``devices`` of tile ``tile``; since version 2 their
    addresses (``address``, the order of every per-device array of the run)."""

    version: ClassVar[int] = 2
    tile: int
    devices: int
    address: np.ndarray | None = field(default=None, kw_only=True)


@dataclass(frozen=True, kw_only=True)
class CurveEnd(End):
    """The end of a characterization curve: how many points were measured."""

    points: int | None = None


@dataclass(frozen=True)
class ProgrammingCurveStart(CharacterizationStart, name="programming-curve.start"):
    """Version 3 adds ``reset_uA`` (a RESET pulse before each point's pulse; None: none, the
    devices go from one current to the next) and ``settle_s`` (s from each point's pulse to
    its read)."""

    version: ClassVar[int] = 3
    width_ns: float
    reset_uA: float | None = field(default=None, kw_only=True)
    settle_s: float = field(default=0.0, kw_only=True)


@dataclass(frozen=True)
class ProgrammingCurvePoint(CurvePoint, name="programming-curve.point"):
    """Conductance after one melt-quench pulse of ``current_uA``."""

    x_name: ClassVar[str] = "current_uA"
    current_uA: float


@dataclass(frozen=True, kw_only=True)
class ProgrammingCurveEnd(CurveEnd, name="programming-curve.end"):
    pass


@dataclass(frozen=True)
class AccumulationStart(CharacterizationStart, name="accumulation.start"):
    """Version 3 adds ``settle_s`` (s from each pulse to its read) and ``reset_uA``."""

    version: ClassVar[int] = 3
    amplitude_uA: float
    width_ns: float
    settle_s: float = field(default=0.0, kw_only=True)
    reset_uA: float | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class AccumulationPoint(CurvePoint, name="accumulation.point"):
    """Conductance after ``pulses`` partial-SET pulses since a RESET (0: the RESET state)."""

    x_name: ClassVar[str] = "pulses"
    pulses: int


@dataclass(frozen=True, kw_only=True)
class AccumulationEnd(CurveEnd, name="accumulation.end"):
    pass


@dataclass(frozen=True)
class ReadNoiseStart(CharacterizationStart, name="read-noise.start"):
    reads: int


@dataclass(frozen=True)
class ReadNoiseRead(Step, name="read-noise.read"):
    """One read of every device taken (``read`` counts from 1); since version 2, ``t_s`` after
    the programming pulse when the reads are timed (None when not)."""

    version: ClassVar[int] = 2

    read: int
    t_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class ReadNoiseEnd(End, name="read-noise.end"):
    """How many reads were taken; since version 2, per device, the mean of its (first) reads
    and their std (ddof 1), µS, once there were two reads; and, when the reads were timed,
    ``times_s`` after programming with the mean and std per time and device (times ×
    devices, µS)."""

    version: ClassVar[int] = 2

    reads: int | None = None
    mean_uS: np.ndarray | None = None
    std_uS: np.ndarray | None = None
    times_s: np.ndarray | None = None
    mean_by_time_uS: np.ndarray | None = None
    std_by_time_uS: np.ndarray | None = None
