"""Serve an instrument over TCP, as a VISA ``TCPIP0::host::port::SOCKET`` resource.

One server for every instrument this package emulates — the chip, the source-measure unit,
the pulse generator — anything ``Served`` (``pcm_hil.protocols.device.ScpiDevice``). A client
that drops mid-message leaves no half-applied command: a message executes only once its
terminating LF has arrived, and a partial message is discarded with the connection.

What a connection may cost is bounded by the device's ``serving`` limits
(``pcm_hil.protocols.limits``): one reused receive buffer; replies streamed as each query
runs, one at a time, and the next message read only once the last reply is sent (a client
that does not read stops being read: TCP flow control holds it back, not the server's
memory); a partial message with nothing more for ``partial_timeout_s`` closes the connection
(an exclusive chip is then free); a client that reads nothing of a reply for
``send_stall_timeout_s`` is dropped, and one that reads slowly gets every byte.

An *exclusive* instrument (the chip) has one client at a time. A connection made while
another is open waits up to ``busy_wait_s`` (1 s) for it to close — so a client that
reconnects at once is not turned away — and is then refused: it receives one line, the
instrument's ``busy_entry()`` (``105,"Chip busy;…"``), and is closed. Other instruments take
several clients; their messages run one at a time.

Only this machine may connect unless told: a server bound beyond loopback needs ``allow``,
the networks whose clients it serves; a connection from elsewhere is closed at once and
logged (logger ``pcm_hil.emulator.servers.tcp``).

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

import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from pcm_hil.emulator.faults import FaultEvent, FaultPlan, FaultSession, hang_up, wait_for_client
from pcm_hil.protocols.device import Served
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.limits import PartialWatch

if TYPE_CHECKING:
    from pcm_hil.emulator.wire import WireInterface

RECEIVE_BYTES = 1 << 20
#: How often a waiting connection looks at the server's stop flag and its own timeouts, s.
POLL_S = 0.2
_QUICK_ACK = getattr(socket, "TCP_QUICKACK", None)

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Stalled(Exception):
    """The client read nothing of a reply for ``send_stall_timeout_s``."""


class TcpServer:
    """A background TCP server for one instrument (``device``). Binds 127.0.0.1 unless told."""

    def __init__(
        self,
        device: Served,
        host: str = "127.0.0.1",
        port: int = 0,
        busy_wait_s: float = 1.0,
        faults: FaultPlan | None = None,
        allow: Iterable[str | Network] = (),
    ) -> None:
        if ":" in host:
            raise ValueError(
                f"cannot serve on {host}: a VISA TCPIP resource string names an IPv4 address "
                "or a host name; bind an IPv4 address (127.0.0.1, 0.0.0.0 or this machine's)"
            )
        self.device = device
        self.busy_wait_s = busy_wait_s
        self.allow = tuple(ipaddress.ip_network(net, strict=False) for net in allow)
        """Networks whose clients are served besides this machine's (loopback)."""
        self.refused: list[str] = []
        """Addresses of the clients refused for not being allowed, in order."""
        if not self.allow and not _is_loopback(host):
            raise ValueError(
                f"serving on {host} lets other machines send pulses: name the networks that "
                "may connect (allow=, --allow CIDR[,CIDR…]), or bind 127.0.0.1"
            )
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
        self._listener.settimeout(POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._clients: set[socket.socket] = set()
        self._open = 0  # connections accepted and not yet closed (served or waiting)
        self._thread: threading.Thread | None = None
        self.connections = 0

    @property
    def resource(self) -> str:
        """The VISA resource string that reaches this server (bound to every interface: the
        address of this machine's outgoing interface)."""
        host = self.host
        if ipaddress.ip_address(host).is_unspecified:
            host = _reachable_address()
        return f"TCPIP0::{host}::{self.port}::SOCKET"

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
            if not self._permitted(peer[0]):
                self.refused.append(peer[0])
                log.warning("refused a connection from %s: not in the allowed networks", peer[0])
                connection.close()
                continue
            most = self.device.serving.max_connections
            with self._idle:
                full = self._open >= most
                if not full:
                    self._open += 1
            if full:
                log.warning("refused a connection from %s: %d connections open", peer[0], most)
                self._refuse(connection)
                continue
            try:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _keep_alive(connection)
            except OSError:  # the client is already gone
                connection.close()
                with self._idle:
                    self._open -= 1
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
        try:
            if free:
                self._serve_client(connection, number)
            else:
                self._refuse(connection)
        finally:
            with self._idle:
                self._open -= 1

    def _refuse(self, connection: socket.socket) -> None:
        """Close a connection not served: an exclusive instrument first says it is busy."""
        try:
            if self.device.exclusive:
                connection.settimeout(POLL_S)
                connection.sendall(self.device.busy_entry().format() + b"\n")
        except OSError:
            pass
        finally:
            connection.close()

    def _permitted(self, address: str) -> bool:
        """Whether a client at ``address`` may connect: this machine (loopback or one of its
        own addresses), or an allowed network."""
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return (
            ip.is_loopback or any(ip in network for network in self.allow) or _this_machine(str(ip))
        )

    def _serve_client(self, connection: socket.socket, number: int) -> None:
        framer = self.device.new_framer()
        limits = self.device.serving
        session = None
        if self.faults is not None and self.faults.connection_faults:
            # a plan is taken only for a device with a chip, the chip's wire (see __init__)
            wire = cast("WireInterface", self.device)
            session = self.faults.session(wire, number, self.fault_events.append)
        buffer = bytearray(RECEIVE_BYTES)  # one receive buffer for the whole connection
        received_view = memoryview(buffer)
        watch = PartialWatch(limits, time.monotonic())
        try:
            connection.settimeout(POLL_S)
            while not self._stop.is_set():
                try:
                    received = connection.recv_into(buffer)
                except TimeoutError:
                    if self._timed_out(framer, watch, number):
                        break
                    continue
                if not received:
                    break
                if _QUICK_ACK is not None:
                    connection.setsockopt(socket.IPPROTO_TCP, _QUICK_ACK, 1)
                data = received_view[:received]  # the framer copies what it keeps
                if session is not None:
                    if not self._feed_faulty(connection, session, framer, data):
                        break
                else:
                    for reply in self.device.replies(framer, data):
                        self._send(connection, reply, limits.send_stall_timeout_s)
                watch.heard(time.monotonic(), received, framer.pending)
                if self._timed_out(framer, watch, number):
                    break
        except _Stalled:
            log.warning(
                "connection %d dropped: its client read nothing for %g s",
                number,
                limits.send_stall_timeout_s,
            )
        except OSError:
            pass  # the client went away; its partial message dies with the framer
        finally:
            connection.close()
            with self._idle:
                self._clients.discard(connection)
                self._idle.notify_all()

    def _timed_out(self, framer: MessageFramer, watch: PartialWatch, number: int) -> bool:
        """Whether the connection is to be closed now: its partial message held too long
        (``PartialWatch``), or idle past ``idle_timeout_s``."""
        now = time.monotonic()
        reason = watch.expired(now, framer.pending)
        if reason is not None:
            log.warning("connection %d closed: %s", number, reason)
            return True
        idle = self.device.serving.idle_timeout_s
        if idle is not None and not framer.pending and now - watch.last_heard > idle:
            log.info("connection %d closed: idle for %g s", number, idle)
            return True
        return False

    def _send(self, connection: socket.socket, data: bytes, stall_s: float) -> None:
        """Send all of ``data``, waiting for a slow reader as long as it reads something
        every ``stall_s``; raise _Stalled otherwise (OSError when the client is gone)."""
        with memoryview(data) as view:
            progress = time.monotonic()
            while view:
                try:
                    sent = connection.send(view)
                except TimeoutError:
                    if self._stop.is_set():
                        raise OSError("server stopping") from None
                    if time.monotonic() - progress > stall_s:
                        raise _Stalled from None
                    continue
                view = view[sent:]
                progress = time.monotonic()

    def _feed_faulty(
        self,
        connection: socket.socket,
        session: FaultSession,
        framer: MessageFramer,
        data: memoryview,
    ) -> bool:
        """Process received bytes under the fault plan, one message at a time; False when
        the connection is to end (dropped by a fault, or its client left during a delay)."""
        for outcome in session.feed(framer, data):
            if outcome.delay_s and not wait_for_client(
                connection, outcome.delay_s, self._stop.is_set
            ):
                return False
            if outcome.reply:
                self._send(connection, outcome.reply, self.device.serving.send_stall_timeout_s)
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


def _keep_alive(connection: socket.socket) -> None:
    """TCP keep-alive probes: a client whose machine vanished without closing its connection
    (power cut, cable pulled) is found gone after about two minutes of silence, and the chip
    freed (idle 60 s, then six probes 10 s apart, where the system lets us set them)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        if hasattr(socket, option):
            connection.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


@functools.lru_cache(maxsize=64)
def _this_machine(address: str) -> bool:
    """Whether ``address`` is one of this machine's own (it can be bound here)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only; ValueError for a name
    that does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise ValueError(f"cannot serve on {host}: no such host ({error.strerror})") from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _reachable_address() -> str:
    """This machine's address on its outgoing interface (no packet is sent), else its name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like any outside address
            address = udp.getsockname()[0]
    except OSError:
        return socket.gethostname()
    return socket.gethostname() if ipaddress.ip_address(address).is_unspecified else address
