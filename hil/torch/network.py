"""A torch model seen as pcm-hil's numpy networks are seen (``pcm_hil.nn.Network``), so that
the one chip mapping (``pcm_hil.analog.AnalogNetwork``: tiles, differential pairs, scales,
stuck devices, drift compensation) and the one in-situ trainer (``pcm_hil.analog.insitu``)
serve both front ends.

``TorchNetwork(model)`` copies the model, replaces its ``nn.Linear`` and ``nn.Conv2d`` layers
by chip layers (``layers``) and offers what the mapping and the experiments call:
``weight_layers()`` (each with ``.weight``, inputs × outputs), ``forward(x, matmul=…)`` with
numpy in and out, ``accuracy``, ``batchnorm_layers`` and ``recalibrate_batchnorm`` (AdaBS:
the statistics re-estimated through the chip's products). Everything but the weight layers'
products runs in torch, in the model's own dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from pcm_hil.torch.layers import chip_layers, swap_layers

#: ``matmul(k, x2d) -> x2d @ W_k`` for weight layer k (numpy; the chip's products in float32).
Matmul = Callable[[int, np.ndarray], np.ndarray]


class WeightLayer:
    """One weight layer as the mapping sees it: ``weight`` (inputs × outputs, float64)."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight
        self.grad_weight = np.zeros_like(weight)


class TorchNetwork:
    """A torch model with chip layers, behind the numpy networks' interface (see module)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).cpu()
        if swap_layers(self.model) == 0:
            raise ValueError("the model has no nn.Linear or nn.Conv2d layer to put on the chip")
        first = 0
        for layer in chip_layers(self.model):  # modules() yields a shared layer once
            first = layer.bind(self, first)
        self.layers = [
            WeightLayer(m) for layer in chip_layers(self.model) for m in layer.matrices()
        ]
        self.matmul: Matmul | None = None
        self.matmul_t: Matmul | None = None
        self.training_on_chip = False
        self.model.eval()

    # --- what the chip layers call ---------------------------------------------------------------

    def product(self, k: int, x2d: np.ndarray) -> np.ndarray:
        """x2d @ W_k: through the hook of the pass, else in software."""
        if self.matmul is None:
            return x2d @ self.layers[k].weight
        return self.matmul(k, x2d)

    def product_t(self, k: int, g2d: np.ndarray) -> np.ndarray:
        """g2d @ W_kᵀ: through the transposed hook of the pass, else in software."""
        if self.matmul_t is None:
            return g2d @ self.layers[k].weight.T
        return self.matmul_t(k, g2d)

    def weight_grad(self, k: int, grad: np.ndarray) -> None:
        """Add to the gradient of W_k from a backward pass (summed over the batch; a layer
        used twice gets both)."""
        self.layers[k].grad_weight = self.layers[k].grad_weight + grad

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.grad_weight = np.zeros_like(layer.weight)

    # --- the numpy networks' interface -----------------------------------------------------------

    def weight_layers(self) -> list[WeightLayer]:
        return self.layers

    def batchnorm_layers(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tensor(self, x: Any) -> torch.Tensor:
        """``x`` as a tensor of the model's dtype."""
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=self.dtype)

    def forward(
        self,
        x: np.ndarray,
        *,
        matmul: Matmul | None = None,
        training: bool = False,
        bn_mode: str = "running",
        **_ignored: Any,
    ) -> np.ndarray:
        """The model's output for ``x`` (numpy), each weight layer's product through
        ``matmul`` (None: software). ``bn_mode="update"``: batch norm normalizes with each
        batch's statistics and accumulates them (``recalibrate_batchnorm``)."""
        with torch.no_grad():
            return self.run(self.tensor(x), matmul, bn_update=bn_mode == "update").numpy()

    def run(
        self,
        x: torch.Tensor,
        matmul: Matmul | None,
        *,
        bn_update: bool = False,
        train: bool = False,
    ) -> torch.Tensor:
        """The model on tensor ``x``, products through ``matmul``; autograd as the caller has
        it. ``train``: the whole model in training mode (batch statistics, dropout); else
        only the batch norms, and only for ``bn_update``."""
        previous = self.matmul
        self.matmul = matmul
        self.model.train(train)
        for layer in self.batchnorm_layers():
            layer.train(bn_update or train)
        try:
            return self.model(x)
        finally:
            self.matmul = previous
            self.model.eval()

    def logits(
        self, x: np.ndarray, *, batch: int = 256, matmul: Matmul | None = None
    ) -> np.ndarray:
        return np.concatenate(
            [self.forward(x[i : i + batch], matmul=matmul) for i in range(0, len(x), batch)]
        )

    def accuracy(
        self, x: np.ndarray, y: np.ndarray, *, batch: int = 256, matmul: Matmul | None = None
    ) -> float:
        """Fraction (0…1) of ``x`` classified as ``y`` (the largest output)."""
        predicted = self.logits(x, batch=batch, matmul=matmul).argmax(axis=1)
        return float(np.mean(predicted == np.asarray(y)))

    def recalibrate_batchnorm(
        self, x: np.ndarray, *, batch: int = 256, matmul: Matmul | None = None
    ) -> None:
        """AdaBS: every batch norm's running statistics recomputed from ``x``, with the
        products through ``matmul`` (the chip's): reset, then a cumulative average over the
        batches of ``x`` in order (torch's ``momentum=None``); the momenta are restored."""
        layers = self.batchnorm_layers()
        momenta = [layer.momentum for layer in layers]
        try:
            for layer in layers:
                layer.reset_running_stats()
                layer.momentum = None
            for i in range(0, len(x), batch):
                self.forward(x[i : i + batch], matmul=matmul, bn_mode="update")
        finally:
            for layer, momentum in zip(layers, momenta, strict=True):
                layer.momentum = momentum
