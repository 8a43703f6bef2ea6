"""The array work behind the panels, done when a frame is drawn (``DashboardState`` caches
the results): grouping devices by target level, the per-level histogram of programming
errors, mean conductance per level, a tile's conductance image and a tile's shape."""

from __future__ import annotations

import math

import numpy as np

#: Upper edges of the |read − target| histogram bins, in tolerances (the last bin is open).
ERROR_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: One character per bin, naming its upper edge.
ERROR_LABELS = "¼½1248∞"


def group_levels(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct targets, index of each device's). Targets are a few levels repeated: find
    them in a sample, place every device by binary search, and fall back to a full sort only
    if the sample missed a level — a few times faster than np.unique on a large array."""
    target = np.asarray(target).reshape(-1)
    if target.size > 8192:
        # a prefix finds interleaved levels, a stride levels laid out in blocks
        levels = np.unique(np.concatenate([target[:4096], target[:: target.size // 4096]]))
        inverse = np.minimum(np.searchsorted(levels, target), levels.size - 1)
        if np.array_equal(levels[inverse], target):
            return levels, inverse.astype(np.intp, copy=False)
    levels, inverse = np.unique(target, return_inverse=True)
    return levels, inverse.reshape(-1).astype(np.intp)


def error_histogram(
    read: np.ndarray,
    target: np.ndarray,
    inverse: np.ndarray,
    level_count: int,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per level (``inverse`` from ``group_levels``): counts of |read − target| per bin of
    ``ERROR_EDGES`` × ``tolerance`` (the last column counts devices not read yet), device
    count, and mean |read − target| over the devices read. None if the shapes differ."""
    if read.shape != target.shape:
        return None
    error = np.abs(read - target)
    unread = np.isnan(error)
    bins = np.zeros(error.size, dtype=np.intp)
    for edge in ERROR_EDGES:
        bins += error > edge * tolerance
    bins[unread] = len(ERROR_EDGES) + 1
    width = len(ERROR_EDGES) + 2
    counts = np.bincount(inverse * width + bins, minlength=level_count * width)
    counts = counts.reshape(level_count, width)
    total = counts.sum(axis=1)
    error_sum = np.bincount(inverse, weights=np.where(unread, 0.0, error), minlength=level_count)
    read_count = total - counts[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = error_sum / read_count
    return counts, total, mean


def level_means(values: np.ndarray, inverse: np.ndarray, level_count: int) -> np.ndarray:
    """Mean of the finite ``values`` per level (NaN where none, or all if the shapes differ)."""
    if values.shape != inverse.shape:
        return np.full(level_count, np.nan)
    finite = np.isfinite(values)
    total = np.bincount(inverse, weights=np.where(finite, values, 0.0), minlength=level_count)
    count = np.bincount(inverse, weights=finite, minlength=level_count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def square_for(address: np.ndarray) -> tuple[int, int]:
    """The smallest power-of-two square tile holding every address."""
    top = int(address.max()) + 1 if address.size else 1
    side = 1 << max(0, math.ceil(math.log2(math.sqrt(top))))
    while side * side < top:
        side *= 2
    return side, side


def emulator_shape(resource: str | None) -> tuple[int, int] | None:
    """(rows, columns) of a tile of the emulator profile an ``emulator?…`` resource names."""
    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    if not is_emulator(resource):
        return None
    try:
        config = EmulatorOptions.parse(resource or "").config()
    except ValueError:
        return None
    return config.rows, config.columns


def tile_image(values, tile_of, address, tile, shape) -> np.ndarray:
    """``values`` of the devices on ``tile`` placed at their addresses in a rows × columns
    image, NaN where not read."""
    rows, columns = shape
    image = np.full(rows * columns, np.nan, dtype=np.float32)
    pick = address < rows * columns
    if tile_of is not None and tile is not None:
        pick &= tile_of == tile
    image[address[pick]] = values[pick]
    return image.reshape(rows, columns)
