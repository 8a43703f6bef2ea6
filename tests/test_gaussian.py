"""The emulator's standard normal draws (pcm_hil.emulator.gaussian): a normal distribution in
its moments, its shape and its tails, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import ndtri

from pcm_hil.emulator.gaussian import SLICES, slice_means, standard_normal

N = 2_000_000
Z = 4.5  # bounds in standard errors: a seeded test that fails means a wrong distribution


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return standard_normal(np.random.default_rng(21), N).astype(np.float64)


def test_moments_are_a_standard_normals(draws):
    se = 1 / np.sqrt(N)
    assert abs(draws.mean()) < Z * se
    assert abs(draws.var() - 1) < Z * np.sqrt(2 / N)
    assert abs(stats.skew(draws)) < Z * np.sqrt(6 / N)
    assert abs(stats.kurtosis(draws)) < Z * np.sqrt(24 / N)
    # successive draws (four share a 64-bit word of the generator) are uncorrelated
    for lag in (1, 2, 3, 4, 5):
        assert abs(np.corrcoef(draws[:-lag], draws[lag:])[0, 1]) < Z * se, lag


def test_the_shape_is_a_normals(draws):
    assert stats.kstest(draws[:200_000], "norm").pvalue > 1e-3
    # the fraction below each quantile, through the body and into the tails
    for p in (1e-4, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-4):
        below = np.mean(draws < ndtri(p))
        assert abs(below - p) < Z * np.sqrt(p * (1 - p) / N), p


def test_the_tails_are_drawn_exactly_beyond_the_table():
    """Beyond |z| = 4.17 (the outermost slices, probability 2/2^16) each draw is exact: the
    tail's draws are spread like the normal's conditioned on the tail, not piled on one
    value, and reach past 5."""
    draws = standard_normal(np.random.default_rng(5), 20_000_000).astype(np.float64)
    edge = -ndtri(1 / SLICES)
    tail = np.abs(draws[np.abs(draws) > edge])
    expected = 2 * stats.norm.sf(edge) * draws.size
    assert abs(tail.size - expected) < Z * np.sqrt(expected)
    assert np.unique(tail).size > 0.99 * tail.size
    assert tail.max() > 5.0
    conditional = stats.truncnorm(edge, np.inf)
    assert stats.kstest(tail, conditional.cdf).pvalue > 1e-3


def test_the_table_holds_each_slices_conditional_mean():
    assert not slice_means().flags.writeable
    table = slice_means().astype(np.float64)
    assert table.size == SLICES
    assert np.all(np.diff(table) > 0)
    np.testing.assert_allclose(table, -table[::-1], atol=1e-6)  # symmetric
    assert abs(table.mean()) < 1e-6
    edges = ndtri(np.arange(SLICES + 1) / SLICES)
    # each slice's value is its conditional mean, integrated numerically — next to the tails
    # (k = 1…3 and their mirrors) 0.002–0.009 from the slice's middle: the middle would fail
    for k in (1, 2, 3, 100, 9999, 32767, 32768, 50000, SLICES - 3, SLICES - 2):
        a, b = edges[k], edges[k + 1]
        mean = integrate.quad(lambda z: z * stats.norm.pdf(z), a, b)[0] * SLICES
        assert table[k] == pytest.approx(mean, rel=2e-6, abs=1e-6), k
    # the variance of a draw: the interior's table values, the exact tails; 1 − 1.44e-7
    tail = 2 * integrate.quad(lambda z: z * z * stats.norm.pdf(z), edges[-2], np.inf)[0]
    variance = np.sum(table[1:-1] ** 2) / SLICES + tail
    assert 1 - variance == pytest.approx(1.44e-7, rel=0.05)


def test_a_generator_of_32_bit_words_draws_a_normal_too():
    """MT19937's raw words hold 32 bits (Generator.integers draws the indices there)."""
    draws = standard_normal(np.random.Generator(np.random.MT19937(2)), N).astype(np.float64)
    assert abs(draws.mean()) < Z / np.sqrt(N)
    assert abs(draws.var() - 1) < Z * np.sqrt(2 / N)
    assert stats.kstest(draws[:200_000], "norm").pvalue > 1e-3


def test_draws_are_reproducible_and_fill_an_array_in_place():
    a = standard_normal(np.random.default_rng(3), (7, 5))
    b = standard_normal(np.random.default_rng(3), (7, 5))
    assert a.shape == (7, 5) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    out = np.empty((7, 5), np.float32)
    returned = standard_normal(np.random.default_rng(3), out=out)
    assert returned is out
    np.testing.assert_array_equal(out, a)
    assert standard_normal(np.random.default_rng(3), 0).size == 0
    with pytest.raises(ValueError, match="float32"):
        standard_normal(np.random.default_rng(3), out=np.empty(4))
