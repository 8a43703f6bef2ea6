"""Point functions of a lab's own, for tests/test_sweep.py (``tests.sweep_points:…``): the
workers import them by name, as they would a lab's module."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def measured(parameters, seed):
    """What a point measures: numbers drawn from its seed, shifted by its parameters."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(float(parameters["x"]), 1.0, 64)
    return {
        "mean": float(draws.mean()),
        "first": float(draws[0]),
        "trace": draws[:4].tolist(),
        "dims": {"trace": "sample"},
    }


def dies_once(parameters, seed):
    """``measured``, but the first attempt at point x = ``kill_at`` kills its worker process
    (a marker file under ``marker`` says it happened): Dask must run it again elsewhere."""
    marker = Path(str(parameters["marker"])) / "killed"
    if float(parameters["x"]) == float(parameters["kill_at"]) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return measured(parameters, seed)


def fails_at_two(parameters, seed):
    """``measured``, except at x = 2, where the point's own code fails."""
    if float(parameters["x"]) == 2.0:
        return {"mean": 1 / 0}
    return measured(parameters, seed)
