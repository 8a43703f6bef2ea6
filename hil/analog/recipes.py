"""The two networks that ship ready — an MLP and a small CNN — with their training recipes,
trained in software on the digits, plainly and noise-aware."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pcm_hil.nn.network import Network
from pcm_hil.nn.train import train
from pcm_hil.nn.zoo import mlp, small_cnn

#: Relative weight noise of noise-aware training. Joshi et al. 2020 used η ≈ 3.8% for
#: ResNets; these small networks keep their accuracy on the chip better with more [choice,
#: measured with benchmarks/bench_inference.py].
NOISE_ETA = 0.1


@dataclass(frozen=True)
class Recipe:
    build: Callable[[np.random.Generator], Network]
    epochs: int
    lr: float
    batch: int = 64


RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(lambda rng: mlp(rng, hidden=256), epochs=40, lr=0.05),
    "cnn": Recipe(lambda rng: small_cnn(rng, channels=(16, 32)), epochs=20, lr=0.05),
}


def trained(name: str, data, *, noise_eta: float = 0.0, seed: int = 0) -> Network:
    """The named network trained on ``data`` = (x_train, y_train, x_test, y_test)."""
    recipe = RECIPES[name]
    x_train, y_train, _x_test, _y_test = data
    network = recipe.build(np.random.default_rng(seed))
    train(
        network,
        x_train,
        y_train,
        epochs=recipe.epochs,
        lr=recipe.lr,
        batch=recipe.batch,
        rng=np.random.default_rng(seed + 1),
        noise_eta=noise_eta,
    )
    return network
