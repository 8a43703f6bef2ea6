"""A small numpy neural-network library whose weight-layer products can run on a PCM chip.

Every Dense/Conv2D product goes through ``Network.forward(matmul=...)`` and
``Network.backward(matmul_t=...)`` hooks; see ``pcm_hil.nn.network``.
"""

from pcm_hil.nn.data import load_digits_split, synthetic_blobs
from pcm_hil.nn.layers import BatchNorm, Context, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU
from pcm_hil.nn.network import MatmulHook, Network, perturb_weight, recalibrate_batchnorm
from pcm_hil.nn.train import softmax_cross_entropy, train
from pcm_hil.nn.zoo import mlp, small_cnn

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
