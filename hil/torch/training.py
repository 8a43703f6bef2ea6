"""Training a torch model for the chip, in software: noise-aware training and a plain
training loop for the digits.

Noise-aware training (Joshi et al., Nature Communications 2020 — the seeds' iso-accuracy
recipe): during training, every ``nn.Linear`` and ``nn.Conv2d`` weight gets relative Gaussian
noise, w + η·max|w|·N(0, 1), drawn anew for each batch; the gradient computed at the noisy
weights updates the clean ones. A network trained so loses less when its weights land on
devices with programming and read noise and drift. η = 0.1 for the small digits networks
(``pcm_hil.analog.recipes.NOISE_ETA``); the seeds used ≈ 0.038 for ResNets on CIFAR.

::

    from pcm_hil.torch.training import weight_noise

    for x, y in batches:
        optimizer.zero_grad()
        with weight_noise(model, eta=0.1, generator=g):
            loss = loss_fn(model(x), y)
            loss.backward()                  # gradients at the noisy weights
        optimizer.step()                     # applied to the clean weights
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


def noisy_layers(model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
    """The layers whose weights go onto the chip."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@contextmanager
def weight_noise(
    model: nn.Module, eta: float, generator: torch.Generator | None = None
) -> Iterator[None]:
    """While the block runs, every Linear and Conv2d weight is w + η·max|w|·N(0, 1) (drawn
    from ``generator``); the clean weights are back when it ends, their gradients kept."""
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, not {eta}")
    layers = noisy_layers(model)
    clean = [layer.weight.detach().clone() for layer in layers]
    if eta > 0:
        with torch.no_grad():
            for layer in layers:
                w = layer.weight
                scale = eta * float(w.abs().max())
                noise = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
                w.add_(scale * noise)
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, weight in zip(layers, clean, strict=True):
                layer.weight.copy_(weight)


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    noise_eta: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """SGD with momentum on cross-entropy, a cosine learning-rate schedule, shuffles and
    weight noise drawn from ``seed``: the same seed gives the same model. Returns ``model``,
    trained in place, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    inputs = torch.as_tensor(x, dtype=dtype)
    labels = torch.as_tensor(y, dtype=torch.long)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    steps = epochs * ((len(inputs) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for i in range(0, len(inputs), batch):
            index = order[i : i + batch]
            optimizer.zero_grad()
            with weight_noise(model, noise_eta, generator):
                loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
                loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 1024) -> float:
    """Fraction (0…1) of ``x`` the model (in software) classifies as ``y``."""
    dtype = next(model.parameters()).dtype
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [
                model(torch.as_tensor(x[i : i + batch], dtype=dtype)).argmax(1)
                for i in range(0, len(x), batch)
            ]
        )
    return float((predicted.numpy() == np.asarray(y)).mean())
