"""Choosing devices from the command line: tiles (``--tiles``), addresses spread over a tile
(``--devices``) and the target level of each device (``--levels``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from pcm_hil.procedures.program import level_targets
from pcm_hil.protocols.chip import ChipInfo


def tile_indices(text: str) -> list[int] | None:
    """``--tiles``: None for ``all``, else the indices ``N`` or ``a,b,c`` name, each once
    (ValueError: a device pulsed twice in one command is refused by the chip)."""
    if text == "all":
        return None
    try:
        tiles = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--tiles takes 'all' or comma-separated indices, not {text!r}") from None
    repeated = sorted({t for t in tiles if tiles.count(t) > 1})
    if repeated:
        raise ValueError(f"--tiles {text}: tile(s) {repeated} given more than once")
    return tiles


def parse_tiles(text: str, config: ChipInfo) -> list[int]:
    """``all``, ``N`` or ``a,b,c`` → tile indices, each once and checked against the chip."""
    tiles = tile_indices(text)
    if tiles is None:
        return list(range(config.tiles))
    bad = [t for t in tiles if not 0 <= t < config.tiles]
    if bad:
        raise ValueError(f"--tiles {text}: tile(s) {bad} outside 0…{config.tiles - 1}")
    return tiles


def spread_addresses(count: int | None, config: ChipInfo) -> np.ndarray:
    """``count`` device addresses spread evenly over a tile (all when None)."""
    size = config.devices_per_tile
    if count is None or count >= size:
        return np.arange(size)
    if count < 1:
        raise ValueError("--devices must be at least 1")
    return np.unique(np.linspace(0, size - 1, count).round().astype(np.int64))


def devices_within(count: int | None, config: ChipInfo, default: int | None = None) -> int | None:
    """``--devices``, checked to be at most a tile's devices (ValueError); when not given,
    ``default`` (None: all) but no more than a tile holds."""
    size = config.devices_per_tile
    if count is None:
        return None if default is None else min(default, size)
    if count > size:
        raise ValueError(
            f"--devices {count}: a tile of this chip has {size} devices "
            f"({config.rows}×{config.columns})"
        )
    return count


def check_levels(
    levels: int, tolerance: Callable[[np.ndarray], np.ndarray], g_max_uS: float
) -> None:
    """ValueError unless ``levels`` targets over 0…g_max (``level_targets``: g_max/levels
    apart) are at least their widest tolerance (``tolerance(targets)``, µS) apart, so that
    programming can tell them apart."""

    def widest(count: int) -> float:
        return float(np.max(tolerance(level_targets(count, g_max_uS))))

    spacing = g_max_uS / levels
    if spacing >= widest(levels):
        return
    # fewer levels are farther apart and their widest tolerance no wider: the counts that fit
    # are 1…most; bisect for most
    low, high = 0, levels - 1
    while low < high:
        middle = (low + high + 1) // 2
        if g_max_uS / middle >= widest(middle):
            low = middle
        else:
            high = middle - 1
    most = low
    if most < 1:
        raise ValueError(
            f"a tolerance of {widest(1):g} µS is wider than the chip's range 0…{g_max_uS:g} µS"
        )
    raise ValueError(
        f"--levels {levels} over 0…{g_max_uS:g} µS are {spacing:.3g} µS apart, closer than "
        f"their tolerance, up to {widest(levels):.3g} µS (--tolerance, --tolerance-rel): at "
        f"most {most} levels at that tolerance"
    )


def select(args: argparse.Namespace, config: ChipInfo) -> tuple[np.ndarray, np.ndarray]:
    """(tiles, addresses), one entry per device, from --tiles and --devices."""
    tiles = parse_tiles(args.tiles, config)
    addresses = spread_addresses(args.devices, config)
    return np.repeat(tiles, addresses.size), np.tile(addresses, len(tiles))


def assign_levels(count: int, levels: int, g_max_uS: float) -> np.ndarray:
    """Targets for ``count`` devices: ``levels`` levels over 0…g_max, interleaved."""
    return level_targets(levels, g_max_uS)[np.arange(count) % levels]
