"""Shared fixtures: emulated chips served the three ways, started and stopped by the tests."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.pty import PtyServer
from pcm_hil.emulator.tcp import TcpServer

SEED = 1234


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
