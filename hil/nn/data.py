"""Data sets small enough for tests and chip runs: sklearn's 8×8 digits, synthetic blobs."""

from __future__ import annotations

import numpy as np


def load_digits_split(
    seed: int = 0, test_fraction: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits (1,797 8×8 images, 10 classes, bundled: no download), split stratified.

    Returns x_train (N_train, 1, 8, 8) float32 in 0..1 (pixel/16), y_train (N_train,) int64,
    x_test, y_test likewise; ``seed`` fixes the split, ``test_fraction`` its test share.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def synthetic_blobs(
    n: int, features: int, classes: int, rng: np.random.Generator, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian-blob classification task: x (n, features) float32, y (n,) int64.

    Class centres ~ N(0, 3²) per feature; samples = centre + N(0, spread²); labels drawn
    uniformly.
    """
    centres = rng.normal(0.0, 3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n).astype(np.int64)
    x = centres[y] + rng.normal(0.0, spread, size=(n, features))
    return x.astype(np.float32), y
