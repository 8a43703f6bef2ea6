"""The documents of a sweep (``pcm_hil.sweep``): the grid, then one document per point as it
completes, in the order they complete."""

from __future__ import annotations

from dataclasses import dataclass

from pcm_hil.documents.base import End, Start, Step


@dataclass(frozen=True)
class SweepStart(Start, name="sweep.start"):
    """A sweep of ``function`` over the grid ``axes`` (axis name → its values, in order; the
    points are their product, the last axis fastest) with ``fixed`` parameters the same for
    every point; ``seed`` seeds every point (``pcm_hil.sweep.spec.point_seed``).
    ``resumed_from_run``: the killed sweep whose completed points this one does not repeat."""

    function: str
    axes: dict
    fixed: dict
    seed: int
    points: int
    resumed_from_run: int | None = None


@dataclass(frozen=True)
class SweepPoint(Step, name="sweep.point"):
    """Point ``index`` of the grid (its ``parameters``, axis name → value) and what its
    function returned (``result``: name → a number, or a list of numbers; ``dims``: the
    dimension of each list, when the function names them), with the worker that computed it
    and the seconds it took there."""

    index: int
    parameters: dict
    result: dict
    worker: str = ""
    seconds: float = 0.0
    dims: dict | None = None
    """The dimension each list of ``result`` runs along (result name → dimension name)."""


@dataclass(frozen=True, kw_only=True)
class SweepEnd(End, name="sweep.end"):
    """How many points this run computed (``points_done``), and how many it took over from
    the run it resumed (``points_resumed``)."""

    points_done: int | None = None
    points_resumed: int | None = None
