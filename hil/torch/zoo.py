"""Ready-made torch models for the 8×8 digits, and torch twins of the numpy networks.

- ``resnet``: a small ResNet (He et al. 2016, the CIFAR form the seeds program: ResNet-32 is
  three stages of five blocks) — a 3×3 stem, three stages of residual blocks with batch norm
  (16, 32, 64 channels; the 2nd and 3rd halve the image with a strided convolution and a 1×1
  projection on the shortcut), global average pooling, a linear classifier. One block per
  stage: 10 weight layers, 77,072 weights, on three 256×256 tiles.
- ``trained_resnet``: it, trained on the digits in software (plainly or noise-aware).
- ``from_network``: the torch module computing exactly what a numpy ``pcm_hil.nn.Network``
  computes (same weights, same layout: a Dense's weight is a Linear's transposed), so the
  same weights can be run through both front ends.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pcm_hil.nn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from pcm_hil.nn.network import Network

#: Channels of the three stages of ``resnet``.
RESNET_CHANNELS = (16, 32, 64)
#: The training recipe of ``trained_resnet`` (chosen on the digits' training split).
RESNET_EPOCHS = 30
RESNET_LR = 0.05


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the shortcut (a 1×1 projection with BN when
    the shape changes), → ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """(N, 1, 8, 8) → stem → stages → average pool → linear → logits (N, classes)."""

    def __init__(
        self, channels: tuple[int, int, int] = RESNET_CHANNELS, blocks: int = 1, classes: int = 10
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.stem = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1))
        stages: list[nn.Module] = []
        c_in = c1
        for c_out, stride in ((c1, 1), (c2, 2), (c3, 2)):
            for b in range(blocks):
                stages.append(BasicBlock(c_in, c_out, stride if b == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(torch.relu(self.stem(x)))
        return self.fc(y.mean(dim=(2, 3)))


def resnet(seed: int = 0, channels: tuple[int, int, int] = RESNET_CHANNELS) -> ResNet:
    """A fresh ``ResNet`` (one block per stage), its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return ResNet(channels)


def trained_resnet(data, *, noise_eta: float = 0.0, seed: int = 0) -> ResNet:
    """``resnet(seed)`` trained on ``data`` = (x_train, y_train, x_test, y_test)."""
    from pcm_hil.torch.training import train_classifier

    x_train, y_train, _x_test, _y_test = data
    model = resnet(seed)
    train_classifier(
        model,
        x_train,
        y_train,
        epochs=RESNET_EPOCHS,
        lr=RESNET_LR,
        weight_decay=5e-4,
        noise_eta=noise_eta,
        seed=seed + 1,
    )
    return model


def from_network(network: Network) -> nn.Sequential:
    """The torch module (float64) that computes what ``network`` computes, same weights."""
    modules: list[nn.Module] = []
    for layer in network.layers:
        if isinstance(layer, Dense):
            n_in, n_out = layer.weight.shape
            linear = nn.Linear(n_in, n_out, dtype=torch.float64)
            linear.weight.data = torch.from_numpy(np.ascontiguousarray(layer.weight.T))
            linear.bias.data = torch.from_numpy(layer.bias.astype(np.float64).copy())
            modules.append(linear)
        elif isinstance(layer, Conv2D):
            conv = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel,
                stride=layer.stride,
                padding=layer.padding,
                dtype=torch.float64,
            )
            kernel = layer.weight.T.reshape(
                layer.out_channels, layer.in_channels, layer.kernel, layer.kernel
            )
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel))
            conv.bias = nn.Parameter(torch.from_numpy(layer.bias.astype(np.float64).copy()))
            modules.append(conv)
        elif isinstance(layer, BatchNorm):
            spatial = _after_conv(network, layer)
            norm_type = nn.BatchNorm2d if spatial else nn.BatchNorm1d
            norm = norm_type(layer.num_features, eps=layer.eps, dtype=torch.float64)
            norm.weight.data = torch.from_numpy(layer.gamma.astype(np.float64).copy())
            norm.bias.data = torch.from_numpy(layer.beta.astype(np.float64).copy())
            norm.running_mean = torch.from_numpy(layer.running_mean.astype(np.float64).copy())
            norm.running_var = torch.from_numpy(layer.running_var.astype(np.float64).copy())
            modules.append(norm)
        elif isinstance(layer, ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, MaxPool2D):
            modules.append(nn.MaxPool2d(layer.size))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        else:
            raise ValueError(f"no torch twin for layer {type(layer).__name__}")
    return nn.Sequential(*modules).eval()


def _after_conv(network: Network, norm: BatchNorm) -> bool:
    """Whether a batch norm normalizes images (after a convolution) rather than features."""
    before = network.layers[: network.layers.index(norm)]
    for layer in reversed(before):
        if isinstance(layer, Conv2D):
            return True
        if isinstance(layer, Dense | Flatten):
            return False
    return False
