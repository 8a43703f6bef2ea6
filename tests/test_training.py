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


#: Chips (emulator seeds) the floating-point comparison is made on; the network, its initial
#: weights and its shuffles are the same (seed 0) on each.
CHIP_SEEDS = (0, 1, 2, 3)


def test_training_on_the_chip_reaches_the_floating_point_result():
    """The issue's figure, on the default emulator with the default training (hidden 128,
    20 epochs): on average over four chips, within 1.0 point of the same network trained in
    floating point, and on every chip within 2.0 points.

    The bounds come from measuring this configuration on chips 0…7 (the digits test split,
    540 images, one image = 0.185 points; floating point 97.96 %, 4.9 s per chip on a
    2-core machine): the chip result was 0.37, 0.74, 0.37, 0.37, 1.48, 0.37, 0.56, 0.56
    points below, mean 0.60, standard deviation 0.38; on chips 0…3, used here, mean 0.46,
    worst 0.74. The mean bound is the 1-point claim, 2.1 standard errors of a four-chip mean
    beyond the eight chips' mean; the per-chip bound is 3.7 standard deviations beyond it,
    with room for the worst chip seen (1.48). No single chip can carry the claim: the
    spread between chips is as large as the margin.
    """
    gaps = []
    for chip_seed in CHIP_SEEDS:
        with PcmChip.open(f"emulator?seed={chip_seed}") as chip:
            result = train_on_chip(chip, load_digits_split(seed=0), seed=0)
        assert result["fp_accuracy"] > 0.95, result
        assert result["pulses_applied"] > 1000, result
        gaps.append(result["chip_accuracy"] - result["fp_accuracy"])
    gaps = np.array(gaps)
    assert gaps.mean() >= -0.010, gaps  # within 1.0 point on average
    assert gaps.min() >= -0.020, gaps  # and within 2.0 points on every chip


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
