"""A small numpy neural-network library whose weight-layer products can run on a PCM chip.

Every Dense/Conv2D product goes through ``Network.forward(matmul=...)`` and
``Network.backward(matmul_t=...)`` hooks; see ``hil.nn.network``.
"""

from .data import load_digits_split, synthetic_blobs
from .layers import BatchNorm, Context, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU
from .network import MatmulHook, Network, perturb_weight, recalibrate_batchnorm
from .train import softmax_cross_entropy, train
from .zoo import mlp, small_cnn

__all__ = [
    "BatchNorm",
    "Context",
    "Conv2D",
    "Dense",
    "Flatten",
    "Layer",
    "MatmulHook",
    "MaxPool2D",
    "Network",
    "ReLU",
    "load_digits_split",
    "mlp",
    "perturb_weight",
    "recalibrate_batchnorm",
    "small_cnn",
    "softmax_cross_entropy",
    "synthetic_blobs",
    "train",
]
