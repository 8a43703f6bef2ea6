"""In-situ mixed-precision training: χ bookkeeping and refresh on a stub chip that records its
pulses, and training on an in-process emulated chip (small profile, digits subset)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pcm_hil.analog.insitu import InSituTrainer, StepModel, UpdateRule, train_on_chip
from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.nn.data import load_digits_split
from pcm_hil.nn.zoo import mlp
from pcm_hil.procedures.program import published_programming_sigma


@dataclass(frozen=True)
class StubConfig:
    tiles: int = 4
    rows: int = 64
    columns: int = 64
    mvm_input_max_V: float = 0.2
    mvm_output_max_uA: float = 9.6
    g_max_uS: float = 25.0

    @property
    def devices_per_tile(self) -> int:
        return self.rows * self.columns


class StubChip:
    """Ideal, noiseless devices that record every pulse command: a pulse at ≥ 200 µA RESETs
    to 0.1 µS, one at 40…200 µA adds exactly the step model's mean step."""

    def __init__(self) -> None:
        self.config = StubConfig()
        shape = (self.config.tiles, self.config.rows * self.config.columns)
        self.g = np.full(shape, 0.1)
        self.n = np.zeros(shape, dtype=np.int64)
        self.pulses: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.model = StepModel()

    def pulse(self, tile, addresses, amplitude_uA, width_ns) -> None:
        addresses = np.asarray(addresses, dtype=np.int64)
        assert np.unique(addresses).size == addresses.size, "one pulse per device per command"
        amplitude = np.broadcast_to(np.asarray(amplitude_uA, dtype=np.float64), addresses.shape)
        width = np.broadcast_to(np.asarray(width_ns, dtype=np.float64), addresses.shape)
        self.pulses.append((int(tile), addresses.copy(), amplitude.copy(), width.copy()))
        melt = addresses[amplitude >= 200]
        self.g[tile, melt], self.n[tile, melt] = 0.1, 0
        partial = (amplitude >= 40) & (amplitude < 200)
        where = addresses[partial]
        strength = (amplitude[partial] - 40) / 50 * width[partial] / 50
        step = self.model.mean(self.g[tile, where], self.n[tile, where], strength)
        self.g[tile, where] += step
        self.n[tile, where] += 1

    def read(self, tile, addresses) -> np.ndarray:
        return self.g[tile, np.asarray(addresses, dtype=np.int64)].copy()


def stub_trainer(rule: UpdateRule | None = None) -> tuple[StubChip, InSituTrainer]:
    chip = StubChip()
    # hidden 64: the first layer spans two tiles (32 outputs per 64-column tile)
    analog = AnalogNetwork(chip, mlp(np.random.default_rng(0), hidden=64))
    return chip, InSituTrainer(analog, rule)


def test_chi_becomes_whole_pulses_on_the_matching_device():
    chip, trainer = stub_trainer()
    rule = trainer.rule
    eps = rule.epsilon_uS
    rng = np.random.default_rng(1)
    shape = trainer.chi[0].shape
    # whole multiples 0…6 of ε plus a fraction well away from the rounding boundaries
    multiples = rng.integers(0, 7, size=shape)
    chi = rng.choice([-1.0, 1.0], size=shape) * (multiples + rng.uniform(0.05, 0.95, shape)) * eps
    trainer.chi[0][...] = chi
    trainer.chi[1][...] = 0.2 * eps  # below ε: nothing happens, χ is kept
    trainer.apply_pulses()

    expected = np.minimum(multiples, rule.max_pulses)
    np.testing.assert_allclose(trainer.chi[0], chi - np.sign(chi) * expected * eps, atol=1e-12)
    np.testing.assert_array_equal(trainer.chi[1], 0.2 * eps)
    assert trainer.pulses_applied == expected.sum()

    # count the pulses each device got
    got = np.zeros_like(chip.g, dtype=np.int64)
    for tile, addresses, amplitude, width in chip.pulses:
        np.add.at(got[tile], addresses, 1)
        np.testing.assert_array_equal(amplitude, rule.set_amplitude_uA)
        assert ((width >= rule.width_min_ns) & (width <= rule.width_max_ns)).all()
    tiles, plus, minus = trainer.tiles[0], trainer.addresses[0][0], trainer.addresses[0][1]
    np.testing.assert_array_equal(got[tiles, plus], np.where(chi > 0, expected, 0))
    np.testing.assert_array_equal(got[tiles, minus], np.where(chi < 0, expected, 0))
    assert got.sum() == expected.sum()  # nothing else was pulsed

    # one batched command per tile per round
    rounds = rule.max_pulses
    assert len(np.unique(tiles)) == 2
    assert [p[0] for p in chip.pulses] == [0, 1] * rounds


