"""hil.nn: exact gradients, the matmul hooks, noise-aware training, save/load, batch-norm
recalibration, and digits accuracy — all seeded, all in float64 where gradients are checked."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.nn import (
    BatchNorm,
    Context,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Network,
    ReLU,
    load_digits_split,
    mlp,
    perturb_weight,
    recalibrate_batchnorm,
    small_cnn,
    softmax_cross_entropy,
    synthetic_blobs,
    train,
)
from pcm_hil.nn.layers import im2col

SEED = 20240607


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


def numeric_grad(f, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar f() with respect to arr (perturbed in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_layer_gradients(layer, x: np.ndarray, rng: np.random.Generator, bn_mode="batch"):
    """d/d(input, parameters) of sum(R * layer(x)), analytic against finite differences."""
    r = rng.standard_normal(layer.forward(x, Context(bn_mode=bn_mode)).shape)

    def loss() -> float:
        return float(np.sum(r * layer.forward(x, Context(bn_mode=bn_mode))))

    layer.zero_grad()
    ctx = Context(training=True, bn_mode=bn_mode)
    layer.forward(x, ctx)
    dx = layer.backward(r, ctx)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for name, param, grad in layer.parameters():
        np.testing.assert_allclose(
            grad, numeric_grad(loss, param), rtol=1e-6, atol=1e-8, err_msg=name
        )


# ---- layers: gradients and forward semantics ------------------------------------------------


def test_dense_gradients(rng):
    check_layer_gradients(Dense(5, 4, rng=rng), rng.standard_normal((6, 5)), rng)


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv2d_gradients(rng, stride, padding):
    layer = Conv2D(2, 3, 3, stride=stride, padding=padding, rng=rng)
    layer.bias[...] = rng.standard_normal(3)
    check_layer_gradients(layer, rng.standard_normal((2, 2, 6, 5)), rng)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 3, 5)])
def test_batchnorm_gradients(rng, bn_mode, shape):
    layer = BatchNorm(4)
    layer.gamma[...] = rng.uniform(0.5, 2.0, 4)
    layer.beta[...] = rng.standard_normal(4)
    layer.running_mean = rng.standard_normal(4)
    layer.running_var = rng.uniform(0.5, 2.0, 4)
    check_layer_gradients(layer, 2.0 + 3.0 * rng.standard_normal(shape), rng, bn_mode)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [(ReLU(), (4, 3, 5)), (MaxPool2D(2), (2, 3, 6, 7)), (Flatten(), (3, 2, 4, 4))],
    ids=["relu", "maxpool", "flatten"],
)
def test_parameterless_gradients(rng, layer, shape):
    check_layer_gradients(layer, rng.standard_normal(shape), rng)


def test_softmax_cross_entropy_gradient(rng):
    logits = 3.0 * rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    loss, grad = softmax_cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), y])), rel=1e-12)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda: softmax_cross_entropy(logits, y)[0], logits), atol=1e-8
    )


def test_network_gradients_through_loss(rng):
    """The whole small CNN (batch statistics) plus the loss, every parameter and the input."""
    net = small_cnn(rng)
    x = rng.standard_normal((3, 1, 8, 8))
    y = np.array([1, 7, 3])

    def loss() -> float:
        return softmax_cross_entropy(net.forward(x, bn_mode="batch"), y)[0]

    net.zero_grad()
    _, grad = softmax_cross_entropy(net.forward(x, training=True, bn_mode="batch"), y)
    dx = net.backward(grad)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-9)
    for name, param, g in net.parameters():
        np.testing.assert_allclose(g, numeric_grad(loss, param), rtol=1e-5, atol=1e-9, err_msg=name)


def test_conv2d_matches_direct_convolution(rng):
    layer = Conv2D(2, 3, 3, stride=2, padding=1, rng=rng)
    layer.bias[...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 7, 6))
    kernel = layer.weight.reshape(2, 3, 3, 3)  # (C_in, kh, kw, C_out)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 3, 4, 3))
    for i in range(4):
        for j in range(3):
            window = xp[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            expected[:, :, i, j] = np.einsum("nchw,chwo->no", window, kernel) + layer.bias
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_maxpool_forward():
    x = np.arange(2 * 5 * 5, dtype=float).reshape(1, 2, 5, 5)[:, :, ::-1]
    out = MaxPool2D(2).forward(x)
    assert out.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(out, x[:, :, :4, :4].reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5)))


def test_batchnorm_update_mode_momentum(rng):
    layer = BatchNorm(3, momentum=0.25)
    x = rng.standard_normal((10, 3, 2, 2))
    out_batch = layer.forward(x, Context(bn_mode="batch"))
    np.testing.assert_array_equal(layer.running_mean, 0.0)  # "batch" leaves the stats alone
    out_update = layer.forward(x, Context(bn_mode="update"))
    np.testing.assert_array_equal(out_update, out_batch)
    np.testing.assert_allclose(layer.running_mean, 0.25 * x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(layer.running_var, 0.75 + 0.25 * x.var(axis=(0, 2, 3)))


# ---- the matmul hooks -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_matmul_hook_called_once_per_weight_layer(rng, arch):
    net = mlp(rng) if arch == "mlp" else small_cnn(rng)
    n = 5
    x = rng.random((n, 1, 8, 8))
    weights = [layer.weight for layer in net.weight_layers()]
    calls = []

    def hook(k: int, x2d: np.ndarray) -> np.ndarray:
        calls.append((k, x2d.shape))
        return x2d @ weights[k]

    logits = net.forward(x, matmul=hook)
    expected_shapes = [(n, 64), (n, 64)] if arch == "mlp" else [(n * 64, 9), (n * 16, 72), (n, 64)]
    assert calls == list(enumerate(expected_shapes))
    np.testing.assert_array_equal(logits, net.forward(x))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_matmul_t_hook_in_backward(rng, arch):
    net = mlp(rng) if arch == "mlp" else small_cnn(rng)
    n = 4
    x = rng.random((n, 1, 8, 8))
    y = rng.integers(0, 10, n)
    weights = [layer.weight for layer in net.weight_layers()]

    def gradients(**backward_kwargs):
        net.zero_grad()
        _, g = softmax_cross_entropy(net.forward(x, training=True, bn_mode="batch"), y)
        dx = net.backward(g, **backward_kwargs)
        return dx, [grad.copy() for _, _, grad in net.parameters()]

    calls = []

    def hook_t(k: int, g2d: np.ndarray) -> np.ndarray:
        calls.append((k, g2d.shape))
        return g2d @ weights[k].T

    dx_soft, grads_soft = gradients()
    dx_hook, grads_hook = gradients(matmul_t=hook_t)
    expected = (
        [(1, (n, 10)), (0, (n, 64))]
        if arch == "mlp"
        else [
            (2, (n, 10)),
            (1, (n * 16, 16)),
            (0, (n * 64, 8)),
        ]
    )
    assert calls == expected
    np.testing.assert_array_equal(dx_hook, dx_soft)
    for a, b in zip(grads_hook, grads_soft, strict=True):
        np.testing.assert_array_equal(a, b)

    # Without the input gradient, the first weight layer's transposed product is skipped.
    calls.clear()
    assert gradients(matmul_t=hook_t, input_grad=False)[0] is None
    assert [k for k, _ in calls] == [k for k, _ in expected[:-1]]


def test_hooks_are_what_the_network_computes(rng):
    """A hook that changes the product changes the logits and the backward accordingly, and
    biases are still added in software."""
    net = Network([Dense(3, 2, rng=rng)])
    net.weight_layers()[0].bias[...] = [10.0, -10.0]
    x = rng.standard_normal((4, 3))
    logits = net.forward(x, matmul=lambda k, x2d: np.zeros((len(x2d), 2)), training=True)
    np.testing.assert_array_equal(logits, np.tile([10.0, -10.0], (4, 1)))
    dx = net.backward(np.ones((4, 2)), matmul_t=lambda k, g2d: 7.0 * np.ones((len(g2d), 3)))
    np.testing.assert_array_equal(dx, 7.0)
    with pytest.raises(ValueError, match="matmul hook returned shape"):
        net.forward(x, matmul=lambda k, x2d: np.zeros((len(x2d), 3)))


# ---- noise-aware training ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.1, 5.0])
def test_noise_aware_forward_has_relative_std(rng, scale):
    """With identity inputs a bias-free Dense layer's logits are its (noisy) weight."""
    eta = 0.038
    layer = Dense(200, 150, rng=rng)
    layer.weight *= scale
    clean = layer.weight.copy()
    net = Network([layer])
    eye = np.eye(200)
    noisy = net.forward(eye, training=True, noise_eta=eta, rng=rng)
    noise = (noisy - clean) / (eta * np.max(np.abs(clean)))
    assert abs(noise.mean()) < 0.03  # 30,000 samples: σ of the mean ≈ 0.006
    assert noise.std() == pytest.approx(1.0, abs=0.03)  # σ of the std ≈ 0.004
    np.testing.assert_array_equal(layer.weight, clean)  # the clean weight is untouched
    again = net.forward(eye, training=True, noise_eta=eta, rng=rng)
    assert not np.array_equal(again, noisy)  # fresh noise per batch
    np.testing.assert_array_equal(net.forward(eye), clean)  # evaluation is clean
    # The backward goes through the same noisy weight; the gradient is the noisy weight's,
    # to be applied to the clean one.
    net.zero_grad()
    noisy = net.forward(eye, training=True, noise_eta=eta, rng=rng)
    g = rng.standard_normal(noisy.shape)
    np.testing.assert_allclose(net.backward(g), g @ noisy.T, rtol=1e-12)
    np.testing.assert_array_equal(layer.grad_weight, g)


