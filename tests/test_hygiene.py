"""Test hygiene: the suite records its runs only under each test's temporary directory.

A procedure run from the command line without ``--runs`` is recorded in the default run store
(``$PCM_HIL_RUNS``, else ``$XDG_DATA_HOME/pcm-hil/runs.sqlite``, else
``~/.local/share/pcm-hil/runs.sqlite``). The autouse fixture ``private_run_store``
(tests/conftest.py) points all three into the test's ``tmp_path``. This test runs a recorded
procedure in-process and in child processes, the ways other tests do, and checks where the
runs went: into the test's directory, and not into the user's store (``USER_RUN_STORE``, from
the environment pytest started in). Without the fixture both checks fail.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pcm_hil.cli.main import main
from pcm_hil.records.store import RunStore, default_path

from .conftest import USER_RUN_STORE, store_fingerprint

RESOURCE = "emulator?profile=tiny&seed=1"
PROGRAM = ["program", "--resource", RESOURCE, "--devices", "8", "--levels", "4", "--json"]
CLI = [sys.executable, "-m", "pcm_hil.cli"]


def runs_recorded_by(path: Path, pids: set[int], since: float) -> list[tuple]:
    """Runs in the store at ``path`` (opened read-only) that processes ``pids`` of this host
    started at ``since`` or later."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, procedure, pid, host, started_at FROM runs").fetchall()
    finally:
        db.close()
    host = socket.gethostname()
    return [row for row in rows if row[2] in pids and row[3] == host and row[4] >= since]


def test_runs_without_a_store_option_land_in_the_tests_directory(tmp_path: Path, capsys):
    since = time.time()  # to tell this test's runs from older ones; nothing is timed
    user_store_before = store_fingerprint(USER_RUN_STORE)
    run_ids, pids = [], {os.getpid()}

    # in-process, as the tests calling pcm_hil.cli.main.main do
    assert main([*PROGRAM, "--quiet"]) == 0
    run_ids.append(json.loads(capsys.readouterr().out)["run_id"])
    # child processes: inheriting the environment; given a copy of os.environ without
    # PYTHON*/PYTEST* (as tests/test_pytest_plugin.py runs pytest); and given a copy without
    # PCM_HIL_RUNS and XDG_DATA_HOME, which falls back on ~/.local/share
    stripped = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    fallback = {k: v for k, v in os.environ.items() if k not in ("PCM_HIL_RUNS", "XDG_DATA_HOME")}
    for env in (None, stripped, fallback):
        child = subprocess.Popen(
            [*CLI, *PROGRAM],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pids.add(child.pid)
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        run_ids.append(json.loads(out)["run_id"])

    # nothing of this test's went to the user's store (it may have changed meanwhile only if
    # the user was recording runs of their own)
    if store_fingerprint(USER_RUN_STORE) != user_store_before:
        assert runs_recorded_by(USER_RUN_STORE, pids, since) == [], USER_RUN_STORE
    # every run is in one store, in this test's temporary directory
    store_path = default_path()
    assert store_path.is_relative_to(tmp_path), store_path
    assert run_ids == [1, 2, 3, 4]
    with RunStore(store_path) as store:
        runs = sorted(store.runs(), key=lambda run: run.id)
    assert [run.id for run in runs] == run_ids
    assert all(run.procedure == "program" and run.status == "completed" for run in runs)
    assert all(run.resource == RESOURCE for run in runs)
    assert runs[0].pid == os.getpid()  # the in-process run
    assert {run.pid for run in runs} == pids  # and one run from each child
