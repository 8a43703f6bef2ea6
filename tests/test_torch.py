"""Any torch model on the chip (pcm_hil.torch): layers, mapping, refusal, batch norm, the
experiment and the CLI. Skipped, saying so, without torch (.ci/run installs the CPU build)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
nn = torch.nn

from pcm_hil.analog.inference import drift_experiment  # noqa: E402
from pcm_hil.analog.recipes import trained  # noqa: E402
from pcm_hil.cli.main import main  # noqa: E402
from pcm_hil.drivers.chip import PcmChip  # noqa: E402
from pcm_hil.nn.data import load_digits_split  # noqa: E402
from pcm_hil.records.store import RunStore  # noqa: E402
from pcm_hil.torch import AnalogModel, TorchNetwork  # noqa: E402
from pcm_hil.torch.training import weight_noise  # noqa: E402
from pcm_hil.torch.zoo import from_network, resnet  # noqa: E402

SEED = 3


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


def _double(model: nn.Module) -> nn.Module:
    return model.double().eval()


# --- the layers compute what torch computes ------------------------------------------------------


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=3, out_channels=6, kernel_size=3, stride=1, padding=1),
        dict(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
        dict(in_channels=4, out_channels=6, kernel_size=3, dilation=2, padding=2, bias=False),
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2),
        dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=3),
    ],
)
def test_a_convolution_unfolded_into_products_is_torchs(conv):
    torch.manual_seed(SEED)
    model = _double(nn.Sequential(nn.Conv2d(**conv), nn.ReLU(), nn.Flatten()))
    network = TorchNetwork(model)
    # one weight layer per group, each (C_in/groups·kh·kw × C_out/groups)
    groups = conv.get("groups", 1)
    kh, kw = np.broadcast_to(conv["kernel_size"], 2)
    assert [w.weight.shape for w in network.weight_layers()] == [
        (conv["in_channels"] // groups * kh * kw, conv["out_channels"] // groups)
    ] * groups
    x = torch.randn(5, conv["in_channels"], 9, 7, dtype=torch.float64)
    expected = model(x).detach().numpy()
    np.testing.assert_allclose(network.forward(x.numpy()), expected, rtol=1e-12, atol=1e-12)


def test_products_on_the_chip_are_the_mappings_and_within_its_error():
    torch.manual_seed(SEED)
    model = _double(nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)))
    x = np.random.default_rng(SEED).random((256, 1, 8, 8))
    with PcmChip.open(f"emulator?seed={SEED}") as chip:
        analog = AnalogModel(model, chip)
        analog.calibrate(x)
        result = analog.program()
        assert result.converged.mean() > 0.97
        # every weight layer's product goes through the shared mapping (AnalogNetwork.matmul)
        calls = []
        chip_matmul = analog.analog.matmul

        def recording(k, x2d):
            calls.append((k, x2d.copy()))
            y = chip_matmul(k, x2d)
            calls[-1] += (y,)
            return y

        analog.analog.matmul = recording
        out = analog(torch.from_numpy(x)).numpy()
    assert [k for k, _x, _y in calls] == [0, 1]
    np.testing.assert_array_equal(calls[0][1], x.reshape(256, 64))
    hidden = np.maximum(calls[0][2] + model[1].bias.detach().numpy(), 0)
    np.testing.assert_allclose(calls[1][1], hidden, rtol=1e-12)
    np.testing.assert_allclose(out, calls[1][2] + model[3].bias.detach().numpy(), rtol=1e-12)
    expected = model(torch.from_numpy(x)).detach().numpy()
    # drift during programming: each device verified 20 s after its last pulse, the first to
    # converge minutes before the end (30 iterations: 600 s) — at ν ≈ 0.05, (580/20)^−ν ≈ 0.85
    # (GDC's reference is taken after programming, so it is not compensated); measured over
    # seeds 0–13 of this test: 0.73–0.88
    scale = np.sum(out * expected) / np.sum(expected * expected)
    assert 0.7 < scale < 0.92
    error = np.sqrt(np.mean((out - scale * expected) ** 2)) / np.sqrt(np.mean(expected**2))
    # the rest: programming σ (≈0.3–1 µS of 25 µS on each device of a pair), read noise and
    # 8-bit converters on untrained random weights and inputs: measured 0.09–0.28 over seeds
    # 0–13 (stuck devices and drift vary the most from chip to chip)
    assert 0.01 < error < 0.3


def test_a_model_too_large_for_the_chip_is_refused_naming_devices():
    model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 512))
    with PcmChip.open("emulator?profile=small") as chip:  # 4 tiles of 64×64
        with pytest.raises(
            ValueError,
            match=r"more than the chip's 4 tiles of 64×64 \(16,384 devices\): 3,145,728 devices",
        ):
            AnalogModel(model, chip)
    with pytest.raises(ValueError, match=r"no nn\.Linear or nn\.Conv2d"):
        TorchNetwork(nn.Sequential(nn.ReLU()))


# --- batch norm, recalibrated through the chip ------------------------------------------------------


def test_recalibrated_batchnorm_statistics_are_those_of_the_chips_outputs():
    torch.manual_seed(SEED)
    model = _double(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()))
    x = np.random.default_rng(SEED).random((64, 1, 8, 8))
    with PcmChip.open(f"emulator?seed={SEED}") as chip:
        analog = AnalogModel(model, chip)
        analog.calibrate(x)
        analog.program()
        chip.advance(86400.0)
        # the convolution's outputs on the chip in the recalibration pass itself
        conv = analog.network.model[0]
        seen = []
        handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
        analog.recalibrate_batchnorm(x, batch=len(x))
        handle.remove()
        outputs = seen[0].numpy()  # (64, 4, 8, 8)
    norm = analog.network.model[1]
    np.testing.assert_allclose(norm.running_mean.numpy(), outputs.mean(axis=(0, 2, 3)), rtol=1e-9)
    values = outputs.transpose(1, 0, 2, 3).reshape(4, -1)
    np.testing.assert_allclose(norm.running_var.numpy(), values.var(axis=1, ddof=1), rtol=1e-9)
    # the model given is left as it was
    assert torch.equal(model[1].running_mean, torch.zeros(4, dtype=torch.float64))


# --- one mapping, two front ends -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_numpy_networks_and_their_torch_twins_give_the_same_accuracies(name, digits):
    network = trained(name, digits, seed=0)
    twin = from_network(network)
    x = digits[2][:50]
    np.testing.assert_allclose(
        twin(torch.from_numpy(x).double()).detach().numpy(), network.logits(x), atol=1e-10
    )

    def run(front):
        return drift_experiment(
            lambda i: PcmChip.open(f"emulator?seed={SEED + i}"),
            {"w": front},
            digits,
            fp_accuracy=0.0,
            times_s=(1.0, 86400.0),
            chips=1,
        ).accuracies

    numpy_path, torch_path = run(network), run(TorchNetwork(twin))
    assert numpy_path.keys() == torch_path.keys()
    for key, value in numpy_path.items():
        if key[2] == "gdc+bn":  # torch keeps the unbiased batch variance: a sample or two
            assert abs(value[0] - torch_path[key][0]) <= 0.005
        else:  # the same commands to the same chip: the same accuracy
            assert value == torch_path[key]


# --- noise-aware training --------------------------------------------------------------------------------


def test_weight_noise_is_relative_gaussian_and_leaves_the_weights_as_they_were():
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Conv2d(3, 8, 3))
    clean = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(SEED)
    with weight_noise(model, 0.1, generator):
        linear = model[0].weight.detach()
        noise = (linear - clean[0]) / (0.1 * clean[0].abs().max())
        # 60,000 draws: mean 0 ± 0.004, std 1 ± 0.003 (1σ)
        assert abs(float(noise.mean())) < 0.02 and abs(float(noise.std()) - 1.0) < 0.015
        assert not torch.equal(model[2].weight, clean[2])
        assert torch.equal(model[0].bias, clean[1])  # biases stay clean
        loss = model[0](torch.ones(1, 200)).sum()
        loss.backward()
    for parameter, before in zip(model.parameters(), clean, strict=True):
        assert torch.equal(parameter.detach(), before)
    assert model[0].weight.grad is not None  # the gradient at the noisy weights is kept


# --- the bundled ResNet and the CLI ------------------------------------------------------------------


def test_the_bundled_resnet_fits_the_default_chip():
    model = resnet(0)
    with PcmChip.open("emulator?seed=0") as chip:
        analog = AnalogModel(model, chip)
        tiles = {block.tile for block in analog.analog.blocks}
    assert analog.devices() == 2 * 77_072 and tiles == {0, 1, 2}
    assert len(analog.network.weight_layers()) == 10


LAB_MODULE = """
import numpy as np
from torch import nn
from pcm_hil.nn.data import load_digits_split

