"""A run store that fails cleanly: a corrupt, truncated, damaged, read-only or missing store,
a folder or a device named as one — each is one line naming the file and what is wrong, a
non-zero exit, and the file as it was, with nothing made beside it. The commands that only
read a store (``runs``, ``dashboard``, the ``--resume`` readers) open it read-only: they read
a store they cannot write, and write nothing to one they could."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcm_hil.cli import resume
from pcm_hil.cli.main import main
from pcm_hil.records.store import STORE_VERSION, RunStore, StoreError, UnknownRunError

from .test_documents import write_v1_store

#: A program-and-verify fast enough to run in every case: 16 devices of the tiny chip.
PROGRAM = [
    "program",
    "--resource",
    "emulator?profile=tiny",
    "--devices",
    "16",
    "--levels",
    "2",
    "--quiet",
]

#: The three commands each broken store is tried with.
COMMANDS = {
    "runs list": ["runs", "list"],
    "runs show 1": ["runs", "show", "1"],
    "program": PROGRAM,
}

#: Drops the capabilities that let root ignore file modes (for the real read-only cases).
SETPRIV = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def snapshot(folder: Path) -> dict[str, tuple[str, int] | None]:
    """Every entry of ``folder``: a file's SHA-256 and mtime (ns), None for anything else."""
    found: dict[str, tuple[str, int] | None] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            found[entry.name] = (digest, entry.stat().st_mtime_ns)
        else:
            found[entry.name] = None
    return found


