"""In-situ mixed-precision training of a torch model with its weights on the chip.

The same trainer as the numpy networks' (``pcm_hil.analog.insitu.InSituTrainer``: χ, pulses,
refresh, programming, the drive) with torch for everything else: each batch's forward
products run on the chip and its backward products on the chip's transposed MVM, inside
torch's autograd (``layers.ChipProduct``); the weight gradients (xᵀ·g, in software) go to
χ and become partial-SET pulses; every other parameter (biases, batch norm) is updated by
SGD in torch. ::

    from pcm_hil.torch.insitu import ChipTrainer

    trainer = ChipTrainer(model, chip)                 # a copy of the model, on the chip
    result = trainer.train(x_train, y_train, epochs=20, lr=0.2, batch=10, seed=0,
                           x_test=x_test, y_test=y_test, schedule="linear")
    trainer.accuracy(x_test, y_test)                   # on the chip
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from pcm_hil.analog.insitu import InSituTrainer, TrainingResult, UpdateRule
from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.documents.events import Listener
from pcm_hil.torch.network import TorchNetwork


class ChipTrainer:
    """Trains a copy of ``model`` with its Linear and Conv2d weights on ``chip``."""

    def __init__(self, model: nn.Module, chip: Any, rule: UpdateRule | None = None) -> None:
        self.network = TorchNetwork(model)
        self.analog = AnalogNetwork(chip, self.network)
        self.trainer = InSituTrainer(self.analog, rule)
        self.digital = [
            p
            for name, p in self.network.model.named_parameters()
            if not name.endswith("weight") or not _on_chip(self.network.model, name)
        ]

    @property
    def model(self) -> nn.Module:
        return self.network.model

    def step(self, xb: np.ndarray, yb: np.ndarray, lr: float) -> None:
        """One batch: forward and backward on the chip, the digital parameters by SGD, the
        weight gradients into χ and pulses."""
        network = self.network
        network.zero_grad()
        for p in self.digital:
            p.grad = None
        network.matmul_t = self.trainer.matmul_t
        network.training_on_chip = True
        try:
            logits = network.run(network.tensor(xb), self.trainer.matmul, train=True)
            loss = nn.functional.cross_entropy(logits, torch.as_tensor(yb, dtype=torch.long))
            loss.backward()
        finally:
            network.matmul_t = None
            network.training_on_chip = False
        with torch.no_grad():
            for p in self.digital:
                if p.grad is not None:
                    p.sub_(lr * p.grad)
        self.trainer.update([layer.grad_weight for layer in network.weight_layers()], lr)

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        lr: float,
        batch: int = 10,
        seed: int = 0,
        schedule: str = "constant",
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        listeners: Iterable[Listener] = (),
        fp_accuracy: float | None = None,
    ) -> TrainingResult:
        """Program the initial weights, then SGD on cross-entropy with every product on the
        chip (``InSituTrainer.train``: one step document per epoch, with the test accuracy
        on the chip when a test set is given); shuffles from ``seed``."""
        self.analog.calibrate_inputs(x)
        self.trainer.program_initial_weights()
        return self.trainer.train(
            x,
            y,
            epochs=epochs,
            lr=lr,
            batch=batch,
            rng=np.random.default_rng([seed, 1]),
            schedule=schedule,
            x_test=x_test,
            y_test=y_test,
            listeners=listeners,
            fp_accuracy=fp_accuracy,
            step=self.step,
        )

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction (0…1) classified right, every product on the chip."""
        return self.network.accuracy(x, y, matmul=self.trainer.matmul)


def _on_chip(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` is the weight of a chip layer."""
    from pcm_hil.torch.layers import _ChipLayer

    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return isinstance(owner, _ChipLayer)