def model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

def data():
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    return x_train[:256], y_train[:256], x_test[:200], y_test[:200]
"""


def test_the_cli_runs_a_labs_own_model(tmp_path, monkeypatch, capsys, digits):
    (tmp_path / "lab_models.py").write_text(LAB_MODULE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import lab_models

    from pcm_hil.torch.training import accuracy, train_classifier

    model = train_classifier(lab_models.model(), digits[0], digits[1], epochs=10, lr=0.05)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    fp = accuracy(model, digits[2][:200], digits[3][:200])
    command = [
        "infer", "--model", "lab_models:model", "--weights", "model.pt",
        "--data", "lab_models:data", "--chips", "2", "--times", "1", "86400", "--json",
    ]  # fmt: skip
    assert main(command) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "lab_models:model" and summary["fp_accuracy"] == pytest.approx(fp)
    points = {(p["t_s"], p["compensation"]): p for p in summary["points"]}
    assert set(points) == {(1.0, "none"), (1.0, "gdc"), (86400.0, "none"), (86400.0, "gdc")}
    assert all(p["chips"] == 2 and p["weights"] == "model" for p in points.values())
    assert fp - 0.06 < points[(1.0, "gdc")]["accuracy_mean"] <= 1.0  # a point or two lost
    with RunStore(readonly=True) as store:
        run = store.run(summary["run_id"])
        assert (
            run.identity["model"] == "PCM-EMULATOR"
            and run.parameters["model"] == "lab_models:model"
        )
    # one line, nothing recorded: a factory that is not there, weights of another model
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    for bad, message in (
        (["--model", "lab_models:nope", "--data", "lab_models:data"], "lab_models has no nope"),
        (["--model", "lab_models:model", "--data", "lab_models:data", "--weights", "other.pt"], "--weights other.pt"),
        (["--model", "lab_models:model"], "--model needs --data"),
    ):  # fmt: skip
        assert main(["infer", *bad, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


# --- in-situ training ------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2])
def test_gradients_through_chip_layers_are_torchs_own(groups):
    """With software products, the weight gradients a chip layer hands to the trainer (xᵀ·g
    per weight layer, per group) and the input gradients (through the transposed product)
    are exactly torch's."""
    torch.manual_seed(SEED)
    model = _double(
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, stride=2, groups=groups),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 5),
        )
    )
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    nn.functional.cross_entropy(model(x), y).backward()
    network = TorchNetwork(model)
    network.zero_grad()
    network.training_on_chip = True
    inputs = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(network.run(inputs, None, train=True), y).backward()
    conv, linear = model[0], model[3]
    per = 4 // groups
    for g in range(groups):
        expected = conv.weight.grad[g * per : (g + 1) * per].reshape(per, -1).T.numpy()
        np.testing.assert_allclose(network.weight_layers()[g].grad_weight, expected, atol=1e-12)
    np.testing.assert_allclose(
        network.weight_layers()[groups].grad_weight, linear.weight.grad.T.numpy(), atol=1e-12
    )
    x.requires_grad_(True)
    nn.functional.cross_entropy(model(x), y).backward()
    np.testing.assert_allclose(inputs.grad.numpy(), x.grad.numpy(), atol=1e-12)


