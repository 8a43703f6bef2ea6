"""The levels of a programming run and its statistics per level, in one pass over the devices.

A run to a few conductance levels (16 of a characterization, 4 of a test) is summarized per
distinct target. A network's weights are continuous targets — a million devices, nearly as
many distinct values — and per target a summary would be a million rows of one device each:
there the levels are ``BINS`` equal conductance bins from 0 to the highest target, each
reported at the mean target of its devices with its edges.

Everything here is a few passes of ``np.bincount`` over the devices, whatever the number of
levels: the statistics of a million-device run cost tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Most distinct targets summarized one by one; more are binned.
DISTINCT_MAX = 64
#: Equal conductance bins from 0 to the highest target when the targets are continuous.
BINS = 16
#: Targets sampled to tell continuous targets from levels without sorting all of them.
SAMPLE = 4096

STATISTICS = ("error_mean_uS", "error_std_uS", "read_noise_uS", "programmed_spread_uS")


@dataclass(frozen=True)
class Levels:
    """Each device's level (0…count−1) and, per level, its mean target (µS); for binned
    targets also the bin edges (µS, count + 1 of them), else ``None``."""

    of_device: np.ndarray
    target_uS: np.ndarray
    edges_uS: np.ndarray | None

    @property
    def count(self) -> int:
        return int(self.target_uS.size)


def levels_of(target_uS: np.ndarray) -> Levels:
    """The distinct targets as levels when there are at most ``DISTINCT_MAX``, else ``BINS``
    equal bins over 0…max target (empty bins dropped). The distinct values come from a
    sample of ``SAMPLE`` targets, checked against all of them (a binary search each), so a
    run to a few levels costs no sort of a million targets."""
    targets = np.asarray(target_uS, dtype=np.float64).ravel()
    if targets.size == 0:
        return Levels(np.zeros(0, np.intp), np.zeros(0), None)
    # a sample at random places (seeded: the same run, the same levels), not a stride that
    # a periodic plan of levels would alias with
    sample = np.random.default_rng(0).integers(0, targets.size, min(SAMPLE, targets.size))
    candidates = np.unique(targets[sample])
    if candidates.size <= DISTINCT_MAX:
        # the levels a sample shows, and every target found among them: no sort of them all
        codes = np.minimum(np.searchsorted(candidates, targets), candidates.size - 1)
        if np.array_equal(candidates[codes], targets):
            return Levels(codes, candidates, None)
        distinct, codes = np.unique(targets, return_inverse=True)
        if distinct.size <= DISTINCT_MAX:
            return Levels(codes.ravel(), distinct, None)
    top = float(targets.max())
    width = top / BINS if top > 0 else 1.0
    of_device = np.minimum((targets / width).astype(np.intp), BINS - 1)
    count = np.bincount(of_device, minlength=BINS)
    kept = np.flatnonzero(count)
    renumber = np.full(BINS, -1, np.intp)
    renumber[kept] = np.arange(kept.size)
    mean = np.bincount(of_device, weights=targets, minlength=BINS)[kept] / count[kept]
    edges = np.arange(BINS + 1) * width
    return Levels(renumber[of_device], mean, np.stack([edges[kept], edges[kept + 1]]))


def level_sums(
    final_uS: np.ndarray,
    repeat_uS: np.ndarray,
    target_uS: np.ndarray,
    level: np.ndarray,
    where: np.ndarray,
    levels: int,
) -> np.ndarray:
    """Per level (rows 0…levels−1, and a last row for everything else), over the devices
    ``where``: n, Σe, Σe² of the error e = final − target; n₂, Σd, Σd² of d = final − repeat
    over those read twice. Shape (6, levels + 1), float64."""
    # float32 differences (the reads are float32), squared and summed in float64 (a level
    # of equal errors has a spread of 0, not of float32's rounding); NaN reads of devices
    # left out land in the last row
    final = np.asarray(final_uS, np.float32)
    error = (final - np.asarray(target_uS, np.float32)).astype(np.float64)
    twice = (final - np.asarray(repeat_uS, np.float32)).astype(np.float64)
    label = np.where(where, level, levels)
    label_twice = np.where(np.isfinite(twice), label, levels)
    size = levels + 1
    return np.stack(
        [
            np.bincount(label, minlength=size).astype(np.float64),
            np.bincount(label, weights=error, minlength=size),
            np.bincount(label, weights=error * error, minlength=size),
            np.bincount(label_twice, minlength=size).astype(np.float64),
            np.bincount(label_twice, weights=twice, minlength=size),
            np.bincount(label_twice, weights=twice * twice, minlength=size),
        ]
    )


def statistics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """From ``level_sums`` columns (or their total): the error mean and std, the read noise
    (std of final − repeat over √2; NaN with fewer than two read twice) and the programmed
    spread √max(error std² − read noise², 0). NaN where no device counts. µS."""
    n, e1, e2, n2, d1, d2 = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = e1 / n
        std = np.sqrt(np.maximum(e2 / n - mean**2, 0.0))
        twice_mean = d1 / n2
        noise = np.where(
            n2 > 1, np.sqrt(np.maximum(d2 / n2 - twice_mean**2, 0.0)) / np.sqrt(2.0), np.nan
        )
        spread = np.where(np.isfinite(noise), np.sqrt(np.maximum(std**2 - noise**2, 0.0)), np.nan)
    return dict(zip(STATISTICS, (mean, std, noise, spread), strict=True))


def error_statistics(
    final_uS: np.ndarray, repeat_uS: np.ndarray, target_uS: np.ndarray, where: np.ndarray
) -> dict[str, float]:
    """Of the devices ``where``: ``error_mean_uS`` and ``error_std_uS`` of final − target;
    ``read_noise_uS``, the std of one read's noise, std(final − repeat)/√2 over the devices
    read twice (NaN if none); ``programmed_spread_uS``, the spread of the conductances
    themselves, √max(error std² − read noise², 0). µS; NaN where no device counts."""
    keep = np.asarray(where, dtype=bool)
    final = np.asarray(final_uS, np.float32)[keep]
    error = (final - np.asarray(target_uS, np.float32)[keep]).astype(np.float64)
    twice = (final - np.asarray(repeat_uS, np.float32)[keep]).astype(np.float64)
    twice = twice[np.isfinite(twice)]
    sums = np.array(
        [error.size, error.sum(), error @ error, twice.size, twice.sum(), twice @ twice],
        dtype=np.float64,
    )
    return {name: float(value) for name, value in statistics_from_sums(sums).items()}
