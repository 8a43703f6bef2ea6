"""The run report: one self-contained HTML file holding the run's record, chip, parameters,
results and every figure; the demo's report opened in headless Chromium.

Chromium (Debian's ``chromium``; ``.ci/run`` installs it) is started by the test itself on a
``file://`` URL, headless, and stopped when it has drawn the page; nothing reaches a network.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from pcm_hil.cli.main import main
from pcm_hil.figures import run_figures
from pcm_hil.records.store import RunStore

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
)


class Page(HTMLParser):
    """What a test needs of the report: its title, tables (as rows of cells), images."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.title = ""
        self.images: list[dict[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self.sections: list[str] = []
        self.links: list[str] = []
        self._in: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self._in.append(tag)
        if tag == "img":
            self.images.append(values)
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag == "section":
            self.sections.append(values.get("id", ""))
        elif tag in ("link", "script") and ("href" in values or "src" in values):
            self.links.append(values.get("href") or values.get("src"))

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._in and self._in[-1] == "title":
            self.title += data
        elif self._in and self._in[-1] in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(data.strip())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A short demo (one inference chip), recorded; its report written."""
    folder = tmp_path_factory.mktemp("demo")
    store = folder / "runs.sqlite"
    argv = ["demo", "--chips", "1", "--no-dashboard"]
    assert main([*argv, "--runs", str(store), "--quiet"]) == 0
    report = folder / "reports" / "run-1.html"
    assert report.exists()
    return store, report


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_holds_the_run_and_every_figure(demo):
    store, report = demo
    page = Page(report.read_text(encoding="utf-8"))
    with RunStore(store, readonly=True) as runs:
        info = runs.run(1)
        figures = run_figures(runs, 1)
    assert page.title == f"Run 1: demo, {info.status}"
    assert page.sections == ["record", "chip", "parameters", "results", "steps", "figures"]
    assert page.links == []  # nothing to fetch: the file is the whole report
    cells = {row[0]: row[1:] for table in page.tables for row in table if len(row) >= 2}
    assert cells["status"] == ["completed"] and cells["resource"] == ["emulator"]
    assert cells["serial"] == [info.identity["serial"]]
    assert cells["protocol version"] == [info.protocol_version]
    assert cells["chips"] == ["1"]  # a parameter
    assert [image["alt"] for image in page.images] == list(figures)
    # every step's scalars as a table: here each chip's accuracy per time and compensation
    with RunStore(store, readonly=True) as runs:
        accuracies = [
            e.document for e in runs.events(1) if type(e.document).__name__ == "InferAccuracy"
        ]
    text = report.read_text(encoding="utf-8")
    assert f"infer.accuracy: {len(accuracies)} step(s)" in text
    header = next(t[0] for t in page.tables if t and "accuracy none" in t[0])
    rows = next(t[1:] for t in page.tables if t and "accuracy none" in t[0])
    assert len(rows) == len(accuracies)
    column = header.index("accuracy none")
    assert [row[column] for row in rows] == [f"{a.accuracy['none']:.4g}" for a in accuracies]
    for image, figure in zip(page.images, figures.values(), strict=True):
        header, _, payload = image["src"].partition(",")
        assert header == "data:image/png;base64"
        width, height = _png_size(base64.b64decode(payload))
        expected = figure.get_size_inches() * 110  # REPORT_DPI
        assert (width, height) == pytest.approx(tuple(expected), abs=1)


def test_report_of_an_unknown_run_and_a_bad_path_are_one_line(demo, tmp_path, capsys):
    store, _report = demo
    assert main(["runs", "report", "9", "--runs", str(store)]) == 1
    assert "no run 9" in capsys.readouterr().err
    assert (
        main(["runs", "report", "1", "--runs", str(store), "--output", str(tmp_path / "r.txt")])
        == 1
    )
    assert "a report is an .html file" in capsys.readouterr().err
    out = tmp_path / "again.html"
    assert main(["runs", "report", "1", "--runs", str(store), "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_demo_report_renders_in_headless_chromium(demo, tmp_path):
    """Chromium draws the page: its title, every figure at a non-zero size, the tables."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does)")
    _store, report = demo
    # a copy that writes what the browser measured into the page once it has loaded
    probe = tmp_path / "probe.html"
    probe.write_text(
        report.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>window.addEventListener('load', () => {"
            "const images = [...document.images].map(i => ({alt: i.alt, natural: "
            "[i.naturalWidth, i.naturalHeight], shown: [i.width, i.height]}));"
            "document.body.setAttribute('data-measured', JSON.stringify({title: "
            "document.title, images, tables: document.querySelectorAll('table').length}));"
            "});</script></body>",
        ),
        encoding="utf-8",
    )
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    measured = json.loads(
        dom.split('data-measured="', 1)[1].split('"', 1)[0].replace("&quot;", '"')
    )
    page = Page(report.read_text(encoding="utf-8"))
    assert measured["title"] == page.title
    assert [image["alt"] for image in measured["images"]] == [i["alt"] for i in page.images]
    assert measured["images"] and all(
        min(image["natural"]) > 0 and min(image["shown"]) > 0 for image in measured["images"]
    )
    assert measured["tables"] == len(page.tables) >= 4
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--screenshot={screenshot}", "--window-size=1280,2400",
         report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    assert _png_size(screenshot.read_bytes()) == (1280, 2400)


def test_a_run_still_being_written_has_its_figures_and_report_so_far(demo, tmp_path):
    """A writer has recorded the start and the first iterations of a programming, not its
    end: a reader draws them from the last verify reads and the report says it has not ended."""
    from pcm_hil.documents.events import Event
    from pcm_hil.documents.program import ProgramEnd, ProgramIteration

    store_path, _report = demo
    with RunStore(store_path, readonly=True) as finished:
        documents = [event.document for event in finished.events(1)]
    first = next(i for i, d in enumerate(documents) if isinstance(d, ProgramIteration))
    partial = documents[: first + 3]
    assert not any(isinstance(d, ProgramEnd) for d in partial)
    live = tmp_path / "live.sqlite"
    with RunStore(live) as writer:
        run_id = writer.start_run("program", resource="emulator", parameters={"devices": 65536})
        for done, document in enumerate(partial):
            writer.add_event(run_id, Event(document, done, 30))
        with RunStore(live, readonly=True) as reader:  # the writer is still open: running
            assert reader.run(run_id).status == "running"
            figures = run_figures(reader, run_id)
            assert set(figures) == {"program-levels", "program-errors", "program-iterations"}
            (ax,) = figures["program-levels"].axes
            assert "last verify read" in ax.get_xlabel()
            from pcm_hil.report import render_report

            text = render_report(reader, run_id)
    page = Page(text)
    assert "No result yet: the run has not ended." in text
    assert page.title == f"Run {run_id}: program, running"
    cells = {row[0]: row[1:] for table in page.tables for row in table if len(row) >= 2}
    assert cells["duration"] == ["running"] and cells["ended"] == ["—"]
    assert len(page.images) == 3
