"""Shared fixtures: emulated chips served the three ways, started and stopped by the tests; and
every test's run store in its own temporary directory, never the user's."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.pty import PtyServer
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.records.store import default_path

SEED = 1234

#: Where the user's own runs are recorded: ``default_path()`` in the environment pytest was
#: started in, computed on import, before any fixture changed it. No test may record there.
USER_RUN_STORE = default_path()


def store_fingerprint(path: Path) -> dict[str, tuple[int, int] | None]:
    """(size, mtime in ns) of a run store, its SQLite side files and its folder; None where
    one does not exist."""
    fingerprint = {}
    for item in (path.parent, path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        try:
            stat = item.stat()
        except FileNotFoundError:
            fingerprint[str(item)] = None
        else:
            fingerprint[str(item)] = (stat.st_size, stat.st_mtime_ns)
    return fingerprint


@pytest.fixture(scope="session", autouse=True)
def user_run_store_watch():
    """Warn if the user's run store changed while the suite ran. A warning, not a failure:
    the user may be recording real runs meanwhile (a drift measurement writes for hours);
    tests/test_hygiene.py checks that no test's run goes there."""
    before = store_fingerprint(USER_RUN_STORE)
    yield
    if store_fingerprint(USER_RUN_STORE) != before:
        warnings.warn(
            f"the user's run store {USER_RUN_STORE} changed while the tests ran: by a test "
            "that escaped the private_run_store fixture, or by another process",
            stacklevel=1,
        )


@pytest.fixture(autouse=True)
def private_run_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test records its runs in its own temporary directory, as does every process it
    starts with the inherited environment or a copy of ``os.environ``.

    ``PCM_HIL_RUNS`` names the store; ``XDG_DATA_HOME`` and ``HOME`` point into the same
    directory, so code (or a child process) that drops ``PCM_HIL_RUNS`` and falls back on
    ``$XDG_DATA_HOME/pcm-hil/runs.sqlite`` or ``~/.local/share/…`` lands on the same file.
    Nothing is created until a run is recorded; the user's run labels (config file,
    ``$PCM_HIL_META``) are not read either. Returns the store's path."""
    home = tmp_path / "user-home"
    data = home / ".local" / "share"
    store = data / "pcm-hil" / "runs.sqlite"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("PCM_HIL_RUNS", str(store))
    # the user's run labels neither: no config file, no $PCM_HIL_META (records.metadata)
    monkeypatch.setenv("PCM_HIL_CONFIG", str(tmp_path / "user-config" / "config.toml"))
    monkeypatch.delenv("PCM_HIL_META", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return store


@pytest.fixture
def tiny_chip():
    """An emulated 2×16×16 chip (not served), seeded."""
    return make_chip("tiny", seed=SEED)


@pytest.fixture
def tcp_server(tiny_chip):
    """The tiny chip served on 127.0.0.1 over TCP (any free port)."""
    with TcpServer(WireInterface(tiny_chip)) as server:
        yield server


@pytest.fixture
def pty_server(tiny_chip):
    """The tiny chip served on a fresh pseudo-terminal."""
    with PtyServer(WireInterface(tiny_chip)) as server:
        yield server


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)
