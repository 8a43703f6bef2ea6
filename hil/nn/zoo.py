"""Ready-made networks for 8×8 single-channel images (sklearn digits), He-initialised."""

from __future__ import annotations

import numpy as np

from .layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .network import Network


def mlp(rng: np.random.Generator, hidden: int = 64) -> Network:
    """(N, 1, 8, 8) → Flatten → Dense(64, hidden) → ReLU → Dense(hidden, 10) → logits (N, 10)."""
    return Network([Flatten(), Dense(64, hidden, rng=rng), ReLU(), Dense(hidden, 10, rng=rng)])


def small_cnn(rng: np.random.Generator) -> Network:
    """(N, 1, 8, 8) → Conv2D(1, 8, 3, padding=1) → BatchNorm → ReLU → MaxPool2D(2) → (N, 8, 4, 4)
    → Conv2D(8, 16, 3, padding=1) → BatchNorm → ReLU → MaxPool2D(2) → (N, 16, 2, 2) → Flatten
    → Dense(64, 10) → logits (N, 10). Weight-layer products: (N·64, 9)@(9, 8),
    (N·16, 72)@(72, 16), (N, 64)@(64, 10)."""
    return Network(
        [
            Conv2D(1, 8, 3, padding=1, rng=rng),
            BatchNorm(8),
            ReLU(),
            MaxPool2D(2),
            Conv2D(8, 16, 3, padding=1, rng=rng),
            BatchNorm(16),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(64, 10, rng=rng),
        ]
    )
