"""The conductance map panel: a tile's conductance downsampled to the room the panel gets,
half-block cells coloured on a colour terminal, a shade ramp without colour, blank where not
read; drawn straight to segments, border included."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

from pcm_hil.ui.dashboard.draw import COLOURS, RAMP, Context, colour_lines, ramp_lines, viridis
from pcm_hil.ui.dashboard.format import span
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
    subtitle = None
    if state.map_from is not None and state.map_values is not None:
        kind, at = state.map_from
        subtitle = f"program iteration {at}" if kind == "program" else f"drift t = {span(at)}"
    return MapPanel(state, title, subtitle)


def map_factor(shape: tuple[int, int], width: int, lines: int, colour: bool) -> int:
    """Devices per map cell side so a rows × columns tile fits ``width`` × ``lines``."""
    rows, columns = shape
    px_high = lines * 2 if colour else lines
    px_wide = width if colour else width // 2
    return max(1, math.ceil(rows / max(px_high, 1)), math.ceil(columns / max(px_wide, 1)))


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
        """Lines of (segments, cells used), at most ``width`` cells each."""
        image = self.state.tile_image()
        if image is None or height < 2 or width < 4:
            text = "no per-device reads yet"[:width]
            return [([Segment(text, Style(dim=True))], len(text))] if height else []
        factor = map_factor(image.shape, width, height - 1, colour)
        small = _downsample(image, factor)
        vmax = self.state.g_max_uS
        levels = COLOURS if colour else len(RAMP)
        with np.errstate(invalid="ignore"):
            q = np.clip((small / vmax * levels).astype(np.float64), 0, levels - 1)
        q = np.where(np.isnan(small), -1, np.floor(q)).astype(np.int16)
        drawn = min(q.shape[1] * (1 if colour else 2), width)
        pad = Segment(" " * max((width - drawn) // 2, 0))
        out = []
        if colour:
            for line in colour_lines(q):
                out.append(([pad, *line], len(pad.text) + drawn))
        else:
            for ramp in ramp_lines(q):
                out.append(([pad, Segment(ramp[:width])], len(pad.text) + len(ramp[:width])))
        legend = [pad]
        if colour:
            legend.append(Segment("0 "))
            legend += [
                Segment("█", Style(color="rgb({},{},{})".format(*viridis(k))))
                for k in range(0, COLOURS, 3)
            ]
            legend.append(Segment(f" {vmax:g} µS"))
        else:
            legend.append(Segment("".join(RAMP) + f" 0→{vmax:g} µS"))
        used = sum(len(segment.text) for segment in legend)
        if factor > 1 and used + 12 <= width:
            note = f" {factor}×{factor}/cell"
            legend.append(Segment(note, Style(dim=True)))
            used += len(note)
        if used > width:
            legend, used = [Segment(f"0→{vmax:g} µS"[:width])], min(len(f"0→{vmax:g} µS"), width)
        out.append((legend, used))
        return out


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
