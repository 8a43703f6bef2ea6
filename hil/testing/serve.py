"""``pcm-hil emulator serve`` in a process of its own, for tests and benchmarks that need a
chip behind a real socket (or pty) and a server they do not share a process with."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class ServedEmulator:
    """A running ``pcm-hil emulator serve``: the resource it printed and its process."""

    resource: str
    process: subprocess.Popen
    stderr: str = ""
    """What it wrote on stderr, once it has stopped."""


@contextmanager
def served_emulator(*options: str, timeout_s: float = 10.0) -> Iterator[ServedEmulator]:
    """Start ``pcm-hil emulator serve --port 0 OPTIONS`` (``--serial`` among the options for
    a pty), yield it once it has printed its resource string, and stop it (SIGTERM) on exit,
    waiting up to ``timeout_s`` for it to end. ``returncode`` and ``stderr`` are set then."""
    port = () if "--serial" in options or "--port" in options else ("--port", "0")
    command = [sys.executable, "-m", "pcm_hil.cli", "emulator", "serve", *port, *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = ServedEmulator("", process)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        served.resource = process.stdout.readline().strip() if ready else ""
        if not served.resource:
            raise RuntimeError(
                f"pcm-hil emulator serve printed no resource within {timeout_s:g} s"
                if process.poll() is None
                else "pcm-hil emulator serve ended before serving"
            )
        yield served
    finally:
        process.terminate()
        try:
            _out, served.stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, served.stderr = process.communicate()
