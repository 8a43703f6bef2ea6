"""The levels of a programming run and the statistics per level (pcm_hil.procedures.levels),
against the same statistics computed device by device."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.procedures.levels import (
    BINS,
    DISTINCT_MAX,
    error_statistics,
    level_sums,
    levels_of,
    statistics_from_sums,
)
from pcm_hil.procedures.program import ProgramResult, level_targets, published_programming_sigma


def fake_result(targets: np.ndarray, seed: int = 0) -> ProgramResult:
    """A programming result with known errors: final = target + N(0.1, 0.5), repeat = final +
    N(0, 0.2); 5% not converged (their final NaN), 1% of the converged never read twice."""
    rng = np.random.default_rng(seed)
    n = targets.size
    final = (targets + rng.normal(0.1, 0.5, n)).astype(np.float32)
    repeat = (final + rng.normal(0.0, 0.2, n)).astype(np.float32)
    converged = rng.random(n) > 0.05
    final[~converged] = np.nan
    repeat[~converged | (rng.random(n) < 0.01)] = np.nan
    return ProgramResult(
        strategy="amplitude",
        tolerance_uS=1.2,
        max_iterations=30,
        tile=np.zeros(n, int),
        address=np.arange(n),
        target_uS=targets.astype(np.float32),
        converged=converged,
        stuck=~converged & (rng.random(n) < 0.5),
        iterations=rng.integers(1, 30, n).astype(np.int32),
        final_uS=final,
        programmed_at_s=np.zeros(n),
        status="completed",
        elapsed_s=1.0,
        repeat_uS=repeat,
    )


def direct(result: ProgramResult, mine: np.ndarray) -> dict[str, float]:
    """The statistics of the converged devices ``mine``, straight from their definitions."""
    keep = mine & result.converged
    error = result.final_uS[keep].astype(np.float64) - result.target_uS[keep]
    twice = result.final_uS[keep].astype(np.float64) - result.repeat_uS[keep]
    twice = twice[np.isfinite(twice)]
    noise = twice.std() / np.sqrt(2)
    return {
        "error_mean_uS": error.mean(),
        "error_std_uS": error.std(),
        "read_noise_uS": noise,
        "programmed_spread_uS": np.sqrt(max(error.std() ** 2 - noise**2, 0.0)),
    }


def test_distinct_targets_are_the_levels_and_each_levels_statistics_are_its_devices():
    targets = level_targets(16, 25.0)[np.arange(16 * 500) % 16]
    result = fake_result(targets)
    summary = result.summary()
    assert [round(level["target_uS"], 4) for level in summary["levels"]] == [
        round(float(np.float32(t)), 4) for t in level_targets(16, 25.0)
    ]
    for level in summary["levels"]:
        mine = result.target_uS == np.float32(level["target_uS"])
        assert level["devices"] == mine.sum() == 500
        assert level["converged_fraction"] == pytest.approx(result.converged[mine].mean())
        assert level["stuck"] == result.stuck[mine].sum()
        for name, value in direct(result, mine).items():
            assert level[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert level["published_sigma_uS"] == pytest.approx(
            float(published_programming_sigma(level["target_uS"])), rel=1e-6
        )
        assert "target_low_uS" not in level
    everyone = np.ones(targets.size, bool)
    for name, value in direct(result, everyone).items():
        assert summary[name] == pytest.approx(value, rel=1e-6), name
    # the configured errors come back: mean 0.1, std 0.5, read noise 0.2/√2
    assert summary["error_mean_uS"] == pytest.approx(0.1, abs=0.02)
    assert summary["error_std_uS"] == pytest.approx(0.5, rel=0.03)
    assert summary["read_noise_uS"] == pytest.approx(0.2 / np.sqrt(2), rel=0.03)


def test_continuous_targets_are_binned_with_their_edges():
    """A network's weights: every target distinct. Sixteen bins from 0 to the top target, each
    at the mean target of its devices, its σ_prog the rms over them."""
    rng = np.random.default_rng(4)
    targets = np.abs(rng.normal(0.0, 6.0, 40_000)).clip(0, 24)
    targets[rng.random(targets.size) < 0.3] = 0.0  # the idle device of each pair
    result = fake_result(targets, seed=5)
    levels = result.summary()["levels"]
    assert 1 < len(levels) <= BINS
    top = float(result.target_uS.max())
    assert levels[0]["target_low_uS"] == 0.0
    assert levels[-1]["target_high_uS"] == pytest.approx(top, rel=1e-6)
    assert sum(level["devices"] for level in levels) == targets.size
    for level in levels:
        low, high = level["target_low_uS"], level["target_high_uS"]
        assert high - low == pytest.approx(top / BINS, rel=1e-6)
        inside = (result.target_uS >= low) & (result.target_uS < high)
        if high == pytest.approx(top, rel=1e-6):
            inside |= result.target_uS == np.float32(top)
        assert level["devices"] == inside.sum()
        assert low <= level["target_uS"] <= high
        assert level["target_uS"] == pytest.approx(result.target_uS[inside].mean(), rel=1e-5)
        for name, value in direct(result, inside).items():
            assert level[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        rms = np.sqrt(np.mean(published_programming_sigma(result.target_uS[inside]) ** 2))
        assert level["published_sigma_uS"] == pytest.approx(rms, rel=1e-6)


def test_levels_switch_to_bins_past_the_distinct_maximum():
    few = np.repeat(np.linspace(1, 20, DISTINCT_MAX), 3)
    assert levels_of(few).edges_uS is None and levels_of(few).count == DISTINCT_MAX
    many = np.repeat(np.linspace(1, 20, DISTINCT_MAX + 1), 3)
    binned = levels_of(many)
    assert binned.edges_uS is not None and binned.count <= BINS
    # levels hidden behind a sample of repeated values are still counted right
    rare = np.full(100_000, 5.0)
    rare[::1000] = np.linspace(0.1, 25, 100)  # 100 levels of one device in a thousand each
    assert levels_of(rare).edges_uS is not None
    # a plan of levels repeating with a period that divides the sample's stride is seen whole
    periodic = level_targets(16, 25.0)[np.arange(1 << 20) % 16]
    found = levels_of(periodic)
    assert found.count == 16 and found.edges_uS is None
    np.testing.assert_array_equal(found.target_uS[found.of_device], periodic)
    assert levels_of(np.zeros(0)).count == 0


def test_statistics_functions_agree_with_the_direct_ones_and_with_nothing_to_count():
    targets = level_targets(4, 25.0)[np.arange(4000) % 4]
    result = fake_result(targets, seed=9)
    levels = levels_of(result.target_uS)
    sums = level_sums(
        result.final_uS,
        result.repeat_uS,
        result.target_uS,
        levels.of_device,
        result.converged,
        levels.count,
    )
    assert sums.shape == (6, levels.count + 1)
    assert sums[0, -1] == np.count_nonzero(~result.converged)  # the last column: the rest
    per_level = statistics_from_sums(sums[:, : levels.count])
    for k in range(levels.count):
        for name, value in direct(result, levels.of_device == k).items():
            assert per_level[name][k] == pytest.approx(value, rel=1e-6), name
    overall = error_statistics(
        result.final_uS, result.repeat_uS, result.target_uS, result.converged
    )
    for name, value in direct(result, np.ones(4000, bool)).items():
        assert overall[name] == pytest.approx(value, rel=1e-6), name
    nothing = error_statistics(
        result.final_uS, result.repeat_uS, result.target_uS, np.zeros(4000, bool)
    )
    assert all(np.isnan(v) for v in nothing.values())
    # one device read twice: no read noise (and no spread) — not a zero
    one = np.zeros(4000, bool)
    one[np.flatnonzero(result.converged & np.isfinite(result.repeat_uS))[0]] = True
    single = error_statistics(result.final_uS, result.repeat_uS, result.target_uS, one)
    assert np.isfinite(single["error_mean_uS"]) and single["error_std_uS"] == 0.0
    assert np.isnan(single["read_noise_uS"]) and np.isnan(single["programmed_spread_uS"])
