"""The documents of device characterization (``procedures.characterize``): the programming
curve, the accumulation curve and read noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class CurvePoint(Step):
    """One point of a characterization curve: mean and std of the devices' conductance, µS,
    at the swept value ``x`` (named ``x_name``)."""

    x_name: ClassVar[str]
    mean_uS: float
    std_uS: float

    @property
    def x(self) -> float:
        return float(getattr(self, self.x_name))


@dataclass(frozen=True)
class ProgrammingCurveStart(Start):
    procedure: ClassVar[str] = "programming-curve"
    name: ClassVar[str] = "programming-curve.start"
    tile: int
    devices: int
    width_ns: float


@dataclass(frozen=True)
class ProgrammingCurvePoint(CurvePoint):
    """Conductance after one melt-quench pulse of ``current_uA``."""

    procedure: ClassVar[str] = "programming-curve"
    name: ClassVar[str] = "programming-curve.point"
    x_name: ClassVar[str] = "current_uA"
    current_uA: float


@dataclass(frozen=True, kw_only=True)
class ProgrammingCurveEnd(End):
    procedure: ClassVar[str] = "programming-curve"
    name: ClassVar[str] = "programming-curve.end"
    points: int | None = None


@dataclass(frozen=True)
class AccumulationStart(Start):
    procedure: ClassVar[str] = "accumulation"
    name: ClassVar[str] = "accumulation.start"
    tile: int
    devices: int
    amplitude_uA: float
    width_ns: float


@dataclass(frozen=True)
class AccumulationPoint(CurvePoint):
    """Conductance after ``pulses`` partial-SET pulses since a RESET (0: the RESET state)."""

    procedure: ClassVar[str] = "accumulation"
    name: ClassVar[str] = "accumulation.point"
    x_name: ClassVar[str] = "pulses"
    pulses: int


@dataclass(frozen=True, kw_only=True)
class AccumulationEnd(End):
    procedure: ClassVar[str] = "accumulation"
    name: ClassVar[str] = "accumulation.end"
    points: int | None = None


@dataclass(frozen=True)
class ReadNoiseStart(Start):
    procedure: ClassVar[str] = "read-noise"
    name: ClassVar[str] = "read-noise.start"
    tile: int
    devices: int
    reads: int


@dataclass(frozen=True)
class ReadNoiseRead(Step):
    """One read of every device taken (``read`` counts from 1)."""

    procedure: ClassVar[str] = "read-noise"
    name: ClassVar[str] = "read-noise.read"
    read: int


@dataclass(frozen=True, kw_only=True)
class ReadNoiseEnd(End):
    procedure: ClassVar[str] = "read-noise"
    name: ClassVar[str] = "read-noise.end"
    reads: int | None = None