def test_perturb_weight_scale(rng):
    w = rng.uniform(-1.0, 1.0, (300, 100))
    w[0, 0] = -4.0
    noise = perturb_weight(w, 0.05, rng) - w
    assert noise.std() == pytest.approx(0.05 * 4.0, rel=0.02)


def test_noise_needs_training_and_rng(rng):
    net = mlp(rng)
    x = rng.random((2, 1, 8, 8))
    with pytest.raises(ValueError, match="training"):
        net.forward(x, noise_eta=0.038, rng=rng)
    with pytest.raises(ValueError, match="rng"):
        net.forward(x, training=True, noise_eta=0.038)


# ---- save and load ----------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(rng, tmp_path, digits):
    x_train, y_train, x_test, _ = digits
    net = small_cnn(rng)
    train(net, x_train[:256], y_train[:256], epochs=1, lr=0.05, rng=rng)
    net.batchnorm_layers()[1].momentum = None  # a non-default config survives too
    path = tmp_path / "cnn.npz"
    net.save(path)
    loaded = Network.load(path)
    assert repr(loaded) == repr(net)
    for a, b in zip(net.layers, loaded.layers, strict=True):
        assert type(a) is type(b) and a.config() == b.config()
        state_a, state_b = a.state(), b.state()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert state_a[key].dtype == state_b[key].dtype
            np.testing.assert_array_equal(state_a[key], state_b[key])
    np.testing.assert_array_equal(loaded.forward(x_test), net.forward(x_test))
    np.testing.assert_array_equal(loaded.batchnorm_layers()[0].count, 256 * 64)


