"""Serve an instrument over a pseudo-terminal, as a serial port (``ASRL/dev/pts/N::INSTR``).

The pty is in raw mode (no echo, no newline translation), so binary blocks pass unchanged.
A serial line has one client by nature. Linux only (os.openpty).

A *session* is the time a client holds the port open. When the last client closes it, the
server sees the line hang up: it drops the partial message it held and any reply not yet
read, so the next session starts clean (``*ID`` left by one session and ``*IDN?`` sent by
the next are two messages, not ``*ID*IDN?``). A partial message with nothing more for the
device's ``serving.partial_timeout_s`` is dropped as well (a client that reopens the port at
once leaves no hang-up to see), and a reply nobody reads for ``send_stall_timeout_s`` is
dropped with the session.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import termios
import threading
import time
import tty

from pcm_hil.protocols.device import Served
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.limits import PartialWatch

#: How often the server looks at its stop flag and its timeouts, and at a hung-up line, s.
POLL_S = 0.2

log = logging.getLogger(__name__)


class _HungUp(Exception):
    """The client closed the port (or stopped reading) mid-reply."""


class PtyServer:
    """A background server on the master side of a fresh pty; clients open ``path``."""

    def __init__(self, device: Served) -> None:
        self.device = device
        self._master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)  # kept while the master is open
        self.path = os.ttyname(slave)
        os.close(slave)  # not held: a client closing the port is then seen as a hang-up
        os.set_blocking(self._master, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sessions_ended = 0
        """Hang-ups seen so far (each dropped what its session left)."""

    @property
    def resource(self) -> str:
        """The VISA resource string of the serial port."""
        return f"ASRL{self.path}::INSTR"

    def start(self) -> PtyServer:
        self._thread = threading.Thread(target=self.serve_forever, name="pcm-pty", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        limits = self.device.serving
        framer = self.device.new_framer()
        watch = PartialWatch(limits, time.monotonic())
        connected = False
        line = select.poll()
        line.register(self._master, select.POLLIN | select.POLLHUP)
        while not self._stop.is_set():
            events = line.poll(POLL_S * 1000)
            if not events:
                reason = watch.expired(time.monotonic(), framer.pending)
                if reason is not None:
                    log.warning("%s: dropped", reason)
                    framer.reset()
                continue
            try:
                data = os.read(self._master, 1 << 20)
            except BlockingIOError:
                data = None
            except OSError as error:
                if error.errno != errno.EIO:
                    break
                data = None
            if data:
                connected = True
                try:
                    for reply in self.device.replies(framer, data):
                        self._write(reply, limits.send_stall_timeout_s)
                except _HungUp:
                    data = None
                else:
                    watch.heard(time.monotonic(), len(data), framer.pending)
                    continue
            if connected or framer.pending:  # the line hung up: the session is over
                self._end_session(framer)
            connected = False
            self._stop.wait(POLL_S)  # no client has the port open

    def _end_session(self, framer: MessageFramer) -> None:
        framer.reset()
        try:
            termios.tcflush(self._master, termios.TCIOFLUSH)  # replies nobody will read
        except termios.error:
            pass
        self.sessions_ended += 1

    def _write(self, data: bytes, stall_s: float) -> None:
        line = select.poll()
        line.register(self._master, select.POLLOUT | select.POLLHUP)
        with memoryview(data) as view:
            progress = time.monotonic()
            while view:
                events = line.poll(POLL_S * 1000)
                if self._stop.is_set():
                    raise _HungUp
                if any(flags & select.POLLHUP for _, flags in events):
                    raise _HungUp  # the client closed the port: nobody reads this reply
                try:
                    written = os.write(self._master, view) if events else 0
                except BlockingIOError:  # a pty can say writable with its buffer full
                    self._stop.wait(0.01)
                    written = 0
                except OSError as error:
                    if error.errno == errno.EIO:
                        raise _HungUp from None
                    raise
                if not written:
                    if time.monotonic() - progress > stall_s:
                        log.warning("reply dropped: nobody read it for %g s", stall_s)
                        raise _HungUp
                    continue
                view = view[written:]
                progress = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            os.close(self._master)
        except OSError:
            pass

    def __enter__(self) -> PtyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
