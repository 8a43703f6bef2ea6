"""Serve an instrument over a pseudo-terminal, as a serial port (``ASRL/dev/pts/N::INSTR``).

The pty is in raw mode (no echo, no newline translation), so binary blocks pass unchanged.
A serial line has one client by nature. Linux only (os.openpty).
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty

from pcm_hil.protocols.device import Served


class PtyServer:
    """A background server on the master side of a fresh pty; clients open ``path``."""

    def __init__(self, device: Served) -> None:
        self.device = device
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def resource(self) -> str:
        """The VISA resource string of the serial port."""
        return f"ASRL{self.path}::INSTR"

    def start(self) -> PtyServer:
        self._thread = threading.Thread(target=self.serve_forever, name="pcm-pty", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        framer = self.device.new_framer()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 1 << 20)
            except OSError:
                break
            if not data:
                break
            reply = self.device.feed(framer, data)
            view = memoryview(reply)
            while view:
                written = os.write(self._master, view)
                view = view[written:]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> PtyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
