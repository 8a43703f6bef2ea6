"""The built-in functions a sweep point runs (``function = "program"`` or ``"infer"``), and
how a ``"module:function"`` of a lab's own is found.

A point function takes the point's parameters (a dict) and its seed, and returns a dict of
numbers or lists of numbers. It must depend on nothing else: a point may run on any worker,
in any order, again after a worker died. The built-ins open an embedded emulator of their
own (``emulator?profile=…&seed=…``, the device model file ``model`` if given).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pcm_hil.analog.inference import TIMES_S, evaluate
from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.analog.recipes import NOISE_ETA, trained
from pcm_hil.drivers import PcmChip
from pcm_hil.nn.data import load_digits_split
from pcm_hil.procedures.program import (
    SETTLE_S,
    TOLERANCE_REL,
    TOLERANCE_US,
    level_targets,
    program_and_verify,
)
from pcm_hil.procedures.strategies import AmplitudeSearch, PartialSetSteps
from pcm_hil.targets.clock import ChipClock

PointFunction = Callable[[Mapping[str, Any], int], dict[str, Any]]

#: Where the chip of a point comes from: its seed, unless the point names one.
CHIP_SEED_BOUND = 2**31


#: The chips a worker holds: ``name=resource`` pairs separated by ``;`` (set where the worker
#: starts, beside ``dask worker … --resources chip-NAME=1``).
CHIPS_VARIABLE = "PCM_HIL_CHIPS"


def chip_resource_name(chip: str) -> str:
    """The Dask worker resource of the chip named ``chip``: ``chip-<name>``."""
    return f"chip-{chip}"


def held_chips(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The chips this worker holds, name → resource string (``$PCM_HIL_CHIPS``)."""
    text = (os.environ if environ is None else environ).get(CHIPS_VARIABLE, "")
    chips = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, equals, resource = entry.partition("=")
        if not equals or not name.strip() or not resource.strip():
            raise ValueError(f"${CHIPS_VARIABLE}: {entry!r} is not name=resource")
        chips[name.strip()] = resource.strip()
    return chips


def emulator_resource(parameters: Mapping[str, Any], seed: int) -> str:
    """The chip a built-in point runs on: the one named ``chip`` that this worker holds
    (``held_chips``; the sweep pins such points to its workers), else an embedded emulator of
    ``profile`` (default ``small``), ``chip_seed`` (default: from the point's seed) and
    ``model`` (a model file) if given."""
    if "chip" in parameters:
        name = str(parameters["chip"])
        chips = held_chips()
        if name not in chips:
            raise ValueError(
                f"this worker holds no chip {name!r} (${CHIPS_VARIABLE}: {sorted(chips)})"
            )
        return chips[name]
    chip_seed = int(parameters.get("chip_seed", seed % CHIP_SEED_BOUND))
    resource = f"emulator?profile={parameters.get('profile', 'small')}&seed={chip_seed}"
    if parameters.get("model"):
        resource += f"&model={parameters['model']}"
    return resource


def program_point(parameters: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Program-and-verify ``devices`` (4096) of tile 0 to ``levels`` (16) levels, with
    ``tolerance_uS``, ``tolerance_rel`` (0: absolute), ``settle_s`` and ``strategy``
    (``amplitude`` or ``partial-set``): its summary's figures, per level as lists."""
    with PcmChip.open(emulator_resource(parameters, seed)) as chip:
        devices = min(int(parameters.get("devices", 4096)), chip.config.devices_per_tile)
        levels = int(parameters.get("levels", 16))
        targets = level_targets(levels, chip.config.g_max_uS)[np.arange(devices) % levels]
        strategy = {"amplitude": AmplitudeSearch, "partial-set": PartialSetSteps}[
            str(parameters.get("strategy", "amplitude"))
        ]()
        result = program_and_verify(
            chip,
            0,
            np.arange(devices),
            targets.astype(np.float32),
            strategy=strategy,
            tolerance_uS=float(parameters.get("tolerance_uS", TOLERANCE_US)),
            tolerance_rel=float(parameters.get("tolerance_rel", TOLERANCE_REL)) or None,
            settle_s=float(parameters.get("settle_s", SETTLE_S)),
            clock=ChipClock(chip),
        )
        summary = result.summary(chip.config.g_max_uS)
    found: dict[str, Any] = {
        k: summary[k]
        for k in (
            "converged_fraction",
            "stuck_devices",
            "iterations_mean",
            "error_mean_uS",
            "error_std_uS",
            "read_noise_uS",
            "programmed_spread_uS",
        )
    }
    per_level = ("target_uS", "programmed_spread_uS", "error_mean_uS", "published_sigma_uS")
    for k in per_level:
        found[f"level_{k}"] = [level[k] for level in summary["levels"]]
    found["dims"] = {f"level_{k}": "level" for k in per_level}
    return found


@functools.cache
def _network(name: str, weights: str):
    """The bundled network trained on the digits (plain or noise-aware), once per process."""
    data = load_digits_split()
    return trained(name, data, noise_eta=NOISE_ETA if weights == "noise-aware" else 0.0), data


def infer_point(parameters: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The bundled ``network`` (``mlp`` or ``cnn``) with ``weights`` (``plain`` or
    ``noise-aware``) programmed on one chip, its test accuracy at 1 s, 1 h, 1 d, 30 d and
    1 y after programming, without compensation and with GDC."""
    network, (x_train, _y, x_test, y_test) = _network(
        str(parameters.get("network", "mlp")), str(parameters.get("weights", "noise-aware"))
    )
    found: dict[str, Any] = {"t_s": list(TIMES_S), "accuracy_none": [], "accuracy_gdc": []}
    found["dims"] = dict.fromkeys(("t_s", "accuracy_none", "accuracy_gdc"), "time")
    with PcmChip.open(emulator_resource(parameters, seed)) as chip:
        analog = AnalogNetwork(chip, network)
        analog.calibrate_inputs(x_train[:512])
        analog.program(settle_s=float(parameters.get("settle_s", SETTLE_S)))
        clock = ChipClock(chip)
        programmed_at = clock.now()
        for t in TIMES_S:
            clock.wait_until(programmed_at + t)
            analog.no_compensation()
            found["accuracy_none"].append(evaluate(analog, x_test, y_test))
            analog.compensate_drift()
            found["accuracy_gdc"].append(evaluate(analog, x_test, y_test))
    return found


BUILT_IN: dict[str, PointFunction] = {"program": program_point, "infer": infer_point}


def point_function(name: str) -> PointFunction:
    """A built-in by name, or ``module:function`` imported (ValueError, one line, if neither)."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module, colon, attribute = name.partition(":")
    if not colon:
        raise ValueError(
            f"sweep function {name!r}: a built-in ({', '.join(BUILT_IN)}) or 'module:function'"
        )
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"sweep function {name!r} cannot be imported: {error}") from None
    if not callable(found):
        raise ValueError(f"sweep function {name!r} is not callable")
    return found