def test_in_situ_training_of_a_torch_model_is_the_numpy_trainers(digits):
    """The same network, chip seed, shuffles and schedule: the torch front end sends the
    chip the same commands as the numpy one — the same pulses, the same accuracies."""
    from pcm_hil.analog.insitu import train_on_chip
    from pcm_hil.nn.zoo import mlp
    from pcm_hil.torch.insitu import ChipTrainer

    small = (digits[0][:400], digits[1][:400], digits[2][:200], digits[3][:200])
    with PcmChip.open(f"emulator?seed={SEED}") as chip:
        reference = train_on_chip(chip, small, seed=SEED, epochs=2, hidden=32)
    model = from_network(mlp(np.random.default_rng(SEED), hidden=32))
    with PcmChip.open(f"emulator?seed={SEED}") as chip:
        trainer = ChipTrainer(model, chip)
        result = trainer.train(
            small[0], small[1], epochs=2, lr=0.2, batch=10, seed=SEED, schedule="linear",
            x_test=small[2], y_test=small[3],
        )  # fmt: skip
        on_chip = trainer.accuracy(small[2], small[3])
    assert result.pulses_applied == reference["pulses_applied"] > 1000
    assert result.refreshed_pairs == reference["refreshed_pairs"]
    assert result.history[-1]["test_accuracy"] == reference["chip_accuracy"] > 0.7
    # a fresh read of the same chip: its read noise moves a few of the 200 images
    assert abs(on_chip - reference["chip_accuracy"]) < 0.05
    # the model handed in is left as it was; the trainer's copy learned
    first = model[1].bias.detach().numpy()
    assert not np.allclose(trainer.model[1].bias.detach().numpy(), first)


