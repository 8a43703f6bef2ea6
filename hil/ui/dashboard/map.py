"""The conductance map panel: a tile's conductance downsampled to the room the panel gets,
each cell two characters of a ramp whose density follows the conductance (``RAMP``), so the
map reads without colour — on a colour terminal coloured as well (viridis) — blank where not
read, with a legend of the ramp's µS range; drawn straight to segments, border included.

The tile is ``DashboardState.tile`` when given (``pcm-hil dashboard --tile N``), else the
tile of the newest values read; the values the newest read on that tile."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

from pcm_hil.ui.dashboard.draw import RAMP, Context, ramp_lines, ramp_style
from pcm_hil.ui.dashboard.state import DashboardState


def map_panel(state: DashboardState, ctx: Context) -> MapPanel:
    """The map's panel: titled with its tile, subtitled with where its values come from."""
    tile = state.map_tile()
    shape = state.tile_shape()
    title = "conductance map"
    if tile is not None:
        title = f"tile {tile} conductance" if ctx.large else f"tile {tile} µS"
        if shape and ctx.large:
            title += f" · {shape[0]}×{shape[1]} devices"
    return MapPanel(state, title, state.map_label())


def map_factor(shape: tuple[int, int], width: int, lines: int) -> int:
    """Devices per map cell side so a rows × columns tile fits ``width`` × ``lines``, a cell
    two characters wide and one line high."""
    rows, columns = shape
    return max(1, math.ceil(rows / max(lines, 1)), math.ceil(columns / max(width // 2, 1)))


class MapPanel:
    """The conductance map in its bordered panel, computed when drawn to the room it gets.

    Drawn straight to segments, border included: a coloured map is thousands of segments,
    and every layer of rich renderables around them costs a pass over all of them."""

    def __init__(self, state: DashboardState, title: str, subtitle: str | None) -> None:
        self.state = state
        self.title = title
        self.subtitle = subtitle

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height = options.max_width, options.height or 14
        colour = console.color_system is not None
        border = Style(color="bright_black")
        inner = max(width - 4, 1)
        rows = max(height - 2, 0)
        content = self._content(inner, rows, colour)
        new_line = Segment.line()
        title = f" {self.title} "[: max(width - 4, 0)]
        yield Segment("╭─", border)
        yield Segment(title, Style(bold=True))
        yield Segment("─" * max(width - 3 - len(title), 0) + "╮", border)
        yield new_line
        side_left, side_right = Segment("│ ", border), Segment(" │", border)
        blank = Segment(" " * inner)
        for k in range(rows):
            yield side_left
            if k < len(content):
                segments, used = content[k]
                yield from segments
                if used < inner:
                    yield Segment(" " * (inner - used))
            else:
                yield blank
            yield side_right
            yield new_line
        subtitle = f" {self.subtitle} " if self.subtitle else ""
        subtitle = subtitle[: max(width - 4, 0)]
        yield Segment("╰" + "─" * max(width - 3 - len(subtitle), 0), border)
        yield Segment(subtitle)
        yield Segment("─╯" if width >= 3 + len(subtitle) else "╯", border)
        yield new_line

    def _content(self, width: int, height: int, colour: bool) -> list[tuple[list[Segment], int]]:
        """Lines of (segments, cells used), at most ``width`` cells each: the map, then its
        legend — the ramp from 0 to the top of the scale, in µS."""
        image = self.state.tile_image()
        if image is None or height < 2 or width < 4:
            tile = self.state.tile
            text = "no per-device reads yet" if tile is None else f"no reads on tile {tile} yet"
            text = text[:width]
            return [([Segment(text, Style(dim=True))], len(text))] if height else []
        factor = map_factor(image.shape, width, height - 1)
        small = _downsample(image, factor)
        q = ramp_steps(small, self.state.g_max_uS)
        drawn = min(q.shape[1] * 2, width)
        pad = Segment(" " * max((width - drawn) // 2, 0))
        out = []
        for line in ramp_lines(q, colour):
            cropped = Segment.adjust_line_length(line, drawn, pad=False)
            out.append(([pad, *cropped], len(pad.text) + Segment.get_line_length(cropped)))
        out += self._legend(pad, width, max(height - len(out), 1), factor, small, colour)
        return out

    def _legend(
        self, pad: Segment, width: int, lines: int, factor: int, small: np.ndarray, colour: bool
    ) -> list[tuple[list[Segment], int]]:
        """The ramp between 0 and the top of the scale, then what fits of: devices a cell, µS
        a character, the range of the values shown — on a second line if there is one."""
        vmax = self.state.g_max_uS
        ramp = [Segment(c, ramp_style(k) if colour else None) for k, c in enumerate(RAMP)]
        first = [pad, Segment("0 "), *ramp, Segment(f" {vmax:g} µS")]
        used = sum(len(segment.text) for segment in first)
        if used > width:
            text = f"0{RAMP}{vmax:g}"[:width]
            return [([Segment(text)], len(text))]
        finite = small[np.isfinite(small)]
        notes = [f"{factor}×{factor}/cell"] if factor > 1 else []
        notes.append(f"{vmax / len(RAMP):.2g} µS a character")
        if finite.size:
            notes.append(f"shown {float(finite.min()):.1f}–{float(finite.max()):.1f} µS")
        out = [(first, used)]
        line, used, gap = first, used, " · "
        for note in notes:
            if used + len(gap) + len(note) > width and len(out) < lines:
                line, used, gap = [pad], len(pad.text), ""  # a second line
                out.append((line, used))
            if used + len(gap) + len(note) <= width:
                line.append(Segment(gap + note, Style(dim=True)))
                used += len(gap) + len(note)
                out[-1] = (line, used)
                gap = " · "
        return out


def ramp_steps(values: np.ndarray, vmax: float) -> np.ndarray:
    """The step of ``RAMP`` for each value between 0 and ``vmax`` (clipped), -1 where NaN."""
    levels = len(RAMP)
    with np.errstate(invalid="ignore"):
        q = np.clip(values / vmax * levels, 0, levels - 1)
    return np.where(np.isnan(values), -1, np.floor(q)).astype(np.int16)


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor × factor block over the devices read (NaN where none)."""
    if factor <= 1:
        return image
    rows, columns = image.shape
    r, c = -(-rows // factor), -(-columns // factor)
    padded = np.full((r * factor, c * factor), np.nan, dtype=np.float32)
    padded[:rows, :columns] = image
    blocks = padded.reshape(r, factor, c, factor)
    known = ~np.isnan(blocks)
    total = np.where(known, blocks, 0.0).sum(axis=(1, 3))
    count = known.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
