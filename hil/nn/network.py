"""Network: a sequence of layers, with every weight layer's product through a pluggable hook.

The k-th weight layer (Dense and Conv2D, counted in order from 0; ``weight_layers()[k]``)
computes ``x2d @ W_k`` with ``W_k`` its 2-D weight (inputs, outputs). ``forward(matmul=...)``
sends that product to ``matmul(k, x2d)`` — an analog chip's MVM, for instance — and
``backward(matmul_t=...)`` sends the transposed product ``g2d @ W_k.T`` to ``matmul_t(k, g2d)``.
Biases, activations, batch norm and pooling stay in software.

Noise-aware training (Joshi et al., Nat. Commun. 11, 2473 (2020)): with ``noise_eta`` > 0 each
training forward uses ``W + eta·max|W|·N(0, 1)``, drawn afresh per batch and per layer from
the given generator; the backward goes through the same noisy weights and the gradient is
applied to the clean ones.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from pcm_hil.nn.layers import BatchNorm, Context, Conv2D, Dense, Layer

MatmulHook = Callable[[int, np.ndarray], np.ndarray]
"""``hook(k, x2d)`` → ``x2d @ W_k`` (forward) or ``hook(k, g2d)`` → ``g2d @ W_k.T`` (backward)."""

FORMAT_VERSION = 1


def perturb_weight(weight: np.ndarray, eta: float, rng: np.random.Generator) -> np.ndarray:
    """``weight + eta·max|weight|·N(0, 1)`` elementwise, same shape; a new array."""
    scale = eta * float(np.max(np.abs(weight))) if weight.size else 0.0
    return weight + scale * rng.standard_normal(weight.shape)


class Network:
    """Layers applied in order. ``forward`` gives logits (N, classes) for inputs (N, ...)."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)
        self._contexts: list[Context] | None = None

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Network([\n{inner}\n])"

    def weight_layers(self) -> list[Dense | Conv2D]:
        """The Dense and Conv2D layers in order: ``weight_layers()[k]`` is hook index k."""
        return [layer for layer in self.layers if isinstance(layer, Dense | Conv2D)]

    def batchnorm_layers(self) -> list[BatchNorm]:
        return [layer for layer in self.layers if isinstance(layer, BatchNorm)]

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Trainable ``(name, parameter, gradient)`` triples of all layers, in layer order;
        names are ``"{layer index}.{parameter}"``."""
        return [
            (f"{i}.{name}", param, grad)
            for i, layer in enumerate(self.layers)
            for name, param, grad in layer.parameters()
        ]

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def forward(
        self,
        x: np.ndarray,
        *,
        training: bool = False,
        matmul: MatmulHook | None = None,
        noise_eta: float = 0.0,
        rng: np.random.Generator | None = None,
        bn_mode: str = "running",
    ) -> np.ndarray:
        """Logits (N, classes) for x (N, ...).

        ``training``: keep what ``backward`` needs. ``matmul``: ``matmul(k, x2d)`` returns
        ``x2d @ W_k`` for the k-th weight layer, called once per weight layer (None: numpy).
        ``noise_eta`` (training only, needs ``rng``, not with ``matmul``): relative Gaussian
        weight noise. ``bn_mode``: "running", "batch" or "update" (see ``BatchNorm``).
        """
        if noise_eta < 0:
            raise ValueError("noise_eta must be >= 0")
        if noise_eta > 0:
            if not training:
                raise ValueError(
                    "noise_eta is for training; to evaluate with noisy weights pass a matmul hook"
                )
            if rng is None:
                raise ValueError("noise_eta > 0 needs rng")
            if matmul is not None:
                raise ValueError("noise_eta and matmul are exclusive (the hook's product is used)")
        contexts = []
        k = 0
        for layer in self.layers:
            ctx = Context(training=training, bn_mode=bn_mode)
            if isinstance(layer, Dense | Conv2D):
                if matmul is not None:
                    ctx.matmul = partial(matmul, k)
                if noise_eta > 0:
                    assert rng is not None
                    ctx.weight = perturb_weight(layer.weight, noise_eta, rng)
                k += 1
            x = layer.forward(x, ctx)
            contexts.append(ctx)
        if training:
            self._contexts = contexts
        return x

    def backward(
        self,
        grad_logits: np.ndarray,
        *,
        matmul_t: MatmulHook | None = None,
        input_grad: bool = True,
    ) -> np.ndarray | None:
        """Backpropagate dLoss/dlogits (N, classes) through the last ``forward(training=True)``,
        accumulating the parameter gradients; return dLoss/dx (N, ...) (None if not
        ``input_grad``, which spares the layers before the first trainable one).

        ``matmul_t(k, g2d)`` returns ``g2d @ W_k.T`` for the k-th weight layer (None: numpy).
        """
        if self._contexts is None:
            raise RuntimeError("backward needs a preceding forward(training=True)")
        contexts, self._contexts = self._contexts, None  # one backward per forward
        first = 0
        if not input_grad:
            first = next(
                (i for i, la in enumerate(self.layers) if la.parameters()), len(self.layers)
            )
        k = len(self.weight_layers())
        grad: np.ndarray | None = grad_logits
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer, ctx = self.layers[i], contexts[i]
            if isinstance(layer, Dense | Conv2D):
                k -= 1
                if matmul_t is not None:
                    ctx.matmul_t = partial(matmul_t, k)
            ctx.need_input_grad = input_grad or i > first
            assert grad is not None
            grad = layer.backward(grad, ctx)
        return grad if input_grad else None

    def _batched(
        self, x: np.ndarray, batch: int, forward_kwargs: dict[str, Any]
    ) -> list[np.ndarray]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        return [self.forward(x[i : i + batch], **forward_kwargs) for i in range(0, len(x), batch)]

    def logits(self, x: np.ndarray, *, batch: int = 256, **forward_kwargs: Any) -> np.ndarray:
        """``forward`` over x in batches of ``batch``: logits (N, classes)."""
        return np.concatenate(self._batched(x, batch, forward_kwargs))

    def predict(self, x: np.ndarray, *, batch: int = 256, **forward_kwargs: Any) -> np.ndarray:
        """Class indices (N,) of x (N, ...), evaluated in batches of ``batch``."""
        return np.concatenate([z.argmax(axis=1) for z in self._batched(x, batch, forward_kwargs)])

    def accuracy(
        self, x: np.ndarray, y: np.ndarray, *, batch: int = 256, **forward_kwargs: Any
    ) -> float:
        """Fraction (0..1) of x (N, ...) classified as y (N,)."""
        return float(np.mean(self.predict(x, batch=batch, **forward_kwargs) == np.asarray(y)))

    def astype(self, dtype: Any) -> Network:
        """A copy whose parameters and batch-norm statistics are of the floating ``dtype``
        (float32 for the software around a chip's products: its converters give 8 bits, and
        float64 would double the bytes every pooling and batch norm moves)."""
        clone = copy.deepcopy(self)
        for layer in clone.layers:
            for name, value in layer.state().items():
                if np.issubdtype(value.dtype, np.floating):
                    setattr(layer, name, value.astype(dtype))
        return clone

    def reset_batchnorm_stats(self) -> None:
        """Every BatchNorm's running mean to 0, variance to 1, sample count to 0."""
        for layer in self.batchnorm_layers():
            layer.reset_stats()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write architecture, parameters and batch-norm statistics to an .npz (no pickle)."""
        architecture = [{"type": type(la).__name__, "config": la.config()} for la in self.layers]
        arrays = {
            f"layers.{i}.{name}": value
            for i, layer in enumerate(self.layers)
            for name, value in layer.state().items()
        }
        arrays["architecture"] = np.array(json.dumps(architecture))
        arrays["format_version"] = np.array(FORMAT_VERSION)
        with open(path, "wb") as f:
            # allow_pickle given: no key of ``arrays`` can be taken for it (mypy sees that
            # too); False as load() reads, the arrays being numeric or strings
            np.savez(f, allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Network:
        """The network ``save`` wrote, parameters bit for bit."""
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"unsupported network file format {version}")
            layers = []
            for i, spec in enumerate(json.loads(str(data["architecture"]))):
                layer = Layer.types[spec["type"]](**spec["config"])
                prefix = f"layers.{i}."
                layer.load_state(
                    {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}
                )
                layers.append(layer)
        return cls(layers)


def recalibrate_batchnorm(
    network: Network,
    x: np.ndarray,
    batch: int = 256,
    matmul: MatmulHook | None = None,
) -> None:
    """Recompute every BatchNorm's running statistics from calibration inputs x (N, ...).

    Resets the statistics, then runs ``forward(bn_mode="update")`` over x in order, in batches
    of ``batch``, with the given matmul hook (the chip's, typically), accumulating exact
    cumulative statistics: the first BatchNorm ends with the exact mean and population variance
    of its inputs over all of x; later ones see inputs normalised with each batch's statistics,
    as in training. The layers' momentum is restored afterwards.
    """
    layers = network.batchnorm_layers()
    momenta = [layer.momentum for layer in layers]
    network.reset_batchnorm_stats()
    try:
        for layer in layers:
            layer.momentum = None
        for i in range(0, len(x), batch):
            network.forward(x[i : i + batch], matmul=matmul, bn_mode="update")
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