def test_a_model_on_a_served_chip_is_the_same_as_in_process():
    """Over TCP the same commands reach the same chip: the same programming and products."""
    from pcm_hil.emulator import WireInterface, make_chip
    from pcm_hil.emulator.servers.tcp import TcpServer

    torch.manual_seed(SEED)
    model = _double(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)))
    x = np.random.default_rng(SEED).random((32, 1, 4, 4))
    outputs = []
    with TcpServer(WireInterface(make_chip("tiny", seed=SEED))) as server:
        with PcmChip.open(server.resource) as chip:
            analog = AnalogModel(model, chip)
            analog.calibrate(x)
            served = analog.program()
            outputs.append(analog(torch.from_numpy(x)).numpy())
    with PcmChip.open(f"emulator?profile=tiny&seed={SEED}") as chip:
        analog = AnalogModel(model, chip)
        analog.calibrate(x)
        local = analog.program()
        outputs.append(analog(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(served.final_uS, local.final_uS)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_the_cli_runs_the_bundled_resnet(capsys):
    command = ["infer", "--network", "resnet", "--chips", "1", "--times", "1", "--json"]
    assert main([*command, "--resource", "emulator?seed=2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["network"] == "resnet" and summary["fp_accuracy"] > 0.97
    points = {(p["weights"], p["compensation"]): p["accuracy_mean"] for p in summary["points"]}
    assert set(points) == {
        (w, c) for w in ("plain", "noise-aware") for c in ("none", "gdc", "gdc+bn")
    }
    assert points[("noise-aware", "gdc+bn")] > summary["fp_accuracy"] - 0.02


def test_a_shared_layer_is_one_chip_layer_used_wherever_the_model_uses_it():
    torch.manual_seed(SEED)
    block = nn.Linear(16, 16)
    model = _double(nn.Sequential(block, nn.ReLU(), block))
    network = TorchNetwork(model)
    assert [type(m).__name__ for m in network.model] == ["ChipLinear", "ReLU", "ChipLinear"]
    assert network.model[0] is network.model[2] and len(network.weight_layers()) == 1
    calls = []

    def hook(k, x2d):
        calls.append(k)
        return x2d @ network.weight_layers()[k].weight

    x = torch.randn(3, 16, dtype=torch.float64)
    np.testing.assert_allclose(
        network.forward(x.numpy(), matmul=hook), model(x).detach(), atol=1e-12
    )
    assert calls == [0, 0]  # both uses on the chip


def test_a_layer_whose_weight_its_parent_reads_is_refused_not_run_in_software():
    class ReadsWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.bypassed = nn.Linear(8, 8)

        def forward(self, x):
            return self.used(x) @ self.bypassed.weight.T

    with PcmChip.open("emulator?profile=small") as chip:
        analog = AnalogModel(ReadsWeight().double(), chip)
        with pytest.raises(ValueError, match=r"weight layer\(s\) 1 of 2 were not used"):
            analog.calibrate(np.ones((4, 8)))
    # a subclass of nn.Linear whose parent reads its weight (attention) stays in torch
    attention = nn.MultiheadAttention(8, 2)
    with pytest.raises(ValueError, match=r"no nn\.Linear or nn\.Conv2d"):
        TorchNetwork(nn.Sequential(attention))


def test_mistakes_in_a_labs_own_code_are_one_line_naming_the_option(tmp_path, monkeypatch, capsys):
    (tmp_path / "lab_bad.py").write_text(
        "from torch import nn\n"
        "def needs_arg(width):\n    return nn.Linear(64, width)\n"
        "def model():\n    return nn.Sequential(nn.Flatten(), nn.Linear(10, 10))\n"
        "def data_none():\n    return None\n"
        "def data():\n    import numpy as np\n"
        "    return np.zeros((600, 1, 8, 8)), np.zeros(600, int)\n"
    )
    (tmp_path / "lab_syntax.py").write_text("def f(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for options, message in (
        (["--model", "lab_bad:needs_arg", "--data", "lab_bad:data"], "--model lab_bad:needs_arg: TypeError"),
        (["--model", "lab_syntax:f", "--data", "lab_bad:data"], "cannot import lab_syntax"),
        (["--model", "lab_bad:model", "--data", "lab_bad:data_none"], "returned NoneType"),
        (["--model", "lab_bad:model", "--data", "lab_bad:data"], "does not take --data lab_bad:data's inputs"),
    ):  # fmt: skip
        assert main(["infer", *options, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
