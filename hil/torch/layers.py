"""The layers of a torch model whose products run on the chip: ``ChipLinear`` and
``ChipConv2d`` stand in for ``nn.Linear`` and ``nn.Conv2d`` in a copy of the model.

Each holds its weight as a *weight layer* of the chip mapping (``pcm_hil.analog.mapping``):
an (inputs × outputs) matrix — a Linear's ``weight.T``; a convolution's kernel as
(C_in·kh·kw × C_out) rows ordered (C_in, kh, kw), one matrix per group — and computes its
product through a hook ``product(k, x2d) -> x2d @ W_k`` (numpy, float64) set by its owner
(``TorchNetwork``) for the forward pass: the chip's MVM, or software. A convolution is a
batched product over unfolded patches (``torch.nn.functional.unfold``; rows ordered
(N, h_out, w_out), as the numpy ``Conv2D``). Biases stay in torch.

In training (``ChipProduct``), the backward pass computes the input's gradient through the
owner's transposed product (the chip's transposed MVM) and hands the weight's gradient,
xᵀ·g in software, to the owner (the in-situ trainer turns it into pulses).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ChipProduct(torch.autograd.Function):
    """y = x2d @ W_k through ``owner.product``; backward through ``owner.product_t``, the
    weight's gradient kept by ``owner.weight_grad`` (``weight``, the layer's parameter, is
    an input only so that autograd runs the backward pass of a first layer too)."""

    @staticmethod
    def forward(
        ctx: Any, x2d: torch.Tensor, weight: torch.Tensor, k: int, owner: Any
    ) -> torch.Tensor:
        ctx.k, ctx.owner = k, owner
        ctx.save_for_backward(x2d)
        x = x2d.detach().cpu().numpy().astype(np.float64)
        return torch.from_numpy(owner.product(k, x)).to(x2d.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x2d,) = ctx.saved_tensors
        g = grad.detach().cpu().numpy().astype(np.float64)
        x = x2d.detach().cpu().numpy().astype(np.float64)
        ctx.owner.weight_grad(ctx.k, x.T @ g)
        if not ctx.needs_input_grad[0]:  # a first layer: no transposed product needed
            return None, None, None, None
        return torch.from_numpy(ctx.owner.product_t(ctx.k, g)).to(grad.dtype), None, None, None


class _ChipLayer(nn.Module):
    """What the two layers share: their weight layers' numbers on the chip and the owner."""

    weight: nn.Parameter

    def __init__(self) -> None:
        super().__init__()
        self.layers: list[int] = []
        self.owner: Any = None

    def bind(self, owner: Any, first: int) -> int:
        """Take weight-layer numbers from ``first``; the next free number."""
        self.owner = owner
        self.layers = list(range(first, first + len(self.matrices())))
        return first + len(self.layers)

    def matrices(self) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _product(self, k: int, x2d: torch.Tensor) -> torch.Tensor:
        owner = self.owner
        if owner.training_on_chip:
            trigger = self.weight.detach().requires_grad_(True)
            return ChipProduct.apply(x2d, trigger, k, owner)
        x = x2d.detach().cpu().numpy().astype(np.float64)
        return torch.from_numpy(owner.product(k, x)).to(x2d.dtype)


class ChipLinear(_ChipLayer):
    """``nn.Linear`` with its product on the chip: y = x·Wᵀ + b."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().clone()) if linear.bias is not None else None

    def matrices(self) -> list[np.ndarray]:
        return [self.weight.detach().cpu().numpy().astype(np.float64).T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = self._product(self.layers[0], x.reshape(-1, self.in_features))
        y = y.reshape(*shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y


class ChipConv2d(_ChipLayer):
    """``nn.Conv2d`` (any stride, padding, dilation; zero padding) with its product on the
    chip, one weight layer per group."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"{conv}: only zero padding runs on the chip")
        if isinstance(conv.padding, str):
            raise ValueError(f"{conv}: give the padding as numbers, not {conv.padding!r}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None

    def matrices(self) -> list[np.ndarray]:
        """Per group, the kernel as (C_in/groups·kh·kw × C_out/groups)."""
        weight = self.weight.detach().cpu().numpy().astype(np.float64)
        per = self.out_channels // self.groups
        return [weight[g * per : (g + 1) * per].reshape(per, -1).T for g in range(self.groups)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _c, h, w = x.shape
        kh, kw = self.kernel_size
        h_out = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        w_out = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        c_in = self.in_channels // self.groups
        outputs = []
        for g, k in enumerate(self.layers):
            patches = F.unfold(
                x[:, g * c_in : (g + 1) * c_in],
                self.kernel_size,
                dilation=self.dilation,
                padding=self.padding,
                stride=self.stride,
            )  # (N, c_in·kh·kw, L)
            rows = patches.transpose(1, 2).reshape(n * h_out * w_out, -1)
            y = self._product(k, rows)  # (N·L, C_out/groups)
            outputs.append(y.reshape(n, h_out, w_out, -1))
        y = torch.cat(outputs, dim=3).permute(0, 3, 1, 2)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y.contiguous()


def chip_layers(model: nn.Module) -> list[_ChipLayer]:
    """The chip layers of a model, in the order ``modules()`` walks them."""
    return [m for m in model.modules() if isinstance(m, _ChipLayer)]


def swap_layers(model: nn.Module, memo: dict[int, nn.Module] | None = None) -> int:
    """Replace, in place, every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` by its chip
    layer; how many layers were put on the chip. A layer used in several places (a shared
    module) becomes one chip layer, used in all of them: one set of devices. Subclasses
    (``NonDynamicallyQuantizableLinear`` inside ``nn.MultiheadAttention``, whose weight its
    parent reads itself) are left to torch: only products made through a layer's own
    ``forward`` can go on the chip."""
    memo = {} if memo is None else memo
    count = 0
    for name, child in list(model._modules.items()):  # every name, shared modules too
        if child is None:
            continue
        if id(child) in memo:
            setattr(model, name, memo[id(child)])
            continue
        if type(child) is nn.Linear:
            memo[id(child)] = ChipLinear(child)
        elif type(child) is nn.Conv2d:
            memo[id(child)] = ChipConv2d(child)
        else:
            memo[id(child)] = child
            count += swap_layers(child, memo)
            continue
        setattr(model, name, memo[id(child)])
        count += 1
    return count
