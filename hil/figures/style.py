"""What every figure shares: a Figure made without pyplot, the look, and the grouping of
devices by their target level."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Inches; a figure reads on a laptop screen and in a two-column paper at this size.
SIZE = (6.4, 4.0)
WIDE = (11.0, 4.0)
DPI = 120


def new_figure(title: str, columns: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure with ``columns`` axes side by side, titled."""
    figure = Figure(figsize=SIZE if columns == 1 else WIDE, dpi=DPI, layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    figure.suptitle(title)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return figure, list(axes)


def levels(targets_uS: np.ndarray) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, target µS, mask of its devices) for each distinct target, lowest first."""
    for index, target in enumerate(np.unique(targets_uS)):
        yield index, float(target), targets_uS == target


def level_colours(count: int) -> list[tuple[float, float, float, float]]:
    """One colour per level, low to high conductance, on a map also readable in grey."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(count, 1))]


#: Points an empirical CDF is drawn with at most: a million devices drawn as a million points
#: cost seconds to render and show nothing more than 2048 of its steps.
ECDF_POINTS = 2048


def ecdf(values: np.ndarray, points: int = ECDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of the finite values: (sorted values, fraction ≤ each) — every step,
    or ``points`` of them evenly spread over the ranks (the lowest and highest included)."""
    data = np.sort(values[np.isfinite(values)])
    ranks = np.arange(data.size)
    if data.size > points:
        ranks = np.unique(np.round(np.linspace(0, data.size - 1, points)).astype(np.int64))
    return data[ranks], (ranks + 1) / max(data.size, 1)