def test_pulses_are_stretched_so_each_expected_step_is_epsilon():
    chip, trainer = stub_trainer()
    eps = trainer.rule.epsilon_uS
    tiles, plus = trainer.tiles[0], trainer.addresses[0][0]
    trainer.g_est[0][0][...] = chip.g[tiles, plus] = 6.0  # high devices need longer pulses
    trainer.n_est[0][0][...] = chip.n[tiles, plus] = 20
    trainer.chi[0][...] = 1.5 * eps
    trainer.apply_pulses()
    np.testing.assert_allclose(chip.g[tiles, plus], 6.0 + eps, rtol=1e-6)
    np.testing.assert_allclose(trainer.g_est[0][0], 6.0 + eps, rtol=1e-6)


def test_refresh_reprograms_the_pairs_above_the_thresholds():
    chip, trainer = stub_trainer()
    trainer.program_initial_weights()
    rule = trainer.rule
    tiles, plus, minus = trainer.tiles[1], trainer.addresses[1][0], trainer.addresses[1][1]
    # pair (0, 0): both devices high; (1, 0): one near saturation; (2, 0): below both
    cases = {(0, 0): (5.0, 4.0), (1, 0): (26.0, 3.5), (2, 0): (2.5, 0.2)}
    for (i, j), (g_plus, g_minus) in cases.items():
        chip.g[tiles[i, j], plus[i, j]] = g_plus
        chip.g[tiles[i, j], minus[i, j]] = g_minus
    before = chip.g.copy()
    chip.pulses.clear()

    assert trainer.refresh() == 2
    assert trainer.refreshed_pairs == 2
    for (i, j), (g_plus, g_minus) in cases.items():
        new_plus, new_minus = chip.g[tiles[i, j], plus[i, j]], chip.g[tiles[i, j], minus[i, j]]
        if (i, j) == (2, 0):
            assert (new_plus, new_minus) == (g_plus, g_minus)  # left alone
        else:
            # RESET both, the difference back on G+ (G− at its RESET and conditioning level)
            assert new_minus < 0.5
            assert abs((new_plus - new_minus) - (g_plus - g_minus)) < 0.5
    # the other pairs were read but not pulsed
    pulsed = np.zeros_like(chip.g, dtype=bool)
    for tile, addresses, _, _ in chip.pulses:
        pulsed[tile, addresses] = True
    assert pulsed.sum() == 4
    np.testing.assert_array_equal(chip.g[~pulsed], before[~pulsed])
    # every command batches a tile's devices: RESET, conditioning, programming rounds
    assert len(chip.pulses) >= 1 + rule.condition_pulses


def test_refresh_on_the_emulator_moves_a_pair_off_its_common_conductance():
    chip = PcmChip(InProcessTransport("emulator", WireInterface(make_chip("small", seed=3))))
    trainer = InSituTrainer(AnalogNetwork(chip, mlp(np.random.default_rng(3), hidden=32)))
    trainer.program_initial_weights()
    tiles, addresses = trainer.tiles[1], trainer.addresses[1]
    live = trainer.live[1][:8, 0]
    rows = np.flatnonzero(live)[:4]
    tile = int(tiles[0, 0])
    both = np.concatenate([addresses[0][rows, 0], addresses[1][rows, 0]])
    for _ in range(6):  # raise both devices of these pairs well above 3 µS
        chip.pulse(tile, both, 90.0, 200.0)
    # read each set t0 after its pulses: at the same age, not in the first seconds of drift
    # (where a read shows (t0/t)^ν above G(t0), ν per device)
    chip.advance(20.0)
    g_plus, g_minus = chip.read(tile, both[: rows.size]), chip.read(tile, both[rows.size :])
    assert (np.minimum(g_plus, g_minus) > trainer.rule.refresh_common_uS).all()

    assert trainer.refresh() >= rows.size
    chip.advance(20.0)
    after_plus = chip.read(tile, both[: rows.size])
    after_minus = chip.read(tile, both[rows.size :])
    assert (np.minimum(after_plus, after_minus) < 1.5).all()
    # the difference survives, within programming and read noise: the test's reads before
    # and after, the refresh's own reads of both devices and the programming of one, each
    # with the published σ_prog at its conductance (read noise included); 3 σ per pair
    before, after = g_plus - g_minus, after_plus - after_minus
    sigma = np.sqrt(
        2 * published_programming_sigma(g_plus) ** 2
        + 2 * published_programming_sigma(g_minus) ** 2
        + published_programming_sigma(np.abs(before)) ** 2
    )
    assert (np.abs(after - before) < 3 * sigma).all(), (after, before, sigma)
    assert np.abs(before).max() > 3 * sigma.max()  # at least one pair has a clear sign
    clear = np.abs(before) > 3 * sigma
    assert (np.sign(after[clear]) == np.sign(before[clear])).all()


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    return x_train[:600], y_train[:600], x_test, y_test


