"""A progress bar for procedures on the terminal: a listener on their events."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pcm_hil.documents.drift import DriftRead
from pcm_hil.documents.events import Event
from pcm_hil.documents.program import ProgramIteration


class ProgressBar:
    """Shows each procedure's progress (steps done of total, elapsed, ETA) on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            if not self._tasks:
                self.progress.start()
            self._tasks[event.procedure] = self.progress.add_task(
                event.procedure, total=event.total or None, note=""
            )
        elif event.kind == "step" and event.procedure in self._tasks:
            document = event.document
            note = ""
            if isinstance(document, ProgramIteration):
                note = f"{document.converged / max(document.devices, 1):.1%} converged"
            elif isinstance(document, DriftRead):
                note = f"t = {document.t_s:.3g} s"
            self.progress.update(self._tasks[event.procedure], completed=event.done, note=note)
        elif event.kind == "end" and event.procedure in self._tasks:
            self.progress.remove_task(self._tasks.pop(event.procedure))
            if not self._tasks:
                self.progress.stop()

    def close(self) -> None:
        if self._tasks:
            self._tasks.clear()
            self.progress.stop()
