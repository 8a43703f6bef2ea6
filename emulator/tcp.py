"""Serve an emulated chip over TCP, as a VISA ``TCPIP0::host::port::SOCKET`` resource.

One client controls the chip at a time. A connection made while another is open waits up to
``busy_wait_s`` (1 s) for it to close — so a client that reconnects at once is not turned away
— and is then refused: it receives one line, the error entry ``105,"Chip busy;…"``, and is
closed. A client that
drops mid-message leaves no half-applied command: a message executes only once its
terminating LF has arrived, and a partial message is discarded with the connection.

With a ``FaultPlan`` (``emulator.faults``) the server misbehaves on purpose: late replies,
dropped connections, damaged blocks, injected errors, temperature excursions and resets, each
at a set message of every connection; and the plan's device faults are applied to the chip
when the server is constructed. Every fault that fires is recorded in ``fault_events``.
"""

from __future__ import annotations

import socket
import threading

from pcm_hil.emulator.faults import FaultEvent, FaultPlan, FaultSession, hang_up, wait_for_client
from pcm_hil.emulator.wire import WireInterface
from pcm_hil.protocols.codec import MessageFramer
from pcm_hil.protocols.errors import CHIP_BUSY, ERRORS, ErrorEntry

RECEIVE_BYTES = 1 << 20


class TcpServer:
    """A background TCP server for one wire interface. Binds 127.0.0.1 unless told."""

    def __init__(
        self,
        wire: WireInterface,
        host: str = "127.0.0.1",
        port: int = 0,
        busy_wait_s: float = 1.0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.wire = wire
        self.busy_wait_s = busy_wait_s
        self.faults = faults if faults else None
        """The fault plan (None: a well-behaved chip)."""
        self.fault_events: list[FaultEvent] = []
        """Every fault that fired, in order (appended from the connection threads)."""
        if self.faults is not None:
            self.faults.apply_to_chip(wire.chip)
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._client: socket.socket | None = None
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
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._admit, args=(connection,), name=f"pcm-tcp-{peer[1]}", daemon=True
            ).start()

    def _admit(self, connection: socket.socket) -> None:
        """Serve the connection once the chip is free, or refuse it after busy_wait_s."""
        number = 0
        with self._idle:
            free = self._idle.wait_for(lambda: self._client is None, timeout=self.busy_wait_s)
            if free:
                self._client = connection
                self.connections += 1
                number = self.connections
        if free:
            self._serve_client(connection, number)
        else:
            self._refuse(connection)

    def _refuse(self, connection: socket.socket) -> None:
        entry = ErrorEntry(CHIP_BUSY, f"{ERRORS[CHIP_BUSY]};another client controls this chip")
        try:
            connection.sendall(entry.format() + b"\n")
        except OSError:
            pass
        finally:
            connection.close()

    def _serve_client(self, connection: socket.socket, number: int = 0) -> None:
        framer = self.wire.new_framer()
        session = None
        if self.faults is not None and self.faults.connection_faults:
            session = self.faults.session(self.wire, number, self.fault_events.append)
        try:
            connection.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    data = connection.recv(RECEIVE_BYTES)
                except TimeoutError:
                    continue
                if not data:
                    break
                if session is not None:
                    if not self._feed_faulty(connection, session, framer, data):
                        break
                    continue
                reply = self.wire.feed(framer, data)
                if reply:
                    connection.sendall(reply)
        except OSError:
            pass  # the client went away; its partial message dies with the framer
        finally:
            connection.close()
            with self._idle:
                self._client = None
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
            client = self._client
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TcpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
