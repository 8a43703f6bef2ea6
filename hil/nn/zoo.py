"""Ready-made networks for 8×8 single-channel images (sklearn digits), He-initialised."""

from __future__ import annotations

import numpy as np

from pcm_hil.nn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from pcm_hil.nn.network import Network


def mlp(rng: np.random.Generator, hidden: int = 64) -> Network:
    """(N, 1, 8, 8) → Flatten → Dense(64, hidden) → ReLU → Dense(hidden, 10) → logits (N, 10)."""
    return Network([Flatten(), Dense(64, hidden, rng=rng), ReLU(), Dense(hidden, 10, rng=rng)])


def small_cnn(rng: np.random.Generator, channels: tuple[int, int] = (8, 16)) -> Network:
    """(N, 1, 8, 8) → Conv2D(1, c1, 3, padding=1) → BatchNorm → ReLU → MaxPool2D(2)
    → (N, c1, 4, 4) → Conv2D(c1, c2, 3, padding=1) → BatchNorm → ReLU → MaxPool2D(2)
    → (N, c2, 2, 2) → Flatten → Dense(4·c2, 10) → logits (N, 10). Weight-layer products:
    (N·64, 9)@(9, c1), (N·16, 9·c1)@(9·c1, c2), (N, 4·c2)@(4·c2, 10)."""
    c1, c2 = channels
    return Network(
        [
            Conv2D(1, c1, 3, padding=1, rng=rng),
            BatchNorm(c1),
            ReLU(),
            MaxPool2D(2),
            Conv2D(c1, c2, 3, padding=1, rng=rng),
            BatchNorm(c2),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(4 * c2, 10, rng=rng),
        ]
    )
