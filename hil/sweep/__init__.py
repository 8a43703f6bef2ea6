"""Sweeps over chips, device models and settings, as tasks on Dask distributed: ``SweepSpec``
(``spec``), ``run_sweep`` (``run``), the built-in point functions (``functions``) and
``load_sweep`` (``data``)."""

from pcm_hil.sweep.data import load_sweep
from pcm_hil.sweep.run import SweepResult, run_sweep
from pcm_hil.sweep.spec import SweepSpec, SweepSpecError, load_spec, point_seed

__all__ = [
    "SweepResult",
    "SweepSpec",
    "SweepSpecError",
    "load_spec",
    "load_sweep",
    "point_seed",
    "run_sweep",
]
