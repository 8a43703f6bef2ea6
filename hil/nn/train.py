"""Training: softmax cross-entropy, minibatch SGD with momentum, deterministic given the rng.

The generator passed in draws the epoch shuffles and, for noise-aware training, the weight
noise; the same seed gives the same network bit for bit.
"""

from __future__ import annotations

import time

import numpy as np

from pcm_hil.nn.network import MatmulHook, Network


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) (N, classes) against labels y (N,) ints, and its
    gradient with respect to the logits (N, classes): (softmax − onehot)/N."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    rows = np.arange(n)
    loss = -float(log_p[rows, y].mean())
    grad = np.exp(log_p)
    grad[rows, y] -= 1.0
    return loss, grad / n


def train(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch: int = 64,
    rng: np.random.Generator,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    noise_eta: float = 0.0,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    matmul: MatmulHook | None = None,
    matmul_t: MatmulHook | None = None,
) -> dict[str, list[float]]:
    """Train ``network`` in place on x (N, ...), y (N,) class indices.

    Each epoch visits the samples in a fresh ``rng`` permutation, in minibatches of ``batch``
    (the last one may be smaller). Update: ``v ← momentum·v + g``, ``p ← p − lr·v`` where g is
    the mean-loss gradient plus ``weight_decay·p`` for the Dense/Conv2D weights (not biases or
    batch-norm parameters). Batch norm trains on batch statistics and updates its running ones
    (``bn_mode="update"``). ``noise_eta`` > 0: noise-aware training (see ``Network.forward``).
    ``matmul``/``matmul_t``: hooks for the forward and backward products (chip in the loop).

    Returns the history, one entry per epoch: ``loss`` (mean training loss over the epoch's
    samples), ``train_accuracy`` (of the epoch's training forwards), ``seconds`` (wall time), and
    ``val_accuracy`` (running statistics, clean weights, software) if x_val and y_val are given.
    """
    if epochs < 0 or batch < 1:
        raise ValueError("need epochs >= 0 and batch >= 1")
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    params = network.parameters()
    decayed = {
        id(layer.weight) for layer in network.weight_layers()
    }  # weight decay on weights only
    velocity = [np.zeros_like(p) for _, p, _ in params]
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "seconds": []}
    if x_val is not None and y_val is not None:
        history["val_accuracy"] = []
    n = len(x)
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(n)
        loss_sum = 0.0
        correct = 0
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            network.zero_grad()
            logits = network.forward(
                x[idx],
                training=True,
                matmul=matmul,
                noise_eta=noise_eta,
                rng=rng,
                bn_mode="update",
            )
            loss, grad = softmax_cross_entropy(logits, y[idx])
            network.backward(grad, matmul_t=matmul_t, input_grad=False)
            for (_, p, g), v in zip(params, velocity, strict=True):
                step = g + weight_decay * p if weight_decay and id(p) in decayed else g
                v *= momentum
                v += step
                p -= lr * v
            loss_sum += loss * len(idx)
            correct += int(np.sum(logits.argmax(axis=1) == y[idx]))
        history["loss"].append(loss_sum / n)
        history["train_accuracy"].append(correct / n)
        if "val_accuracy" in history:
            assert x_val is not None and y_val is not None
            history["val_accuracy"].append(network.accuracy(x_val, y_val))
        history["seconds"].append(time.perf_counter() - start)
    return history
