"""Mixed-precision training with the weights on the chip: it reaches the floating-point
result on the digits, deterministically, and its updates really are pulses."""

from __future__ import annotations

import json

import numpy as np

from pcm_hil.analog.insitu import train_on_chip
from pcm_hil.cli.main import main
from pcm_hil.drivers import PcmChip
from pcm_hil.nn.data import load_digits_split, synthetic_blobs


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    x, y = synthetic_blobs(700, 64, 10, rng)
    return x[:500], y[:500], x[500:], y[500:]


def test_training_on_the_chip_reaches_the_floating_point_result():
    """The issue's figure, on the default emulator: within 1.0 point of the same network
    trained in floating point. (Over chips 0…3 the chip result is 0.56…1.67 points below,
    0.97 on average: see the closing note of issue #4.)"""
    with PcmChip.open("emulator") as chip:
        result = train_on_chip(chip, load_digits_split(seed=0), seed=0)
    assert result["fp_accuracy"] > 0.95
    assert result["chip_accuracy"] >= result["fp_accuracy"] - 0.01, result
    assert result["pulses_applied"] > 1000


def test_training_is_deterministic_and_pulses_are_counted():
    outcomes = []
    for _ in range(2):
        with PcmChip.open("emulator?profile=small&seed=3") as chip:
            outcomes.append(train_on_chip(chip, blobs(), hidden=32, epochs=2, seed=5))
    first, second = outcomes
    for key in ("chip_accuracy", "fp_accuracy", "pulses_applied", "refreshed_pairs"):
        assert first[key] == second[key], key
    assert first["pulses_applied"] > 0 and first["epochs"] == 2
    assert first["chip_accuracy"] > 0.5  # far above chance (0.1) after two epochs


def test_train_cli_json(capsys, tmp_path):
    code = main(
        [
            "train",
            "--resource",
            "emulator?profile=small&seed=2",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--json",
            "--runs",
            str(tmp_path / "runs.sqlite"),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("fp_accuracy", "chip_accuracy", "epochs", "pulses_applied", "elapsed_s"):
        assert key in result, key
    assert 0 <= result["chip_accuracy"] <= 1 and result["epochs"] == 1
