"""The documents of the demo (``pcm_hil.demo``): its three stages, around the documents of
the procedures it runs."""

from __future__ import annotations

from dataclasses import dataclass

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class DemoStart(Start, name="demo.start"):
    network: str
    chips: int


@dataclass(frozen=True)
class DemoStage(Step, name="demo.stage"):
    """A stage done: ``program`` (with its converged fraction), ``drift`` (with its number
    of levels) or ``infer`` (with the software accuracy)."""

    stage: str
    converged_fraction: float | None = None
    levels: int | None = None
    fp_accuracy: float | None = None


@dataclass(frozen=True, kw_only=True)
class DemoEnd(End, name="demo.end"):
    elapsed_s: float | None = None
