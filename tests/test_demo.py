"""The README's main job: `pcm-hil demo` runs and prints what the README says it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pcm_hil.records.store import RunStore

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_main_job_command_is_the_demo():
    text = README.read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/pcm-hil demo" in text


def test_demo_runs_and_is_recorded(tmp_path):
    store_path = tmp_path / "runs.sqlite"
    env = dict(os.environ, PCM_HIL_RUNS=str(store_path), COLUMNS="100")
    done = subprocess.run(
        [sys.executable, "-m", "pcm_hil.cli", "demo", "--chips", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    # the three tables and the one-line summary the README describes
    for title in (
        "Program-and-verify",
        "Drift exponent per level",
        "test accuracy vs time after programming",
        "Demo:",
    ):
        assert title in out, title
    assert re.search(r"65,536 devices programmed to 16 levels \(9\d\.\d% converged", out)
    assert "recorded as run 1" in done.stderr
    with RunStore(store_path) as store:
        run = store.run(1)
        assert run.procedure == "demo" and run.status == "completed"
        procedures = {e.procedure for e in store.events(1)}
        assert {"demo", "program", "drift", "infer"} <= procedures
