"""Weights to conductances: differential pairs, a scale per layer, layers split over tiles.

A weight layer W (inputs × outputs) becomes G+ − G− = s·W with s = g_max / max|W| (µS per
weight unit): the magnitude of each weight on one device of its pair, the other device at 0.
Each block of at most ``rows`` inputs × ``columns/2`` outputs sits on a window of a tile: its
inputs drive the window's rows, G+ fills its first half of columns and G− the second, so one
forward MVM of the window gives both currents and y = I+ − I−. Blocks are packed into
column strips of each tile (``place_layers``), never sharing a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    """A block of weight layer ``layer``: W[in_start:in_stop, out_start:out_stop] on ``tile``,
    rows from ``row``, G+ in columns from ``column``, G− right after them."""

    layer: int
    tile: int
    row: int
    column: int
    in_start: int
    in_stop: int
    out_start: int
    out_stop: int

    @property
    def inputs(self) -> int:
        return self.in_stop - self.in_start

    @property
    def outputs(self) -> int:
        return self.out_stop - self.out_start

    def addresses(self, columns_per_tile: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat addresses of the G+ and G− devices, each (inputs, outputs) row-major."""
        rows = (self.row + np.arange(self.inputs))[:, None] * columns_per_tile
        plus = rows + self.column + np.arange(self.outputs)
        return plus, plus + self.outputs


def place_layers(shapes: list[tuple[int, int]], tiles: int, rows: int, columns: int) -> list[Block]:
    """Split each (inputs, outputs) layer into blocks of ≤ rows × ≤ columns//2 and pack them,
    first fit, into column strips of tiles 0, 1, …: a block goes below the blocks of the
    first strip it fits in (no wider than the strip, rows left), else opens a strip to the
    right of a tile's strips, else a new tile. Blocks never share a device; a window's MVM
    drives only its own rows and senses only its own columns, so blocks beside or below one
    another do not add to each other's currents. Raises ValueError naming the devices and
    tiles the layers need when the chip is too small."""
    half = columns // 2
    blocks: list[Block] = []
    # per tile: its strips as [column, width, rows used], and the first free column
    strips: list[list[list[int]]] = []
    free: list[int] = []
    for layer, (n_in, n_out) in enumerate(shapes):
        for in_start in range(0, n_in, rows):
            for out_start in range(0, n_out, half):
                height = min(rows, n_in - in_start)
                width = min(half, n_out - out_start)
                tile, row, column = _fit(strips, free, height, 2 * width, rows, columns)
                if tile >= tiles:
                    devices = sum(2 * n_in * n_out for n_in, n_out in shapes)
                    raise ValueError(
                        f"the network needs more than the chip's {tiles} tiles of {rows}×{columns} "
                        f"({tiles * rows * columns:,} devices): {devices:,} devices, two per "
                        "weight, in blocks of whole rows and columns"
                    )
                blocks.append(
                    Block(
                        layer,
                        tile,
                        row,
                        column,
                        in_start,
                        in_start + height,
                        out_start,
                        out_start + width,
                    )
                )
    return blocks


def _fit(
    strips: list[list[list[int]]], free: list[int], height: int, width: int, rows: int, columns: int
) -> tuple[int, int, int]:
    """(tile, row, column) of a block of ``height`` rows × ``width`` columns, first fit
    (see ``place_layers``); ``strips`` and ``free`` updated."""
    for tile, mine in enumerate(strips):
        for strip in mine:
            column, strip_width, used = strip
            if width <= strip_width and used + height <= rows:
                strip[2] += height
                return tile, used, column
        if free[tile] + width <= columns:
            mine.append([free[tile], width, height])
            free[tile] += width
            return tile, 0, free[tile] - width
    strips.append([[0, width, height]])
    free.append(width)
    return len(strips) - 1, 0, 0


def conductance_targets(
    weight: np.ndarray, g_max_uS: float, clip_percentile: float = 100.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(G+, G−, s): the differential-pair targets of a weight matrix, µS, and its scale s in
    µS per weight unit. The ``clip_percentile`` of |w| maps to g_max; the few larger weights
    are clipped there (IBM maps a clipped weight range so that outliers do not squeeze every
    other weight into a few µS)."""
    largest = float(np.percentile(np.abs(weight), clip_percentile))
    scale = g_max_uS / largest if largest > 0 else 1.0
    plus = np.minimum(scale * np.maximum(weight, 0.0), g_max_uS)
    minus = np.minimum(scale * np.maximum(-weight, 0.0), g_max_uS)
    return plus, minus, scale
