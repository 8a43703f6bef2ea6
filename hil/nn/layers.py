"""Layers: forward and exact backward passes, each layer's product a single 2-D matmul.

Every layer has ``forward(x, ctx)`` and ``backward(grad, ctx)``. The ``Context`` carries what a
pass needs (training or not, the batch-norm mode, the matmul hooks, the weights to use) and what
the backward needs from the forward (``ctx.cache``); a ``Network`` makes one per layer per pass.

The weight layers (``Dense``, ``Conv2D``) reduce their product to ``x2d @ W`` with ``W`` a 2-D
array of shape (inputs, outputs) — for a convolution through im2col — so that the product can be
sent to an analog crossbar whole: ``ctx.matmul(x2d)`` replaces ``x2d @ W`` and
``ctx.matmul_t(g2d)`` replaces ``g2d @ W.T``. Biases are always added in software, after the
product. Gradients accumulate in ``grad_weight``/``grad_bias`` (``grad_gamma``/``grad_beta``)
until ``zero_grad()``.

Parameters are float64 (the finite-difference checks need it; the networks here are small).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

BN_MODES = ("running", "batch", "update")


@dataclass
class Context:
    """One layer's view of one forward/backward pass.

    ``training``: keep what the backward needs in ``cache`` (off for inference, to save memory).
    ``bn_mode``: ``"running"`` (normalise with the running statistics), ``"batch"`` (with the
    batch's, running statistics untouched) or ``"update"`` (with the batch's, and fold them into
    the running statistics). ``matmul``/``matmul_t``: replace ``x2d @ W`` / ``g2d @ W.T`` in a
    weight layer (None: software). ``weight``: the weight to use instead of the layer's own (the
    noisy copy of noise-aware training; None: ``layer.weight``). ``need_input_grad``: False lets
    the first trainable layer skip the gradient with respect to its input.
    """

    training: bool = False
    bn_mode: str = "running"
    matmul: Callable[[np.ndarray], np.ndarray] | None = None
    matmul_t: Callable[[np.ndarray], np.ndarray] | None = None
    weight: np.ndarray | None = None
    need_input_grad: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")


def _cached(ctx: Context, key: str) -> Any:
    try:
        return ctx.cache[key]
    except KeyError:
        raise RuntimeError("backward needs a forward with training=True on this context") from None


class Layer:
    """Base class: no parameters, no state. Subclasses override what they have."""

    #: Registry of layer types by class name, for ``Network.load``.
    types: ClassVar[dict[str, type[Layer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            Layer.types[cls.__name__] = cls

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able): ``type(self)(**config())`` rebuilds the layer."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name (what a saved network stores)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Set parameters and buffers from ``state()``-shaped arrays (copied)."""
        own = self.state()
        if set(state) != set(own):
            raise ValueError(f"{type(self).__name__}: expected {sorted(own)}, got {sorted(state)}")
        for name, value in state.items():
            if np.shape(value) != own[name].shape:
                raise ValueError(f"{type(self).__name__}.{name}: shape {np.shape(value)}")
            setattr(self, name, np.array(value, dtype=own[name].dtype))

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Trainable ``(name, parameter, gradient)`` triples; the optimiser updates in place."""
        return []

    def zero_grad(self) -> None:
        for _, _, grad in self.parameters():
            grad.fill(0.0)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class _WeightLayer(Layer):
    """Shared by Dense and Conv2D: ``y2d = x2d @ W + b`` with the hooks and the noise."""

    weight: np.ndarray
    bias: np.ndarray
    grad_weight: np.ndarray
    grad_bias: np.ndarray

    def _allocate(self, fan_in: int, out: int, rng: np.random.Generator | None) -> None:
        self.weight = np.zeros((fan_in, out))
        self.bias = np.zeros(out)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)
        if rng is not None:
            self.init(rng)

    def init(self, rng: np.random.Generator) -> None:
        """He initialisation: weight ~ N(0, 2/fan_in), bias 0."""
        fan_in = self.weight.shape[0]
        self.weight[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=self.weight.shape)
        self.bias[...] = 0.0

    def _product(self, x2d: np.ndarray, ctx: Context) -> np.ndarray:
        """``x2d @ W + b`` (x2d: (rows, fan_in) → (rows, out)), the product through the hook."""
        weight = self.weight if ctx.weight is None else ctx.weight
        if ctx.matmul is None:
            y2d = x2d @ weight
        else:
            y2d = np.asarray(ctx.matmul(x2d))
            expected = (x2d.shape[0], weight.shape[1])
            if y2d.shape != expected:
                raise ValueError(f"matmul hook returned shape {y2d.shape}, expected {expected}")
        if ctx.training:
            ctx.cache["x2d"] = x2d
            ctx.cache["weight"] = weight
        return y2d + self.bias

    def _product_backward(self, g2d: np.ndarray, ctx: Context) -> np.ndarray | None:
        """Accumulate dW = x2dᵀ g2d, db = Σ g2d; return ``g2d @ Wᵀ`` (through the hook)."""
        x2d = _cached(ctx, "x2d")
        self.grad_weight += x2d.T @ g2d
        self.grad_bias += g2d.sum(axis=0)
        if not ctx.need_input_grad:
            return None
        weight = ctx.cache["weight"]
        if ctx.matmul_t is None:
            return g2d @ weight.T
        dx2d = np.asarray(ctx.matmul_t(g2d))
        if dx2d.shape != x2d.shape:
            raise ValueError(f"matmul_t hook returned shape {dx2d.shape}, expected {x2d.shape}")
        return dx2d

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        super().load_state(state)
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias = np.zeros_like(self.bias)

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [("weight", self.weight, self.grad_weight), ("bias", self.bias, self.grad_bias)]


class Dense(_WeightLayer):
    """Fully connected: (N, in_features) → (N, out_features); weight (in, out), bias (out,).

    Parameters are zero unless ``rng`` is given (He initialisation) or ``init(rng)`` is called.
    """

    def __init__(
        self, in_features: int, out_features: int, *, rng: np.random.Generator | None = None
    ) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self._allocate(self.in_features, self.out_features, rng)

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects (N, {self.in_features}), got {x.shape}")
        return self._product(x, ctx)

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        return self._product_backward(grad, ctx)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis: ⌊(size + 2·padding − kernel)/stride⌋ + 1."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"input {size} too small for kernel {kernel} with padding {padding}")
    return out


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """Patches of x (N, C, H, W) as rows: (N·H_out·W_out, C·k·k), columns ordered (C, kh, kw),
    rows ordered (N, h_out, w_out)."""
    n, c, h, w = x.shape
    h_out = conv_output_size(h, kernel, stride, padding)
    w_out = conv_output_size(w, kernel, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))
    windows = windows[
        :, :, : stride * (h_out - 1) + 1 : stride, : stride * (w_out - 1) + 1 : stride
    ]
    # (N, C, H_out, W_out, k, k) → (N, H_out, W_out, C, k, k)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, c * kernel * kernel)


def col2im(
    cols: np.ndarray, shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int
) -> np.ndarray:
    """Adjoint of ``im2col``: sum the patch rows (N·H_out·W_out, C·k·k) back into an array of
    ``shape`` (N, C, H, W), overlapping patches adding up."""
    n, c, h, w = shape
    h_out = conv_output_size(h, kernel, stride, padding)
    w_out = conv_output_size(w, kernel, stride, padding)
    cols6 = cols.reshape(n, h_out, w_out, c, kernel, kernel).transpose(0, 3, 4, 5, 1, 2)
    xp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            xp[:, :, i : i + stride * h_out : stride, j : j + stride * w_out : stride] += cols6[
                :, :, i, j
            ]
    return xp[:, :, padding : padding + h, padding : padding + w]


class Conv2D(_WeightLayer):
    """2-D convolution (cross-correlation) by im2col: (N, C_in, H, W) → (N, C_out, H_out, W_out).

    The product is one matmul, patches (N·H_out·W_out, C_in·k·k) @ weight (C_in·k·k, C_out);
    the weight's rows are ordered (C_in, kh, kw), so ``weight.reshape(C_in, k, k, C_out)`` is
    the kernel. Bias (C_out,). Parameters are zero unless ``rng`` is given (He initialisation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel = int(kernel)
        self.stride = int(stride)
        self.padding = int(padding)
        self._allocate(self.in_channels * self.kernel**2, self.out_channels, rng)

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2D expects (N, {self.in_channels}, H, W), got {x.shape}")
        n, _, h, w = x.shape
        h_out = conv_output_size(h, self.kernel, self.stride, self.padding)
        w_out = conv_output_size(w, self.kernel, self.stride, self.padding)
        patches = im2col(x, self.kernel, self.stride, self.padding)
        y2d = self._product(patches, ctx)
        if ctx.training:
            ctx.cache["x_shape"] = x.shape
        return y2d.reshape(n, h_out, w_out, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        g2d = grad.transpose(0, 2, 3, 1).reshape(-1, self.out_channels)
        dpatches = self._product_backward(g2d, ctx)
        if dpatches is None:
            return None
        return col2im(dpatches, ctx.cache["x_shape"], self.kernel, self.stride, self.padding)

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel": self.kernel,
            "stride": self.stride,
            "padding": self.padding,
        }


class BatchNorm(Layer):
    """Batch normalisation: per feature of (N, F) inputs, per channel of (N, C, H, W) inputs.

    y = gamma·(x − μ)/√(σ² + eps) + beta with gamma, beta, running_mean, running_var all
    (num_features,). μ, σ² are the batch's (biased variance) in ``bn_mode`` "batch" and
    "update", the running statistics in "running". In "update" the batch statistics are folded
    into the running ones: ``r ← (1 − momentum)·r + momentum·batch`` or, when ``momentum`` is
    None, as the exact mean and (population) variance of every sample seen since
    ``reset_stats()`` (``count`` of them per feature) — what batch-norm recalibration wants.
    """

    def __init__(self, num_features: int, momentum: float | None = 0.1, eps: float = 1e-5) -> None:
        self.num_features = int(num_features)
        self.momentum = momentum
        self.eps = float(eps)
        self.gamma = np.ones(self.num_features)
        self.beta = np.zeros(self.num_features)
        self.grad_gamma = np.zeros_like(self.gamma)
        self.grad_beta = np.zeros_like(self.beta)
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)
        self.count = np.zeros(())

    def reset_stats(self) -> None:
        """Running mean 0, variance 1, count 0."""
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)
        self.count = np.zeros(())

    def _axes(self, x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
        axes: tuple[int, ...]
        shape: tuple[int, ...]
        if x.ndim == 2:
            axes, shape = (0,), (1, self.num_features)
        elif x.ndim == 4:
            axes, shape = (0, 2, 3), (1, self.num_features, 1, 1)
        else:
            raise ValueError(f"BatchNorm expects (N, F) or (N, C, H, W), got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm({self.num_features}) got {x.shape[1]} features")
        return axes, shape

    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        if self.momentum is None:  # exact pooled mean and variance (Chan et al.)
            n = float(self.count)
            total = n + m
            delta = mean - self.running_mean
            pooled_m2 = self.running_var * n + var * m + delta**2 * (n * m / total)
            self.running_mean = self.running_mean + delta * (m / total)
            self.running_var = pooled_m2 / total
        else:
            a = float(self.momentum)
            self.running_mean = (1 - a) * self.running_mean + a * mean
            self.running_var = (1 - a) * self.running_var + a * var
        self.count = np.asarray(float(self.count) + m)

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        axes, shape = self._axes(x)
        if ctx.bn_mode == "running":
            mean, var = self.running_mean, self.running_var
        else:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if ctx.bn_mode == "update":
                self._update_running(mean, var, x.size // self.num_features)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        if ctx.training:
            ctx.cache.update(xhat=xhat, inv_std=inv_std, batch_stats=ctx.bn_mode != "running")
        return self.gamma.reshape(shape) * xhat + self.beta.reshape(shape)

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        xhat = _cached(ctx, "xhat")
        axes, shape = self._axes(grad)
        sum_g = grad.sum(axis=axes)
        sum_g_xhat = (grad * xhat).sum(axis=axes)
        self.grad_gamma += sum_g_xhat
        self.grad_beta += sum_g
        if not ctx.need_input_grad:
            return None
        scale = (self.gamma * ctx.cache["inv_std"]).reshape(shape)
        if not ctx.cache["batch_stats"]:
            return grad * scale
        m = grad.size // self.num_features
        return (scale / m) * (m * grad - sum_g.reshape(shape) - xhat * sum_g_xhat.reshape(shape))

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}

    def state(self) -> dict[str, np.ndarray]:
        return {
            "gamma": self.gamma,
            "beta": self.beta,
            "running_mean": self.running_mean,
            "running_var": self.running_var,
            "count": self.count,
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        super().load_state(state)
        self.grad_gamma = np.zeros_like(self.gamma)
        self.grad_beta = np.zeros_like(self.beta)

    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [("gamma", self.gamma, self.grad_gamma), ("beta", self.beta, self.grad_beta)]


class ReLU(Layer):
    """max(x, 0), any shape; the gradient at exactly 0 is taken as 0."""

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        if ctx.training:
            ctx.cache["mask"] = x > 0
        return np.maximum(x, 0)

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        return grad * _cached(ctx, "mask")


class MaxPool2D(Layer):
    """Max over non-overlapping size×size windows: (N, C, H, W) → (N, C, H//size, W//size).

    Rows/columns beyond a whole window are dropped (their gradient is 0); of tied maxima the
    first (row-major in the window) takes the gradient.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = int(size)

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        if x.ndim != 4:
            raise ValueError(f"MaxPool2D expects (N, C, H, W), got {x.shape}")
        n, c, h, w = x.shape
        p = self.size
        ho, wo = h // p, w // p
        if ho < 1 or wo < 1:
            raise ValueError(f"MaxPool2D({p}) input {x.shape} smaller than one window")
        win = x[:, :, : ho * p, : wo * p].reshape(n, c, ho, p, wo, p)
        win = win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, p * p)
        idx = win.argmax(axis=-1)
        if ctx.training:
            ctx.cache.update(idx=idx, x_shape=x.shape)
        return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        idx = _cached(ctx, "idx")
        n, c, h, w = ctx.cache["x_shape"]
        p = self.size
        ho, wo = idx.shape[2:]
        win = np.zeros((n, c, ho, wo, p * p), dtype=grad.dtype)
        np.put_along_axis(win, idx[..., None], grad[..., None], axis=-1)
        win = win.reshape(n, c, ho, wo, p, p).transpose(0, 1, 2, 4, 3, 5)
        dx = np.zeros((n, c, h, w), dtype=grad.dtype)
        dx[:, :, : ho * p, : wo * p] = win.reshape(n, c, ho * p, wo * p)
        return dx

    def config(self) -> dict[str, Any]:
        return {"size": self.size}


class Flatten(Layer):
    """(N, ...) → (N, product of the rest)."""

    def forward(self, x: np.ndarray, ctx: Context | None = None) -> np.ndarray:
        ctx = ctx or Context()
        if ctx.training:
            ctx.cache["x_shape"] = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: np.ndarray, ctx: Context) -> np.ndarray | None:
        return grad.reshape(_cached(ctx, "x_shape"))