# ---- batch-norm recalibration -----------------------------------------------------------------


def test_recalibration_gives_exact_dataset_statistics(rng):
    first = Dense(6, 5, rng=rng)
    net = Network([first, BatchNorm(5), ReLU(), Dense(5, 4, rng=rng), BatchNorm(4, momentum=0.3)])
    x = rng.standard_normal((203, 6)) * 3.0 + 1.0
    recalibrate_batchnorm(net, x, batch=37)  # 5 batches of 37 and one of 18
    bn1, bn2 = net.batchnorm_layers()
    pre = x @ first.weight + first.bias
    np.testing.assert_allclose(bn1.running_mean, pre.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn1.running_var, pre.var(axis=0), rtol=1e-12)
    assert float(bn1.count) == 203
    assert bn1.momentum == 0.1 and bn2.momentum == 0.3  # restored

    # In one batch every layer's running statistics are exactly its batch statistics, so the
    # "running" forward then equals the "batch" forward.
    recalibrate_batchnorm(net, x, batch=len(x))
    np.testing.assert_allclose(
        net.forward(x), net.forward(x, bn_mode="batch"), rtol=1e-12, atol=1e-12
    )


def test_recalibration_through_a_chip_hook_per_channel(rng):
    """A hook standing in for the chip (gain error and offset): the first batch norm's
    per-channel statistics are those of the chip's outputs over all of the data."""
    net = small_cnn(rng)
    conv = net.weight_layers()
    x = rng.random((50, 1, 8, 8))

    def chip(k: int, x2d: np.ndarray) -> np.ndarray:
        return 1.1 * (x2d @ conv[k].weight) + 0.05

    recalibrate_batchnorm(net, x, batch=16, matmul=chip)
    out = chip(0, im2col(x, 3, 1, 1)) + conv[0].bias  # (50·64, 8)
    bn = net.batchnorm_layers()[0]
    np.testing.assert_allclose(bn.running_mean, out.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, out.var(axis=0), rtol=1e-12)
    assert float(bn.count) == 50 * 64