def test_training_on_the_emulator_improves_accuracy_clearly(digits):
    """On each of three chips (small profile, the network seeded like the chip), from chance
    to above 85 %. Measured on chips 0…7: 5…16 % before training, 91.7…93.7 % after (mean
    92.3 %), so every chip clears the bounds by 6 points or more."""
    x_train, y_train, x_test, y_test = digits
    for seed in (5, 6, 7):
        chip = PcmChip.open(f"emulator?profile=small&seed={seed}")
        network = mlp(np.random.default_rng(seed), hidden=32)
        trainer = InSituTrainer(AnalogNetwork(chip, network))
        trainer.program_initial_weights()
        before = network.accuracy(x_test, y_test, matmul=trainer.matmul)
        result = trainer.train(
            x_train, y_train, epochs=6, lr=0.2, rng=np.random.default_rng(seed), schedule="linear"
        )
        after = network.accuracy(x_test, y_test, matmul=trainer.matmul)
        assert before < 0.3, (seed, before)
        assert after > 0.85, (seed, after)
        assert result.pulses_applied > 1000, seed
        assert result.status == "completed", seed


def test_train_on_chip_lands_near_software_and_is_deterministic(digits):
    """Over four chips (small profile, hidden 32, 6 epochs, chip and network seeded alike):
    floating point above 90 % on each; the chip within 3 points of it on average and within
    5 points on every chip. Measured on chips 0…7: floating point 93.3…94.8 %, the chip
    1.30, 2.96, 1.48, 2.04, 2.59, 1.48, 2.04, 1.85 points below (mean 1.97, standard
    deviation 0.58; on chips 4…7, used here, mean 1.99, worst 2.59). The per-chip bound
    leaves room for the worst chip seen (2.96); the mean bound is 1.0 point beyond the
    eight chips' mean, 3.5 standard errors of a four-chip mean. The run is deterministic:
    repeated on chip 7, every result but the elapsed time is the same."""

    def run(seed: int) -> dict:
        chip = PcmChip.open(f"emulator?profile=small&seed={seed}")
        events = []
        result = train_on_chip(
            chip,
            digits,
            hidden=32,
            epochs=6,
            lr=0.2,
            batch=10,
            seed=seed,
            listeners=[events.append],
        )
        assert [e.kind for e in events] == ["start"] + ["step"] * 6 + ["end"]
        return result

    results = {seed: run(seed) for seed in (4, 5, 6, 7)}
    for seed, result in results.items():
        assert set(result) == {
            "fp_accuracy",
            "chip_accuracy",
            "epochs",
            "pulses_applied",
            "elapsed_s",
            "refreshed_pairs",
        }
        assert result["epochs"] == 6
        assert result["fp_accuracy"] > 0.9, (seed, result)
        assert result["chip_accuracy"] > result["fp_accuracy"] - 0.05, (seed, result)
    gaps = np.array([r["chip_accuracy"] - r["fp_accuracy"] for r in results.values()])
    assert gaps.mean() > -0.03, gaps

    first, second = results[7], run(7)
    first.pop("elapsed_s")
    second.pop("elapsed_s")
    assert first == second
