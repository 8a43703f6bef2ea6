"""The networks ``pcm-hil infer`` puts on chips: a bundled one (``--network mlp|cnn|resnet``)
or a lab's own torch model (``--model pkg.module:factory [--weights model.pt] --data
pkg.module:function``).

``--model`` names a function (or class) returning a ``torch.nn.Module``; ``--weights`` a
``state_dict`` saved with ``torch.save`` (loaded with ``weights_only=True``: no code runs);
``--data`` a function returning ``(x_calibration, y_calibration, x_test, y_test)`` — or
``(x_test, y_test)``, of which the first ``--calibration`` images then calibrate (input
ranges, batch norm) and only the rest are tested. The module is imported from the current
directory or the installed packages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

import numpy as np

from pcm_hil.cli.options import positive_int

#: Bundled networks: the numpy MLP and CNN, and the torch ResNet (the ``torch`` extra).
NETWORKS = ("mlp", "cnn", "resnet")
#: Calibration images taken from a two-part ``--data`` (the rest are tested).
CALIBRATION_IMAGES = 512


def add_model_options(infer: argparse.ArgumentParser) -> None:
    """``--network``, ``--model``, ``--weights``, ``--data``, ``--calibration``."""
    infer.add_argument(
        "--network",
        choices=NETWORKS,
        default="mlp",
        help="bundled network for the digits: a multilayer perceptron, a small convolutional "
        "one, or a ResNet with batch norm in torch (needs the torch extra)",
    )
    infer.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        default=None,
        help="your own torch model instead: a function or class of an importable module "
        "returning a torch.nn.Module (needs the torch extra and --data)",
    )
    infer.add_argument(
        "--weights",
        metavar="FILE",
        default=None,
        help="a state_dict for --model, saved with torch.save (default: as the factory made it)",
    )
    infer.add_argument(
        "--data",
        metavar="MODULE:FUNCTION",
        default=None,
        help="for --model: a function returning (x_calibration, y_calibration, x_test, "
        "y_test) or (x_test, y_test)",
    )
    infer.add_argument(
        "--calibration",
        type=positive_int,
        default=CALIBRATION_IMAGES,
        help="with a two-part --data: the first images, used to calibrate and not tested",
    )


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse inconsistent options before anything runs (one line each)."""
    if args.model is None and (args.weights is not None or args.data is not None):
        raise ValueError("--weights and --data go with --model")
    if args.model is not None and args.data is None:
        raise ValueError("--model needs --data MODULE:FUNCTION (the images to test it on)")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise ValueError(f"--weights {args.weights}: no such file")
    if args.model is not None or args.network == "resnet":
        require_torch("--model" if args.model is not None else "--network resnet")


def require_torch(option: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"{option} needs PyTorch: pip install 'pcm-hil[torch]' (a CPU build is enough)"
        ) from None
    return torch


def load_object(spec: str, option: str) -> Any:
    """``pkg.module:name`` → the object, from the current directory or installed packages."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise ValueError(f"{option} {spec!r}: expected MODULE:NAME, e.g. mylab.models:resnet")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module's own SyntaxError, NameError, …
        raise ValueError(
            f"{option} {spec!r}: cannot import {module_name} ({_first_line(error)})"
        ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{option} {spec!r}: {module_name} has no {name}") from None


def lab_model(args: argparse.Namespace) -> tuple[dict[str, Any], tuple, float, dict]:
    """The ``--model`` to put on chips: (networks by name, data, software accuracy, what to
    report of it)."""
    torch = require_torch("--model")
    from pcm_hil.torch.network import TorchNetwork
    from pcm_hil.torch.training import accuracy

    factory = load_object(args.model, "--model")
    model = _call(factory, f"--model {args.model}")
    if not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"--model {args.model}: returned {type(model).__name__}, not a torch.nn.Module"
        )
    if args.weights is not None:
        try:
            state = torch.load(args.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # a file that is no state_dict, or one of another model
            raise ValueError(f"--weights {args.weights}: {str(error).splitlines()[0]}") from None
    model.eval()
    data = lab_data(args)
    try:
        fp = accuracy(model, data[2], data[3])
    except Exception as error:
        raise ValueError(
            f"--model {args.model} does not take --data {args.data}'s inputs of shape "
            f"{tuple(data[2].shape)} ({_first_line(error)})"
        ) from None
    about = {"model": args.model, "weights": args.weights, "data": args.data}
    return {"model": TorchNetwork(model)}, data, fp, about


def lab_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``--data``'s arrays as (x_calibration, y_calibration, x_test, y_test)."""
    found = _call(load_object(args.data, "--data"), f"--data {args.data}")
    if not isinstance(found, (tuple, list)):
        raise ValueError(
            f"--data {args.data}: returned {type(found).__name__}, not (x_calibration, "
            "y_calibration, x_test, y_test) or (x_test, y_test)"
        )
    parts = [np.asarray(part.numpy() if hasattr(part, "numpy") else part) for part in found]
    if len(parts) == 2:
        x, y = parts
        if len(x) <= args.calibration:
            raise ValueError(
                f"--data {args.data}: {len(x)} images, not more than --calibration "
                f"{args.calibration}"
            )
        parts = [
            x[: args.calibration],
            y[: args.calibration],
            x[args.calibration :],
            y[args.calibration :],
        ]
    if (
        len(parts) != 4
        or len(parts[2]) != len(parts[3])
        or len(parts[0]) != len(parts[1])
        or parts[1].ndim != 1
        or parts[3].ndim != 1
    ):
        raise ValueError(
            f"--data {args.data}: expected (x_calibration, y_calibration, x_test, y_test) or "
            "(x_test, y_test) of matching lengths, labels as class numbers"
        )
    return parts[0], parts[1], parts[2], parts[3]


def _call(function: Any, what: str) -> Any:
    """``function()``, an error in the lab's code turned into one line naming the option."""
    try:
        return function()
    except Exception as error:
        raise ValueError(f"{what}: {type(error).__name__}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def bundled(args: argparse.Namespace, data) -> tuple[dict[str, Any], float, dict]:
    """The bundled network trained in software, plainly and noise-aware: (networks by name,
    software accuracy of the plain one, what to report)."""
    from pcm_hil.analog.recipes import NOISE_ETA, trained

    if args.network == "resnet":
        require_torch("--network resnet")
        from pcm_hil.torch.network import TorchNetwork
        from pcm_hil.torch.training import accuracy
        from pcm_hil.torch.zoo import trained_resnet

        plain = trained_resnet(data, seed=args.seed)
        aware = trained_resnet(data, noise_eta=NOISE_ETA, seed=args.seed)
        fp = accuracy(plain, data[2], data[3])
        about = {"noise_aware_fp_accuracy": accuracy(aware, data[2], data[3])}
        return {"plain": TorchNetwork(plain), "noise-aware": TorchNetwork(aware)}, fp, about
    numpy_plain = trained(args.network, data, seed=args.seed)
    numpy_aware = trained(args.network, data, noise_eta=NOISE_ETA, seed=args.seed)
    fp = numpy_plain.accuracy(data[2], data[3])
    about = {"noise_aware_fp_accuracy": numpy_aware.accuracy(data[2], data[3])}
    return {"plain": numpy_plain, "noise-aware": numpy_aware}, fp, about
