"""The default emulator against the published PCM model (aihwkit's, citing Joshi et al. 2020,
Nandakumar et al. 2019), where the default once departed from it:

1. drift follows the power law from shortly after programming (t_start = 0.1 s), agreeing
   with the published fit from t0 = 20 s on — no flat stretch before t0;
2. program-and-verify's programmed spread, 20 s after programming, is the published σ_prog at
   every level ≥ 1 µS, and the summary tells it apart from read noise;
3. the lowest of 16 levels (0.78 µS) lands within 0.1 µS of its target on average.

(The fourth, GDC leaving out stuck devices, is tests/test_inference.py's.)
"""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.calibration import DEFAULT_MODEL as M
from pcm_hil.emulator.devices import drift_exponent_stats
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.procedures.program import (
    level_targets,
    program_and_verify,
    published_programming_sigma,
)

#: z-score bound of the statistical checks.
Z = 4.0


def chip_and_driver(seed: int, rows: int = 128, columns: int = 128):
    chip = make_chip("small", seed=seed, tiles=1, rows=rows, columns=columns)
    return chip, PcmChip(InProcessTransport("emulator", WireInterface(chip)))


@pytest.mark.parametrize("seed", [0, 1])
def test_drift_follows_the_power_law_from_a_tenth_of_a_second(seed):
    """Devices melt-quenched at t = 0 and read at 0.01…100 s: the mean of ln(G(t)/G(t0)) over
    many reads of each device is −μ_ν(G)·ln(max(t, 0.1 s)/20 s) by the published μ_ν(G)
    (the devices' ν drawn around it), within its standard error — above G(t0) before t0,
    flat only before 0.1 s."""
    chip, driver = chip_and_driver(seed, 64, 64)
    n = 4096
    addresses = np.arange(n)
    currents = np.linspace(240.0, 460.0, n).astype(np.float32)
    driver.pulse(0, addresses, currents, 50.0)
    g_t0 = chip.devices.g_prog[0].astype(np.float64)
    mu, sigma = (a.astype(np.float64) for a in drift_exponent_stats(M, g_t0))
    elapsed = 0.0
    for t in (0.01, 0.1, 1.0, 5.0, 20.0, 100.0):
        driver.advance(t - elapsed)
        elapsed = t
        reads = np.asarray([driver.read(0, addresses) for _ in range(16)], np.float64)
        log_ratio = np.log(reads.mean(axis=0) / g_t0)
        lever = np.log(max(t, M.drift_t_start_s) / M.drift_t0_s)
        expected = -mu * lever
        # per device: ν's draw (σ_ν·|lever|) and the read noise of the mean of 16 reads
        noise = reads.std(axis=0, ddof=1) / reads.mean(axis=0) / 4.0
        spread = np.sqrt((sigma * lever) ** 2 + noise**2)
        error = np.sqrt(np.sum(spread**2)) / n
        assert abs(np.mean(log_ratio) - np.mean(expected)) <= Z * error, t
        if t < M.drift_t0_s:
            assert np.mean(log_ratio) > 0.04  # above G(t0): drifting toward it
    # before t_start the conductance does not move
    t_before = chip.devices.drifted(0, addresses, 0.05)
    np.testing.assert_array_equal(t_before, chip.devices.drifted(0, addresses, M.drift_t_start_s))


@pytest.fixture(scope="module", params=[0, 1, 3])
def sixteen_levels(request):
    """16,384 devices, 1,024 per level, programmed by the default program-and-verify, on
    three chips."""
    chip, driver = chip_and_driver(request.param)
    n = 128 * 128
    targets = level_targets(16, 25.0)[np.arange(n) % 16].astype(np.float32)
    result = program_and_verify(driver, 0, np.arange(n), targets)
    # the true conductance 20 s after each device's last pulse (G(t0), before read noise)
    g_t0 = chip.devices.g_prog[0, result.address].astype(np.float64)
    return result, g_t0


def test_programmed_spread_is_the_published_sigma_prog(sixteen_levels):
    """Per level ≥ 1 µS: the spread of the programmed conductances about their target
    (measured on the chip's state; 1,024 devices: ±2.2% sampling) against the published
    σ_prog: within 0.88…1.2 at every level and within ±10% at 12 or more of the 15 — measured
    on chips 0–5 (128×128 devices each): 0.90–1.19×, 12–14 levels within ±10%, the misses at
    5.5 and 7 µS (1.11–1.19×: the model's bias there, see the twin's notes). The summary's
    estimate of it, from each device's final and repeat reads, agrees with the truth within
    15%, and its read noise is the chip's at 20 s: σ = Q_s·√ln(20 s/2·t_read)·G."""
    result, g_t0 = sixteen_levels
    summary = result.summary()
    ratios = []
    for level in summary["levels"]:
        target = level["target_uS"]
        if target < 1.0:
            continue
        mine = (result.target_uS == np.float32(target)) & result.converged
        spread = (g_t0[mine] - target).std()
        sigma = float(published_programming_sigma(target))
        ratios.append(spread / sigma)
        assert level["programmed_spread_uS"] == pytest.approx(spread, rel=0.15), target
        q_s = 0.0088 * (target / 25.0) ** -0.65
        noise = q_s * np.sqrt(np.log(20 / 5e-7)) * target
        assert level["read_noise_uS"] == pytest.approx(noise, rel=0.15), target
    ratios = np.array(ratios)
    assert ratios.size == 15, ratios
    assert np.all((ratios > 0.88) & (ratios < 1.2)), ratios.round(3)
    assert np.count_nonzero(np.abs(ratios - 1) <= 0.10) >= 12, ratios.round(3)


def test_the_lowest_level_lands_on_its_target(sixteen_levels):
    """0.78 µS: the programmed conductances average within 0.1 µS of the target (they sat
    0.35 µS low with a fixed 0.5 µS tolerance); so does the mean error the summary reports."""
    result, g_t0 = sixteen_levels
    lowest = float(level_targets(16, 25.0)[0])
    mine = (result.target_uS == np.float32(lowest)) & result.converged
    assert mine.sum() > 0.95 * 1024
    assert abs(g_t0[mine].mean() - lowest) < 0.1
    assert abs(result.summary()["levels"][0]["error_mean_uS"]) < 0.1
