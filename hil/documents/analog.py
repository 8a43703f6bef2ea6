"""The documents of networks on the chip (``pcm_hil.analog``): the inference experiment
under drift and in-situ training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class InferStart(Start, name="infer.start"):
    """``chips`` chips, each programmed once per set of ``weights``, classified at each of
    ``times_s`` after programming; ``fp_accuracy``: the same network's test accuracy in
    floating point (0…1), the software baseline (version 2)."""

    version: ClassVar[int] = 2

    chips: int
    weights: list[str]
    times_s: list[float]
    fp_accuracy: float | None = None


@dataclass(frozen=True)
class InferAccuracy(Step, name="infer.accuracy"):
    """Test accuracy (0…1) with ``weights``, ``t_s`` after programming, per compensation
    (``none``, ``gdc``, ``gdc+bn``), on chip number ``chip`` of the experiment (None in runs
    recorded before pcm-hil 0.2)."""

    t_s: float
    weights: str
    accuracy: dict[str, float]
    chip: int | None = None


@dataclass(frozen=True)
class InferChip(Step, name="infer.chip"):
    """Chip number ``chip`` of the experiment, opened to be programmed with ``weights``:
    what it reported of itself (``identity``: manufacturer, model, serial, firmware;
    ``config``: its geometry and limits) and the resource it was opened as (None when the
    chip does not say) — every accuracy after it until the next is measured on it."""

    chip: int
    weights: str
    identity: dict
    config: dict
    resource: str | None = None


@dataclass(frozen=True, kw_only=True)
class InferEnd(End, name="infer.end"):
    points: int | None = None


@dataclass(frozen=True)
class TrainStart(Start, name="train.start"):
    """``epochs`` of SGD at learning rate ``lr`` (the first epoch's), ``batch`` images per
    update, pulses of ``epsilon_uS`` µS; ``fp_accuracy``: the same network trained in
    floating point, its test accuracy (0…1), the reference (version 2)."""

    version: ClassVar[int] = 2

    epochs: int
    lr: float
    batch: int
    epsilon_uS: float
    fp_accuracy: float | None = None


@dataclass(frozen=True)
class TrainEpoch(Step, name="train.epoch"):
    """After epoch ``epoch``: the pulses applied so far, the test accuracy (0…1), if a
    test set was given, and the pairs refreshed so far (version 2)."""

    version: ClassVar[int] = 2

    epoch: int
    pulses_applied: int
    test_accuracy: float | None = None
    refreshed_pairs: int | None = None


@dataclass(frozen=True, kw_only=True)
class TrainEnd(End, name="train.end"):
    pulses_applied: int | None = None