def one_line_error(err: str, path: Path | str) -> str:
    """The error line, checked: exactly one line, ``pcm-hil: error:``, naming the file."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("pcm-hil: error: "), err
    assert str(path) in err, err
    assert "Traceback" not in err
    return err.removeprefix("pcm-hil: error: ").rstrip("\n")


def record_a_run(path: Path, capsys) -> None:
    """A real store at ``path``: one program-and-verify recorded, the store closed."""
    assert main([*PROGRAM, "--runs", str(path)]) == 0
    capsys.readouterr()
    assert not Path(f"{path}-wal").exists()  # closed: all in the store file itself


def corrupt(folder: Path, capsys) -> Path:
    path = folder / "runs.sqlite"
    path.write_bytes(np.random.default_rng(11).bytes(4096))
    return path


def truncated(folder: Path, capsys) -> Path:
    path = folder / "runs.sqlite"
    record_a_run(path, capsys)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def damaged(folder: Path, capsys) -> Path:
    """A whole store whose header is intact and every page after the first is garbage."""
    path = folder / "runs.sqlite"
    record_a_run(path, capsys)
    data = path.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    path.write_bytes(data[:page] + np.random.default_rng(12).bytes(len(data) - page))
    return path


def directory(folder: Path, capsys) -> Path:
    path = folder / "runs.sqlite"
    path.mkdir()
    return path


BROKEN = {
    "corrupt": (corrupt, "not a pcm-hil run store (file is not a database)"),
    "truncated": (truncated, "the run store is truncated ("),
    "directory": (directory, "is a directory, not a run store file"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_store_is_one_line_and_left_as_it_was(tmp_path, capsys, case, command):
    make, fragment = BROKEN[case]
    folder = tmp_path / "lab"
    folder.mkdir()
    path = make(folder, capsys)
    before = snapshot(folder)
    assert main([*COMMANDS[command], "--runs", str(path)]) != 0
    captured = capsys.readouterr()
    assert fragment in one_line_error(captured.err, path)
    assert captured.out == ""
    assert snapshot(folder) == before  # bytes, mtimes; no -wal, -shm or .bak beside it


@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_damaged_inside_is_one_line_and_left_as_it_was(tmp_path, capsys, command):
    """The header is sound, so SQLite opens it and meets the damage only when it reads the
    runs (``program``: when it records its run): that error, too, is one line, and no write
    reaches the file. Run as the installed command: in process, the store ``program``
    opened keeps SQLite's side files until it is garbage-collected."""
    folder = tmp_path / "lab"
    folder.mkdir()
    path = damaged(folder, capsys)
    before = snapshot(folder)
    done = subprocess.run(
        [sys.executable, "-m", "pcm_hil.cli", *COMMANDS[command], "--runs", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    message = one_line_error(done.stderr, path)
    assert message.startswith(f"{path}: the run store is damaged (")
    assert snapshot(folder) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_is_not_a_store(capsys, command):
    assert main([*COMMANDS[command], "--runs", "/dev/full"]) != 0
    message = one_line_error(capsys.readouterr().err, "/dev/full")
    assert message == "/dev/full: not a regular file, so not a run store"
    assert not Path("/dev/full-wal").exists() and not Path("/dev/full-shm").exists()


@pytest.mark.parametrize("case, command", [("corrupt", ["runs", "list"]), ("truncated", PROGRAM)])
def test_no_traceback_from_the_installed_command(tmp_path, capsys, case, command):
    folder = tmp_path / "lab"
    folder.mkdir()
    path = BROKEN[case][0](folder, capsys)
    before = snapshot(folder)
    done = subprocess.run(
        [sys.executable, "-m", "pcm_hil.cli", *command, "--runs", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    one_line_error(done.stderr, path)
    assert snapshot(folder) == before


# --- a missing folder, a missing store -------------------------------------------------------


@pytest.mark.parametrize("command", [PROGRAM, ["runs", "list"], ["dashboard", "--once"]])
def test_a_store_in_a_folder_that_does_not_exist_is_refused(tmp_path, capsys, command):
    path = tmp_path / "no" / "such" / "runs.sqlite"
    assert main([*command, "--runs", str(path)]) != 0
    message = one_line_error(capsys.readouterr().err, path)
    assert message == f"{path}: the directory {path.parent} does not exist"
    assert not (tmp_path / "no").exists()


def test_a_store_not_made_yet_lists_no_runs_and_stays_unmade(tmp_path, capsys):
    path = tmp_path / "runs.sqlite"
    assert main(["runs", "list", "--json", "--runs", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": [], "store": str(path)}
    assert main(["runs", "list", "--runs", str(path)]) == 0
    listing = capsys.readouterr()
    assert "Runs in" in listing.out and listing.err == ""
    assert main(["runs", "show", "5", "--runs", str(path)]) != 0
    assert one_line_error(capsys.readouterr().err, path) == f"no run 5 in {path}"
    assert main(["dashboard", "--once", "--runs", str(path)]) != 0
    assert one_line_error(capsys.readouterr().err, path) == f"no runs recorded in {path}"
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_is_made_by_its_first_run_and_not_before(private_run_store, capsys):
    """Without ``--runs``: listing before anything is recorded makes no folder; the first
    recorded run makes the default folder (only that one is made when missing)."""
    folder = private_run_store.parent
    assert not folder.exists()
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []
    assert not folder.exists()
    assert main(PROGRAM) == 0
    capsys.readouterr()
    assert private_run_store.is_file()


def test_the_library_refuses_a_missing_folder_too(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        RunStore(tmp_path / "no" / "runs.sqlite")
    with pytest.raises(StoreError, match="does not exist"):
        RunStore(tmp_path / "no" / "runs.sqlite", readonly=True)
    assert not (tmp_path / "no").exists()
    with RunStore(tmp_path / "runs.sqlite", readonly=True) as store:  # the folder exists
        assert store.runs() == [] and store.latest() is None
        with pytest.raises(UnknownRunError) as raised:
            store.run(3)
    assert isinstance(raised.value, KeyError) and str(raised.value).startswith("no run 3 in")
    assert list(tmp_path.iterdir()) == []


# --- reading writes nothing --------------------------------------------------------------------


def test_reading_commands_write_nothing(tmp_path, capsys):
    """``runs list|show|export``, ``dashboard`` and the ``--resume`` readers on a store they
    could write: the store's bytes and mtime unchanged, no -wal or -shm left, nothing new."""
    folder = tmp_path / "lab"
    folder.mkdir()
    path = folder / "runs.sqlite"
    record_a_run(path, capsys)
    before = snapshot(folder)
    runs = ["--runs", str(path)]
    assert main(["runs", "list", *runs]) == 0
    assert main(["runs", "show", "1", "--events", "--json", *runs]) == 0
    export = tmp_path / "run.nc"
    assert main(["runs", "export", "1", "--format", "netcdf", "--output", str(export), *runs]) == 0
    assert main(["dashboard", "1", "--once", *runs]) == 0
    capsys.readouterr()
    _tiles, addresses, _targets, finished = resume.program_left(str(path), 1)
    assert finished + addresses.size == 16
    assert export.is_file()
    assert snapshot(folder) == before


def test_reading_a_store_being_written_sees_the_running_run(tmp_path, capsys):
    """With a writer holding the store open (its write-ahead log beside it), a reader reads
    through the log: the run in progress is listed, and the store file is not written."""
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as writer:
        run_id = writer.start_run("program", resource="emulator?profile=tiny")
        before = path.read_bytes()
        assert main(["runs", "list", "--json", "--runs", str(path)]) == 0
        listed = json.loads(capsys.readouterr().out)["runs"]
        assert [(r["id"], r["status"]) for r in listed] == [(run_id, "running")]
        assert path.read_bytes() == before


def test_an_old_store_is_refused_by_reading_commands_and_not_migrated(tmp_path, capsys):
    """Migrating writes, so a command that only reads refuses a store of pcm-hil 0.1 in one
    line, and leaves it (and no copy of it) as it was; recording a run migrates it."""
    path = tmp_path / "old.sqlite"
    write_v1_store(path)
    before = snapshot(tmp_path)
    assert main(["runs", "list", "--runs", str(path)]) != 0
    message = one_line_error(capsys.readouterr().err, path)
    assert message == (
        f"{path}: a run store of an older pcm-hil (version 1) to be migrated, and this command"
        " only reads; the next run recorded into it migrates it in place (a copy kept beside it)"
    )
    assert snapshot(tmp_path) == before
    assert main([*PROGRAM, "--runs", str(path)]) == 0
    capsys.readouterr()
    assert (tmp_path / "old.sqlite.v0.bak").is_file()
    assert main(["runs", "show", "1", "--events", "--json", "--runs", str(path)]) == 0
    assert len(json.loads(capsys.readouterr().out)["events"]) == 5


def test_a_newer_store_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "new.sqlite"
    RunStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {STORE_VERSION + 1}")
    db.commit()
    db.close()
    before = snapshot(tmp_path)
    for command in (["runs", "list"], PROGRAM):
        assert main([*command, "--runs", str(path)]) != 0
        assert one_line_error(capsys.readouterr().err, path).endswith("update pcm-hil")
    assert snapshot(tmp_path) == before


def test_an_sqlite_file_of_something_else_is_not_a_store(tmp_path, capsys):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE samples (x REAL)")
    db.commit()
    db.close()
    before = snapshot(tmp_path)
    for command in (["runs", "list"], PROGRAM):
        assert main([*command, "--runs", str(path)]) != 0
        message = one_line_error(capsys.readouterr().err, path)
        assert message == f"{path}: not a pcm-hil run store (an SQLite file of other tables)"
    assert snapshot(tmp_path) == before


# --- read-only stores ----------------------------------------------------------------------


def unprivileged() -> list[str]:
    """The prefix that makes a command feel file modes: none for a user; for root, setpriv
    dropping the capabilities that override them — or a skip, where that cannot be done."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, where file modes do not bind, and no setpriv to drop that")
    probe = subprocess.run([*SETPRIV, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root, and setpriv cannot drop capabilities: {probe.stderr!r}")
    return SETPRIV


def cli(prefix: list[str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pcm_hil.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def read_only_store(tmp_path, capsys):
    """A real store with one run, its file made read-only (0444); restored for cleanup."""
    folder = tmp_path / "lab"
    folder.mkdir()
    path = folder / "runs.sqlite"
    record_a_run(path, capsys)
    path.chmod(0o444)
    yield path
    path.chmod(0o644)


def test_a_read_only_store_is_read_and_left_as_it_was(read_only_store, capsys):
    """In process (as root, too): listing and showing work and write nothing."""
    before = snapshot(read_only_store.parent)
    assert main(["runs", "list", "--json", "--runs", str(read_only_store)]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["runs"]] == [1]
    assert main(["runs", "show", "1", "--events", "--json", "--runs", str(read_only_store)]) == 0
    assert json.loads(capsys.readouterr().out)["events"][0]["document"] == "program.start"
    assert snapshot(read_only_store.parent) == before


def test_a_read_only_store_really_unwritable(read_only_store):
    """In a process that cannot write the file (as root: with the capabilities that let it
    dropped): listing and showing read it (immutable, as nothing can change it); recording
    a run is refused in one line; the store is untouched."""
    prefix = unprivileged()
    folder = read_only_store.parent
    before = snapshot(folder)
    listed = cli(prefix, "runs", "list", "--json", "--runs", str(read_only_store))
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [1]
    shown = cli(prefix, "runs", "show", "1", "--events", "--json", "--runs", str(read_only_store))
    assert shown.returncode == 0, shown.stderr
    program = cli(prefix, *PROGRAM, "--runs", str(read_only_store))
    assert program.returncode == 1
    message = one_line_error(program.stderr, read_only_store)
    assert message == f"{read_only_store}: the run store is read-only (permission denied)"
    assert snapshot(folder) == before


def test_a_store_in_a_read_only_folder(tmp_path, capsys):
    """The store file writable, its folder not (SQLite keeps its write-ahead log there):
    reading works, recording is refused in one line, nothing is made in the folder."""
    prefix = unprivileged()
    folder = tmp_path / "lab"
    folder.mkdir()
    path = folder / "runs.sqlite"
    record_a_run(path, capsys)
    before = snapshot(folder)
    folder.chmod(0o555)
    try:
        listed = cli(prefix, "runs", "list", "--json", "--runs", str(path))
        program = cli(prefix, *PROGRAM, "--runs", str(path))
        new = cli(prefix, *PROGRAM, "--runs", str(folder / "new.sqlite"))
    finally:
        folder.chmod(0o755)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == [1]
    assert program.returncode == 1 and new.returncode == 1
    message = one_line_error(program.stderr, path)
    assert message == f"{path}: cannot write in its folder {folder} (permission denied)"
    one_line_error(new.stderr, folder / "new.sqlite")
    assert snapshot(folder) == before


def test_recording_into_a_read_only_store_is_one_line_in_process(
    read_only_store, capsys, monkeypatch
):
    """The same refusal in process, where root may write anything: the check that the file
    is writable is made to answer as it would for a user."""
    access = os.access

    def as_a_user(path, mode, *args, **kwargs):
        if Path(path) == read_only_store and mode & os.W_OK:
            return False
        return access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", as_a_user)
    before = snapshot(read_only_store.parent)
    assert main([*PROGRAM, "--runs", str(read_only_store)]) != 0
    message = one_line_error(capsys.readouterr().err, read_only_store)
    assert message == f"{read_only_store}: the run store is read-only (permission denied)"
    assert snapshot(read_only_store.parent) == before
