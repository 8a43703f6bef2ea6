"""Keeping the run store small: ``runs delete``, ``runs prune --older-than``, ``runs vacuum``
(issue 13); a running run is never deleted."""

from __future__ import annotations

import time

import pytest

from pcm_hil.cli.main import main
from pcm_hil.cli.options import duration
from pcm_hil.records.store import RunStore

RESOURCE = "emulator?profile=small&seed=4"


@pytest.fixture
def store(tmp_path):
    """A store holding three program-and-verify runs of 1,024 devices."""
    path = tmp_path / "runs.sqlite"
    for _ in range(3):
        argv = ["program", "--resource", RESOURCE, "--devices", "1024", "--levels", "4"]
        assert main([*argv, "--runs", str(path), "--quiet", "--json"]) == 0
    return path


def _counts(path, run_id):
    with RunStore(path, readonly=True) as runs:
        events = runs.db.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,))
        arrays = runs.db.execute("SELECT COUNT(*) FROM arrays WHERE run_id = ?", (run_id,))
        return events.fetchone()[0], arrays.fetchone()[0]


def test_delete_takes_a_run_with_its_events_and_arrays_and_nothing_else(store, capsys):
    capsys.readouterr()
    kept = _counts(store, 3)
    assert _counts(store, 2)[0] > 0 and _counts(store, 2)[1] > 0
    assert main(["runs", "delete", "2", "--runs", str(store)]) == 0
    assert capsys.readouterr().out.strip() == f"deleted run(s) 2 from {store}"
    with RunStore(store, readonly=True) as runs:
        assert [r.id for r in runs.runs()] == [3, 1]
    assert _counts(store, 2) == (0, 0) and _counts(store, 3) == kept
    assert main(["runs", "delete", "2", "--runs", str(store)]) == 1
    assert "no run 2" in capsys.readouterr().err


def test_a_running_run_is_never_deleted_nor_pruned(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as writer:  # this process is writing it: running
        run_id = writer.start_run("program", resource="emulator", parameters={})
        assert writer.run(run_id).status == "running"
        with pytest.raises(ValueError, match="is running"):
            writer.delete_run(run_id)
        assert writer.prune(0.001, now=time.time() + 3600) == []
        assert main(["runs", "delete", str(run_id), "--runs", str(path)]) == 1
        assert "running: none deleted" in capsys.readouterr().err
        assert writer.run(run_id).status == "running"


def test_prune_deletes_the_runs_older_than_the_age(store, capsys):
    day = 86400.0
    with RunStore(store) as runs:  # runs 1 and 2 as if started 40 and 31 days ago
        now = time.time()
        for run_id, age in ((1, 40 * day), (2, 31 * day)):
            runs.db.execute("UPDATE runs SET started_at = ? WHERE id = ?", (now - age, run_id))
    capsys.readouterr()
    assert main(["runs", "prune", "--older-than", "30d", "--runs", str(store)]) == 0
    assert capsys.readouterr().out.strip() == f"deleted 2 run(s) from {store}: 1, 2"
    with RunStore(store, readonly=True) as runs:
        assert [r.id for r in runs.runs()] == [3]
    assert main(["runs", "prune", "--older-than", "30d", "--runs", str(store)]) == 0
    assert capsys.readouterr().out.strip() == f"deleted 0 run(s) from {store}"


def test_vacuum_gives_the_space_of_deleted_runs_back(store, capsys):
    assert main(["runs", "delete", "1", "2", "--runs", str(store)]) == 0
    capsys.readouterr()
    with RunStore(store) as runs:
        before, after = runs.vacuum()
    assert after < before
    assert main(["runs", "vacuum", "--runs", str(store)]) == 0
    assert "MiB →" in capsys.readouterr().out
    with RunStore(store, readonly=True) as runs:  # what was kept is intact
        assert [r.id for r in runs.runs()] == [3]
        assert len(list(runs.events(3))) == _counts(store, 3)[0]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400.0), ("12h", 43200.0), ("90m", 5400.0), ("5", 5.0)]
)
def test_durations_read_with_their_units(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1d", "0", "nan", "3y"])
def test_nonsense_durations_are_refused(text, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["runs", "prune", "--older-than", text, "--runs", str(tmp_path / "r.sqlite")])
    assert exit_.value.code == 2
    assert "--older-than" in capsys.readouterr().err
