"""The documents of networks on the chip (``pcm_hil.analog``): the inference experiment
under drift and in-situ training."""

from __future__ import annotations

from dataclasses import dataclass

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class InferStart(Start, name="infer.start"):
    """``chips`` chips, each programmed once per set of ``weights``, classified at each of
    ``times_s`` after programming."""

    chips: int
    weights: list[str]
    times_s: list[float]


@dataclass(frozen=True)
class InferAccuracy(Step, name="infer.accuracy"):
    """Test accuracy (0…1) with ``weights``, ``t_s`` after programming, per compensation
    (``none``, ``gdc``, ``gdc+bn``), on chip number ``chip`` of the experiment (None in runs
    recorded before pcm-hil 0.2)."""

    t_s: float
    weights: str
    accuracy: dict[str, float]
    chip: int | None = None


@dataclass(frozen=True, kw_only=True)
class InferEnd(End, name="infer.end"):
    points: int | None = None


@dataclass(frozen=True)
class TrainStart(Start, name="train.start"):
    epochs: int
    lr: float
    batch: int
    epsilon_uS: float


@dataclass(frozen=True)
class TrainEpoch(Step, name="train.epoch"):
    """After epoch ``epoch``: the pulses applied so far and the test accuracy (0…1), if a
    test set was given."""

    epoch: int
    pulses_applied: int
    test_accuracy: float | None = None


@dataclass(frozen=True, kw_only=True)
class TrainEnd(End, name="train.end"):
    pulses_applied: int | None = None
