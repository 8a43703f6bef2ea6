"""The report of a run: one self-contained HTML file — what ran, on which chip, how it ended,
its result tables and every figure, embedded — that opens anywhere, without a network.

Rendered from the run store with a Jinja2 template (``report.html.j2`` beside this module):
the store holds everything, so a report can be written for any past run, or for a run still
being written (it shows what has been recorded so far).

    from pcm_hil.report import write_report
    with RunStore() as store:
        write_report(store, 12, "run-12.html")
"""

from __future__ import annotations

import base64
import datetime
import io
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from pcm_hil.documents.base import Document, End, Step

#: Figures are embedded as PNG at this resolution (dots per inch).
REPORT_DPI = 110

#: Rows of a table of steps shown at most (the first and the last half of them).
STEP_ROWS = 60


def render_report(store, run_id: int) -> str:
    """The HTML report of run ``run_id`` of ``store`` (a ``RunStore``)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from pcm_hil.figures import figures_of

    info = store.run(run_id)
    documents = [event.document for event in store.events(run_id)]
    figures = figures_of(documents)
    environment = Environment(
        loader=PackageLoader("pcm_hil.report", "."),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    return template.render(
        title=f"Run {info.id}: {info.procedure}, {info.status}",
        run=info,
        record=_record(info),
        chip=_chip(info),
        parameters=sorted(
            (key, _show(value)) for key, value in info.parameters.items() if value is not None
        ),
        results=[_result(document) for document in documents if isinstance(document, End)],
        steps_tables=_step_tables(documents),
        figures=[(name, _png(figure)) for name, figure in figures.items()],
        steps=sum(1 for d in documents if isinstance(d, Document))
        - len([d for d in documents if isinstance(d, End)]),
    )


def write_report(store, run_id: int, output: str | Path | None = None) -> Path:
    """Write the report of run ``run_id`` (to ``run-ID.html`` unless told); its path."""
    path = Path(output) if output is not None else Path(f"run-{run_id}.html")
    check_report_path(path)
    path.write_text(render_report(store, run_id), encoding="utf-8")
    return path


def check_report_path(path: Path) -> None:
    """Refuse (ValueError) a report path that cannot be written: not .html, or in a folder
    that does not exist or cannot be written in."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{path}: a report is an .html file")
    if not path.parent.resolve().is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write in {path.parent}")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _record(info) -> list[tuple[str, str]]:
    """How the run went: when, how long, how it ended, where."""
    duration = (
        f"{info.ended_at - info.started_at:.1f} s" if info.ended_at is not None else "running"
    )
    rows = [
        ("procedure", info.procedure),
        ("status", info.status),
        ("started", _when(info.started_at)),
        ("ended", _when(info.ended_at)),
        ("duration", duration),
        ("resource", info.resource or "—"),
        ("seed", "—" if info.seed is None else str(info.seed)),
        ("software", f"pcm-hil {info.software_version or '?'}"),
        ("host", f"{info.host or '?'} (pid {info.pid})"),
    ]
    if info.error:
        rows.insert(2, ("error", info.error))
    return rows


def _chip(info) -> list[tuple[str, str]]:
    """What the chip reported of itself: identity, protocol, configuration."""
    rows = []
    if info.identity:
        rows += [(key, str(value)) for key, value in info.identity.items()]
    if info.protocol_version:
        rows.append(("protocol version", info.protocol_version))
    for key, value in (info.chip or {}).items():
        if value is not None and key != "protocol_version":
            rows.append((key, _show(value)))
    return rows


def _result(document: End) -> dict[str, Any]:
    """An end document as tables: its scalar fields as one, each list of records as another;
    arrays are summarised (they are drawn in the figures)."""
    scalars: list[tuple[str, str]] = []
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    for field in fields(document):
        value = getattr(document, field.name)
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(key for row in value for key in row))
            rows = [[_show(row.get(c)) for c in columns] for row in value]
            tables.append((field.name, columns, rows))
        else:
            scalars.append((field.name, _show(value)))
    return {"name": document.name, "scalars": scalars, "tables": tables}


def _step_tables(documents: list) -> list[dict[str, Any]]:
    """Each kind of step the run recorded as a table of its scalar values, in the order the
    kinds first appear (a dict value, such as accuracy per compensation, a column per key;
    arrays are drawn in the figures, not listed). At most ``STEP_ROWS`` rows each."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        if not isinstance(document, Step):
            continue
        row: dict[str, Any] = {}
        for key, value in document.values().items():
            if isinstance(value, dict):
                row.update({f"{key} {k}": v for k, v in value.items()})
            elif not isinstance(value, np.ndarray) and value is not None:
                row[key] = value
        if row:
            kinds.setdefault(document.name, []).append(row)
    tables = []
    for name, rows in kinds.items():
        columns = list(dict.fromkeys(key for row in rows for key in row))
        shown = rows if len(rows) <= STEP_ROWS else rows[: STEP_ROWS // 2] + rows[-STEP_ROWS // 2 :]
        tables.append(
            {
                "name": name,
                "columns": columns,
                "rows": [[_show(row.get(c, "")) for c in columns] for row in shown],
                "count": len(rows),
            }
        )
    return tables


def _show(value: Any) -> str:
    """A value as a cell: numbers to 4 significant digits, arrays by shape and range."""
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return f"{int(value.sum())} of {value.size}"
        if value.size and np.issubdtype(value.dtype, np.number):
            finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
            if finite.size:
                return f"{value.size} values, {finite.min():.4g} … {finite.max():.4g}"
        return f"{value.size} values"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    return str(value)


def _png(figure) -> str:
    """A figure as a ``data:`` URL (base64 PNG), so the report needs no other file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=REPORT_DPI)
    figure.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["REPORT_DPI", "STEP_ROWS", "check_report_path", "render_report", "write_report"]
