"""Figures of a run, drawn from what the run store holds: for any past run, and for a run still
being written. One module per procedure family (``program``, ``drift``, ``characterize``,
``analog``); each draws the figures its documents allow and nothing for a run without them,
so a demo run, which holds several families, gets all of theirs.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot (no display, no global
state), physical units on every axis; the data each shows can be read back from its artists.

    from pcm_hil.figures import run_figures, save_figures
    with RunStore() as store:
        figures = run_figures(store, 12)       # {"program-levels": Figure, …}
    save_figures(figures, "plots/")            # plots/program-levels.png, …
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from matplotlib.figure import Figure

from pcm_hil.documents.base import Document

#: Where each family's drawing lives: ``module:function``, the function taking the run's
#: documents, in order, and returning its figures by name.
FAMILIES = (
    "pcm_hil.figures.program:program_figures",
    "pcm_hil.figures.drift:drift_figures",
    "pcm_hil.figures.characterize:characterization_figures",
    "pcm_hil.figures.analog:analog_figures",
)

#: The file formats ``save_figures`` writes, by suffix.
FORMATS = (".png", ".svg", ".pdf")


def figures_of(documents: Iterable[Document]) -> dict[str, Figure]:
    """Every figure the documents of one run allow, by name, in the families' order."""
    from importlib import import_module

    documents = [d for d in documents if isinstance(d, Document)]
    figures: dict[str, Figure] = {}
    for family in FAMILIES:
        module, function = family.split(":")
        draw: Callable[[list[Document]], dict[str, Figure]] = getattr(
            import_module(module), function
        )
        figures.update(draw(documents))
    return figures


def run_figures(store, run_id: int) -> dict[str, Figure]:
    """Every figure of run ``run_id`` of ``store`` (a ``RunStore``), from its documents."""
    return figures_of(event.document for event in store.events(run_id))


def save_figures(
    figures: Mapping[str, Figure], output: str | Path, only: str | None = None
) -> list[Path]:
    """Write figures: into a folder ``output`` as ``<name>.png`` each, or, for one figure
    (``only``, or a run with one), to the file ``output`` (.png, .svg or .pdf). Returns the
    paths written. ValueError for an unknown name or suffix."""
    output = Path(output)
    if only is not None:
        if only not in figures:
            raise ValueError(f"no figure {only!r}; this run has: {', '.join(figures) or 'none'}")
        figures = {only: figures[only]}
    if output.suffix:
        if output.suffix not in FORMATS:
            raise ValueError(f"{output}: a figure is written as {', '.join(FORMATS)}")
        if len(figures) != 1:
            raise ValueError(
                f"{output}: {len(figures)} figures go to a folder; name one of "
                f"{', '.join(figures)} to write a single file"
            )
        (figure,) = figures.values()
        figure.savefig(output)
        return [output]
    if not output.is_dir():
        raise ValueError(f"{output}: not a folder (figures of a run go into a folder)")
    paths = []
    for name, figure in figures.items():
        path = output / f"{name}.png"
        figure.savefig(path)
        paths.append(path)
    return paths


__all__ = ["FAMILIES", "FORMATS", "figures_of", "run_figures", "save_figures"]