def test_reset_batchnorm_stats(rng):
    net = small_cnn(rng)
    net.forward(rng.random((4, 1, 8, 8)), bn_mode="update")
    net.reset_batchnorm_stats()
    for bn in net.batchnorm_layers():
        np.testing.assert_array_equal(bn.running_mean, 0.0)
        np.testing.assert_array_equal(bn.running_var, 1.0)
        assert float(bn.count) == 0


# ---- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "epochs", "noise_eta"),
    [("mlp", 15, 0.0), ("mlp", 15, 0.038), ("cnn", 8, 0.0), ("cnn", 8, 0.038)],
)
def test_digits_accuracy(digits, arch, epochs, noise_eta):
    x_train, y_train, x_test, y_test = digits
    rng = np.random.default_rng(SEED)
    net = mlp(rng) if arch == "mlp" else small_cnn(rng)
    history = train(
        net,
        x_train,
        y_train,
        epochs=epochs,
        lr=0.05,
        rng=rng,
        noise_eta=noise_eta,
        x_val=x_test,
        y_val=y_test,
    )
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] == net.accuracy(x_test, y_test, batch=100)
    assert net.accuracy(x_test, y_test) > 0.93


def test_training_is_deterministic(digits):
    x_train, y_train, *_ = digits
    x, y = x_train[:300], y_train[:300]

    def run(seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        net = small_cnn(rng)
        train(net, x, y, epochs=2, lr=0.05, rng=rng, noise_eta=0.038, weight_decay=1e-4)
        return [v for layer in net.layers for v in layer.state().values()]

    first, second, other = run(1), run(1), run(2)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_training_on_blobs_with_hooks(rng):
    """Training with software-equivalent hooks is training without them."""
    x, y = synthetic_blobs(200, 5, 3, rng)

    def trained(use_hooks: bool) -> Network:
        r = np.random.default_rng(3)
        net = Network([Dense(5, 16, rng=r), BatchNorm(16), ReLU(), Dense(16, 3, rng=r)])

        def matmul(k: int, a: np.ndarray) -> np.ndarray:
            return a @ net.weight_layers()[k].weight

        def matmul_t(k: int, g: np.ndarray) -> np.ndarray:
            return g @ net.weight_layers()[k].weight.T

        hooks = {"matmul": matmul, "matmul_t": matmul_t} if use_hooks else {}
        train(net, x, y, epochs=5, lr=0.05, batch=32, rng=r, **hooks)
        assert net.accuracy(x, y) > 0.9
        return net

    for a, b in zip(trained(False).parameters(), trained(True).parameters(), strict=True):
        np.testing.assert_array_equal(a[1], b[1])


# ---- data -------------------------------------------------------------------------------------


def test_digits_split(digits):
    x_train, y_train, x_test, y_test = digits
    assert len(x_train) + len(x_test) == 1797
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == np.float32
    assert y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() == 1.0
    assert len(x_test) == pytest.approx(0.3 * 1797, abs=1)
    share_train = np.bincount(y_train) / len(y_train)
    share_test = np.bincount(y_test) / len(y_test)
    np.testing.assert_allclose(share_train, share_test, atol=0.01)  # stratified
    again = load_digits_split(seed=0)
    np.testing.assert_array_equal(again[1], y_train)
    assert not np.array_equal(load_digits_split(seed=1)[1], y_train)


def test_synthetic_blobs(rng):
    x, y = synthetic_blobs(100, 7, 4, rng)
    assert x.shape == (100, 7) and x.dtype == np.float32
    assert y.shape == (100,) and set(np.unique(y)) <= {0, 1, 2, 3}
