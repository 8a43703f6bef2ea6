"""Serve an instrument over TCP, as a VISA ``TCPIP0::host::port::SOCKET`` resource.

One server for every instrument this package emulates — the chip, the source-measure unit,
the pulse generator — anything with ``new_framer()``, ``feed(framer, data)`` and
``exclusive`` (``pcm_hil.protocols.device.ScpiDevice``). A client that drops mid-message
leaves no half-applied command: a message executes only once its terminating LF has
arrived, and a partial message is discarded with the connection.

An *exclusive* instrument (the chip) has one client at a time. A connection made while
another is open waits up to ``busy_wait_s`` (1 s) for it to close — so a client that
reconnects at once is not turned away — and is then refused: it receives one line, the
instrument's ``busy_entry()`` (``105,"Chip busy;…"``), and is closed. Other instruments take
several clients; their messages run one at a time.

With a ``FaultPlan`` (``pcm_hil.emulator.faults``, for the chip) the server misbehaves on
purpose: late replies, dropped connections, damaged blocks, injected errors, temperature
excursions and resets, each at a set message of every connection; and the plan's device
faults are applied to the chip when the server is constructed. Every fault that fires is
recorded in ``fault_events``.

Each socket gets ``TCP_NODELAY`` and, after every receive, ``TCP_QUICKACK`` (Linux): drivers
send a setting and then ``SYST:ERR?`` as two small writes, and a client without TCP_NODELAY
(pyvisa-py's default) holds the second until the first is acknowledged — a delayed
acknowledgement would cost ~40 ms per setting.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, cast

from pcm_hil.emulator.faults import FaultEvent, FaultPlan, FaultSession, hang_up, wait_for_client
from pcm_hil.protocols.device import Served
from pcm_hil.protocols.framing import MessageFramer

if TYPE_CHECKING:
    from pcm_hil.emulator.wire import WireInterface

RECEIVE_BYTES = 1 << 20
_QUICK_ACK = getattr(socket, "TCP_QUICKACK", None)


class TcpServer:
    """A background TCP server for one instrument (``device``). Binds 127.0.0.1 unless told."""

    def __init__(
        self,
        device: Served,
        host: str = "127.0.0.1",
        port: int = 0,
        busy_wait_s: float = 1.0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.device = device
        self.busy_wait_s = busy_wait_s
        self.faults = faults if faults else None
        """The fault plan (None: a well-behaved instrument)."""
        self.fault_events: list[FaultEvent] = []
        """Every fault that fired, in order (appended from the connection threads)."""
        if self.faults is not None:
            chip = getattr(device, "chip", None)
            if chip is None:
                raise ValueError("fault injection acts on the emulated chip, not this instrument")
            self.faults.apply_to_chip(chip)
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._clients: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self.connections = 0

    @property
    def resource(self) -> str:
        """The VISA resource string that reaches this server."""
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    def start(self) -> TcpServer:
        self._thread = threading.Thread(
            target=self.serve_forever, name="pcm-tcp-accept", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                connection, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the client is already gone
                connection.close()
                continue
            threading.Thread(
                target=self._admit, args=(connection,), name=f"pcm-tcp-{peer[1]}", daemon=True
            ).start()

    def _admit(self, connection: socket.socket) -> None:
        """Serve the connection; for an exclusive instrument once it is free, or refuse it
        after busy_wait_s."""
        with self._idle:
            exclusive = self.device.exclusive
            free = not exclusive or self._idle.wait_for(
                lambda: not self._clients, timeout=self.busy_wait_s
            )
            if free:
                self._clients.add(connection)
                self.connections += 1
                number = self.connections
        if free:
            self._serve_client(connection, number)
        else:
            self._refuse(connection)

    def _refuse(self, connection: socket.socket) -> None:
        try:
            connection.sendall(self.device.busy_entry().format() + b"\n")
        except OSError:
            pass
        finally:
            connection.close()

    def _serve_client(self, connection: socket.socket, number: int) -> None:
        framer = self.device.new_framer()
        session = None
        if self.faults is not None and self.faults.connection_faults:
            # a plan is taken only for a device with a chip, the chip's wire (see __init__)
            wire = cast("WireInterface", self.device)
            session = self.faults.session(wire, number, self.fault_events.append)
        try:
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(RECEIVE_BYTES)
                except TimeoutError:
                    continue
                if not data:
                    break
                if _QUICK_ACK is not None:
                    connection.setsockopt(socket.IPPROTO_TCP, _QUICK_ACK, 1)
                if session is not None:
                    if not self._feed_faulty(connection, session, framer, data):
                        break
                    continue
                reply = self.device.feed(framer, data)
                if reply:
                    connection.sendall(reply)
        except OSError:
            pass  # the client went away; its partial message dies with the framer
        finally:
            connection.close()
            with self._idle:
                self._clients.discard(connection)
                self._idle.notify_all()

    def _feed_faulty(
        self,
        connection: socket.socket,
        session: FaultSession,
        framer: MessageFramer,
        data: bytes,
    ) -> bool:
        """Process received bytes under the fault plan, one message at a time; False when
        the connection is to end (dropped by a fault, or its client left during a delay)."""
        for outcome in session.feed(framer, data):
            if outcome.delay_s and not wait_for_client(
                connection, outcome.delay_s, self._stop.is_set
            ):
                return False
            if outcome.reply:
                connection.sendall(outcome.reply)
            if outcome.close:
                hang_up(connection)
                return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._idle:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
