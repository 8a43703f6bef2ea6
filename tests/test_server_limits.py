"""What one connection may cost a served instrument (issue 11): replies streamed one at a time,
reply and batch limits with their own error codes, timeouts that free the chip, framing that
recognises a block only where the table takes one, a pty that forgets a closed session, and a
server that keeps other machines out unless told.

Servers are started here on 127.0.0.1 (or a fresh pty) and stopped here; every read has a
deadline. Memory itself is measured by benchmarks/bench_attacks.py, against a served emulator
in its own process; here the behaviour that bounds it is asserted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from pcm_hil.drivers import PcmChip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers import tcp as tcp_server
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.emulator.servers.pty import PtyServer
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.protocols import COMMANDS
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.limits import ServingLimits

SEED = 11
IO_TIMEOUT = 10.0
IDN_TINY = b"PCM-HIL,PCM-EMULATOR,EMU-0001,0.1.0\n"
NO_ERROR = b'0,"No error"\n'


def block(data: bytes) -> bytes:
    size = str(len(data)).encode()
    return b"#" + str(len(size)).encode() + size + data


def f4(values) -> bytes:
    return block(np.asarray(values, dtype="<f4").tobytes())


class Client:
    """A raw socket with deadline-bounded reads."""

    def __init__(self, server: TcpServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_exact(self, count: int, timeout: float = IO_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < count:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed; buffered {bytes(self.buf[:100])!r}")
            self.buf += chunk
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def readline(self, timeout: float = IO_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while (end := self.buf.find(b"\n")) < 0:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"closed; buffered {bytes(self.buf[:100])!r}")
            self.buf += chunk
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def query(self, message: bytes) -> bytes:
        self.send(message)
        return self.readline()

    def closed_by_server(self, timeout: float = IO_TIMEOUT) -> bool:
        """Whether the server closes the connection (sending nothing more) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def serving(
    profile: str = "tiny", busy_wait_s: float = 1.0, **limits
) -> Iterator[tuple[TcpServer, WireInterface]]:
    wire = WireInterface(make_chip(profile, seed=SEED), serving=ServingLimits(**limits))
    with TcpServer(wire, busy_wait_s=busy_wait_s) as server:
        yield server, wire


@contextlib.contextmanager
def client_of(server: TcpServer) -> Iterator[Client]:
    client = Client(server)
    try:
        yield client
    finally:
        client.close()


# --- limits are checked ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("partial_timeout_s", 0.0, "partial_timeout_s must be a positive number of seconds"),
        ("send_stall_timeout_s", float("nan"), "send_stall_timeout_s must be a positive"),
        ("idle_timeout_s", -1.0, "idle_timeout_s must be a positive"),
        ("max_reply_bytes", 0, "max_reply_bytes must be at least 1"),
        ("max_message_bytes", 1 << 30, "max_message_bytes is at most 67108864"),
    ],
)
def test_serving_limits_refuse_nonsense(field, value, message):
    with pytest.raises(ValueError, match=message):
        ServingLimits(**{field: value})


# --- replies streamed, reply and batch limits -------------------------------------------------


def test_unread_replies_hold_the_client_back_not_the_server():
    """A client pipelining tile reads without reading: the server runs only as far as the
    socket buffers take its replies, then stops reading; when the client reads, every reply
    arrives, whole and in order."""
    lines = 4000
    reply_bytes = len(b"#516384") + 64 * 64 * 4 + 1  # one 64 x 64 tile of float32, LF
    with serving("small") as (server, wire), client_of(server) as client:
        assert client.query(b"*OPC?\n") == b"1\n"
        before = wire.messages
        sender = threading.Thread(target=client.send, args=(b"READ:TILE? 1\n" * lines,))
        sender.start()
        executed, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() - stable_since < 0.5 and time.monotonic() < deadline:
            if wire.messages != executed:
                executed, stable_since = wire.messages, time.monotonic()
            time.sleep(0.05)
        held_back = executed - before
        # the server stopped: far fewer replies made than asked for, bounded by what the
        # kernel's socket buffers hold (a few MB), not by what the client sent
        assert 0 < held_back < lines
        assert held_back * reply_bytes < 16 * 2**20
        replies = client.read_exact(lines * reply_bytes, timeout=60)
        sender.join(IO_TIMEOUT)
        assert replies.count(b"\n#516384") == lines - 1 and replies.startswith(b"#516384")
        tiles = np.frombuffer(
            b"".join(
                replies[i * reply_bytes + 7 : (i + 1) * reply_bytes - 1] for i in range(lines)
            ),
            "<f4",
        )
        assert np.isfinite(tiles).all() and tiles.size == lines * 4096
        assert wire.messages - before == lines
        assert client.query(b"SYST:ERR?\n") == NO_ERROR


def test_mvm_batch_beyond_the_chips_limit_is_refused_with_106():
    """The 1-row amplification: many vectors on a 1-row window are refused before any work,
    with the chip's own code; the chip answers the next query."""
    with serving("small") as (server, wire), client_of(server) as client:
        limit = wire.chip.config.mvm_batch_max
        assert client.query(b"MVM:BATC?\n") == b"%d\n" % limit
        inputs = np.zeros(limit + 1, dtype="<f4")
        client.send(b"MVM:FORW? 0,0,1,0,64," + block(inputs.tobytes()) + b"\n")
        assert client.query(b"SYST:ERR?\n") == (
            b'106,"Batch too large;inputs holds %d vectors, at most mvm_batch_max=%d"\n'
            % (limit + 1, limit)
        )
        client.send(b"MVM:FORW? 0,0,1,0,64," + f4(np.full(limit, 0.1)) + b"\n")
        size = b"%d" % (limit * 64 * 4)  # the whole batch the chip takes: answered
        header = b"#%d%s" % (len(size), size)
        reply = client.read_exact(len(header) + limit * 256 + 1)
        assert reply.startswith(header) and reply.endswith(b"\n")
        assert client.query(b"*IDN?\n") == IDN_TINY


def test_reply_beyond_max_reply_bytes_is_refused_with_225_and_nothing_sent():
    with serving("small", max_reply_bytes=8192) as (server, _), client_of(server) as client:
        client.send(b"READ:TILE? 0\n")  # 16 KiB: refused after it is made, before it is sent
        assert client.query(b"SYST:ERR?\n") == (
            b'-225,"Out of memory;reply of 16384 bytes exceeds 8192"\n'
        )
        # the chip's MVM batch shrinks to what fits: 8192 B / (64 columns x 4 B) = 32 vectors
        assert client.query(b"MVM:BATC?\n") == b"32\n"
        client.send(b"MVM:FORW? 0,0,64,0,64," + f4(np.zeros(64 * 64)) + b"\n")
        assert client.query(b"SYST:ERR?\n") == (
            b'106,"Batch too large;inputs holds 64 vectors, at most mvm_batch_max=32"\n'
        )
        # replies of earlier units of the message are still sent, and within the limit
        reply = client.query(b"CHIP:GEOM?;READ:TILE? 0;*OPC?\n")
        assert reply == b"4,64,64\n"
        assert client.query(b"SYST:ERR?\n").startswith(b"-225,")
        assert (
            client.query(b"READ:DEV? 0," + block(np.arange(8, dtype="<u4").tobytes()) + b"\n")[:4]
            == b"#232"
        )


def test_blocks_of_one_message_beyond_the_limit_are_skipped_not_stored():
    """A block header announcing more than max_message_bytes: -223, the block's bytes are
    skipped as they come (not buffered), and the next message is read as one."""
    with serving(max_message_bytes=1024) as (server, _), client_of(server) as client:
        data = b"\n;\"'" * 600  # 2400 bytes, LFs, separators and quotes inside
        client.send(b"MVM:FORW? 0,0,16,0,16," + block(data) + b"\n*IDN?\n")
        assert client.readline() == IDN_TINY
        assert client.query(b"SYST:ERR?\n") == (
            b'-223,"Too much data;a block of 2400 bytes: the blocks of one message may hold 1024"\n'
        )
        assert client.query(b"SYST:ERR?\n") == NO_ERROR


def test_driver_splits_a_batch_larger_than_the_chip_takes():
    chip = make_chip("tiny", seed=SEED, mvm_batch_max=8)
    wire = WireInterface(chip)
    driver = PcmChip(InProcessTransport("emulator", wire))
    assert driver.config.mvm_batch_max == 8
    inputs = np.random.default_rng(SEED).uniform(-0.1, 0.1, (20, 16))
    before = wire.messages
    out = driver.mvm(0, inputs)
    assert out.shape == (20, 16)
    # three MVM commands (8 + 8 + 4 vectors), each followed by its SYST:ERR?
    assert wire.messages - before == 6
    assert len(wire.errors) == 0


# --- framing: a block only where the table takes one ------------------------------------------


@pytest.mark.parametrize(
    ("stream", "replies", "error"),
    [
        (b"FOO #15\n*IDN?\n*IDN?\n", [IDN_TINY] * 2, b'-113,"Undefined header;FOO"'),
        (b"FOO#3100\n*IDN?\n", [IDN_TINY], b'-113,"Undefined header;FOO"'),
        (
            b"FOO #8" + b"9" * 8 + b"\n*IDN?\n*IDN?\n",
            [IDN_TINY] * 2,
            b'-113,"Undefined header;FOO"',
        ),
        (
            b"*IDN? #15\n*IDN?\n",
            [IDN_TINY],
            b'-102,"Syntax error;block shorter than its header says"',
        ),
        (b"#15abcde\n*IDN?\n", [IDN_TINY], b"-101,\"Invalid character;at '#15abcde'\""),
        (b"*OPC?;#12\n*IDN?\n", [b"1\n", IDN_TINY], b"-101,\"Invalid character;at '#12'\""),
    ],
)
def test_a_malformed_line_costs_that_line_only(stream, replies, error):
    """A '#<digit>' where the table takes no block is text: the line ends at its LF, the
    next lines are served, one error is queued."""
    with serving() as (server, _), client_of(server) as client:
        client.send(stream)
        assert [client.readline() for _ in replies] == replies
        assert client.query(b"SYST:ERR?\n") == error + b"\n"
        assert client.query(b"SYST:ERR?\n") == NO_ERROR


def test_framer_takes_blocks_only_after_a_header_that_has_one():
    framer = MessageFramer(block_header=COMMANDS.takes_block)
    payload = b"\n;\n"
    assert framer.feed(b"READ:DEV? 0,#13" + payload + b"\n") == [b"READ:DEV? 0,#13" + payload]
    assert framer.feed(b"READ:DEV? 0, #13" + payload + b"\n") == [b"READ:DEV? 0, #13" + payload]
    assert framer.feed(b"MVM:FORW? 0,0,1,0,1,#14\n\n\n\n\n") == [b"MVM:FORW? 0,0,1,0,1,#14\n\n\n\n"]
    assert framer.feed(b"FOO #13" + payload + b"\n") == [b"FOO #13", b";", b""]
    assert framer.feed(b"READ:TILE? #13" + payload + b"\n") == [b"READ:TILE? #13", b";", b""]
    assert framer.feed(b"*IDN?;READ:DEV? 0,#12;\n\n") == [b"*IDN?;READ:DEV? 0,#12;\n"]
    assert not framer.pending
    replies = MessageFramer()  # framing replies: a block anywhere
    assert replies.feed(b"#13\n\n\n\n") == [b"#13\n\n\n"]


# --- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [b"*IDN", b"PULS:APPL 0,#18", b"PULS:APPL 0,#9000000", b"MVM:FORW? 0,0,1,0,1,#14\x00"],
)
def test_a_partial_message_frees_the_chip_within_the_partial_timeout(partial):
    """A client holding half a line (or a block header and part of its block): closed after
    partial_timeout_s of silence, its partial message discarded; the next client is served,
    and nothing the first one sent was executed."""
    timeout = 0.4
    with serving(partial_timeout_s=timeout, busy_wait_s=5.0) as (server, wire):
        holder = Client(server)
        holder.send(b"*CLS\n" + partial)
        assert holder.closed_by_server(timeout=timeout + 5.0)
        holder.close()
        with client_of(server) as second:
            assert second.query(b"*IDN?\n") == IDN_TINY
            assert second.query(b"SYST:ERR?\n") == NO_ERROR
        assert wire.chip.devices.g_prog.shape[0] == 2  # the chip itself untouched
        assert server.connections == 2


def test_a_connection_between_messages_is_not_timed_out_by_default():
    """A drift run holds the chip for days between reads: no idle timeout unless set."""
    with serving(partial_timeout_s=0.2) as (server, _), client_of(server) as client:
        assert client.query(b"*IDN?\n") == IDN_TINY
        assert not client.closed_by_server(timeout=0.8)  # four partial timeouts of quiet
        assert client.query(b"*IDN?\n") == IDN_TINY


def test_an_idle_timeout_when_set_closes_a_quiet_connection():
    with serving(idle_timeout_s=0.3) as (server, _), client_of(server) as client:
        assert client.query(b"*IDN?\n") == IDN_TINY
        assert client.closed_by_server(timeout=5.0)


def test_a_slow_reader_gets_every_byte_of_a_16_mib_reply():
    """Pauses 2 s, then reads at 10 MB/s: every byte of 64 tile reads (16 MiB) arrives."""
    tile = 256 * 256 * 4
    message = b";".join([b"READ:TILE? %d" % (i % 4) for i in range(64)]) + b"\n"
    expected = 64 * (len(b"#6%d" % tile) + tile) + 63 + 1
    with serving("default") as (server, _), client_of(server) as client:
        client.send(message)
        time.sleep(2.0)  # the reader is busy elsewhere
        received = bytearray()
        start = time.monotonic()
        client.sock.settimeout(IO_TIMEOUT)
        while len(received) < expected:
            chunk = client.sock.recv(1 << 16)
            assert chunk, f"closed after {len(received)} of {expected} bytes"
            received += chunk
            pause = len(received) / 10e6 - (time.monotonic() - start)
            if pause > 0:
                time.sleep(pause)  # 10 MB/s
        assert len(received) == expected
        units = bytes(received[:-1]).split(b";#6262144")
        assert len(units) == 64 and units[0].startswith(b"#6262144")
        values = np.frombuffer(units[1], "<f4")
        assert values.size == 65536 and np.isfinite(values).all()
        assert client.query(b"*IDN?\n").startswith(b"PCM-HIL,PCM-EMULATOR")


def test_a_stalled_reader_is_dropped_after_the_stall_timeout_and_the_next_client_served():
    message = b";".join([b"READ:TILE? 0"] * 64) + b"\n"
    with serving("default", send_stall_timeout_s=0.5, busy_wait_s=10.0) as (server, _):
        stalled = Client(server)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.send(message)
        with client_of(server) as second:  # waits for the chip (busy_wait_s), then served
            assert second.query(b"*IDN?\n").startswith(b"PCM-HIL,PCM-EMULATOR")
        stalled.close()


# --- the pty forgets a closed session ---------------------------------------------------------


def test_pty_drops_a_partial_line_when_its_session_closes():
    serial = pytest.importorskip("serial")
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with PtyServer(wire) as server:
        first = serial.Serial(server.path, timeout=IO_TIMEOUT)
        first.write(b"*ID")
        first.flush()
        deadline = time.monotonic() + IO_TIMEOUT
        first.close()
        while server.sessions_ended == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.sessions_ended == 1
        second = serial.Serial(server.path, timeout=IO_TIMEOUT)
        try:
            second.write(b"*IDN?\n")
            assert second.readline() == IDN_TINY
            second.write(b"SYST:ERR?\n")
            assert second.readline() == NO_ERROR
        finally:
            second.close()


def test_pty_drops_a_partial_line_after_the_partial_timeout():
    serial = pytest.importorskip("serial")
    wire = WireInterface(make_chip("tiny", seed=SEED), serving=ServingLimits(partial_timeout_s=0.3))
    with PtyServer(wire) as server:
        port = serial.Serial(server.path, timeout=IO_TIMEOUT)
        try:
            port.write(b"*ID")
            port.flush()
            time.sleep(1.0)  # silence: three partial timeouts
            port.write(b"*IDN?\n")
            assert port.readline() == IDN_TINY
        finally:
            port.close()


# --- beyond loopback only when told -------------------------------------------------------------


def _this_machines_address() -> str | None:
    """An address of this machine other than loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = udp.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def _ask(sock: socket.socket) -> bytes:
    """*IDN? on a raw socket: the reply line."""
    sock.sendall(b"*IDN?\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(100)
        assert chunk, reply
        reply += chunk
    return reply


def test_serving_beyond_loopback_needs_allow():
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with pytest.raises(ValueError, match=r"serving on 0\.0\.0\.0 lets other machines send pulses"):
        TcpServer(wire, host="0.0.0.0", port=0)


def test_clients_outside_the_allowed_networks_are_refused_and_logged(caplog, monkeypatch):
    address = _this_machines_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    # no other machine here: this machine's own address stands for one
    monkeypatch.setattr(tcp_server, "_this_machine", lambda _address: False)
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with TcpServer(wire, host="0.0.0.0", port=0, allow=["198.51.100.0/24"]) as server:
        host = server.resource.split("::")[1]
        assert host == address  # a reachable address, not 0.0.0.0
        outsider = socket.create_connection((address, server.port), timeout=IO_TIMEOUT)
        try:
            assert outsider.recv(100) == b""  # closed, unanswered
        except ConnectionResetError:
            pass
        finally:
            outsider.close()
        assert server.refused == [address]
        assert f"refused a connection from {address}" in caplog.text
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as local:
            assert _ask(local) == IDN_TINY  # this machine is always served
    with TcpServer(wire, host=address, port=0, allow=[f"{address}/32"]) as server:
        with socket.create_connection((address, server.port), timeout=IO_TIMEOUT) as allowed:
            assert _ask(allowed) == IDN_TINY
        assert server.refused == []


# --- connections at once ------------------------------------------------------------------------


def test_connections_beyond_max_connections_are_closed_at_once():
    """Served or waiting, at most max_connections at once: the next gets the busy line and is
    closed without a thread or a buffer; when one closes, a new one is taken again."""
    with serving(max_connections=3, busy_wait_s=30.0) as (server, _):
        served = Client(server)
        assert served.query(b"*IDN?\n") == IDN_TINY
        waiting = [Client(server) for _ in range(2)]  # wait for the chip (busy_wait_s)
        extra = Client(server)
        assert extra.readline() == b'105,"Chip busy;another client controls this chip"\n'
        assert extra.closed_by_server(timeout=IO_TIMEOUT)
        extra.close()
        served.close()
        for client in waiting:
            client.send(b"*IDN?\n")
        ready, _, _ = select.select([client.sock for client in waiting], [], [], IO_TIMEOUT)
        assert len(ready) == 1  # one of those waiting now has the chip, the other waits on
        (admitted,) = [client for client in waiting if client.sock in ready]
        assert admitted.readline() == IDN_TINY
        for client in waiting:
            client.close()
        with client_of(server) as again:
            assert again.query(b"*IDN?\n") == IDN_TINY


def test_a_shared_instrument_takes_at_most_max_connections():
    from pcm_hil.emulator.bench import EmulatedBench

    bench = EmulatedBench(devices=4, seed=SEED)
    bench.smu.serving = ServingLimits(max_connections=2)
    with TcpServer(bench.smu) as server:
        first, second = Client(server), Client(server)
        assert first.query(b"*OPC?\n") == second.query(b"*OPC?\n") == b"1\n"
        third = Client(server)
        assert third.closed_by_server(timeout=IO_TIMEOUT)  # nothing said, closed
        third.close()
        first.close()
        deadline = time.monotonic() + IO_TIMEOUT
        while True:  # the server notices the close within its poll interval
            fourth = Client(server)
            try:
                if fourth.query(b"*OPC?\n") == b"1\n":
                    break
            except ConnectionError:
                assert time.monotonic() < deadline
            finally:
                fourth.close()
        second.close()


def test_this_machines_own_address_is_served_beyond_loopback():
    """The printed resource string works from this machine itself."""
    address = _this_machines_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with TcpServer(wire, host="0.0.0.0", port=0, allow=["198.51.100.0/24"]) as server:
        assert server.resource == f"TCPIP0::{address}::{server.port}::SOCKET"
        with socket.create_connection((address, server.port), timeout=IO_TIMEOUT) as own:
            assert _ask(own) == IDN_TINY
        assert server.refused == []


def test_a_host_that_does_not_resolve_is_refused_in_one_line():
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with pytest.raises(ValueError, match=r"cannot serve on no\.such\.host\.invalid: no such host"):
        TcpServer(wire, host="no.such.host.invalid", port=0)


def test_an_ipv6_host_is_refused_in_one_line():
    wire = WireInterface(make_chip("tiny", seed=SEED))
    with pytest.raises(ValueError, match=r"cannot serve on ::1: a VISA TCPIP resource string"):
        TcpServer(wire, host="::1", port=0)


# --- more of what the review found --------------------------------------------------------------


def test_the_batch_a_chip_reports_fits_its_replies_and_messages():
    """A wide chip reports a smaller MVM:BATCh?, so the driver's split batches are accepted
    whatever the window."""
    chip = make_chip("tiny", seed=SEED, tiles=1, rows=512, columns=512)
    wire = WireInterface(chip)
    assert wire.info.mvm_batch_max == 16 * 2**20 // (4 * 512) == 8192
    driver = PcmChip(InProcessTransport("emulator", wire))
    assert driver.config.mvm_batch_max == 8192
    rng = np.random.default_rng(SEED)
    row = driver.mvm(0, rng.uniform(-0.1, 0.1, (20000, 1)), rows=1)
    column = driver.mvm(0, rng.uniform(-0.1, 0.1, (20000, 1)), transposed=True, columns=1)
    assert row.shape == (20000, 512) and column.shape == (20000, 512)
    assert len(wire.errors) == 0


def test_read_devices_beyond_max_reply_bytes_is_refused_before_reading():
    with serving(max_reply_bytes=1000) as (server, _), client_of(server) as client:
        addresses = np.arange(251, dtype="<u4")  # 1004 bytes of reply
        client.send(b"READ:DEV? 0," + block(addresses.tobytes()) + b"\n")
        assert client.query(b"SYST:ERR?\n") == (
            b'-225,"Out of memory;reply of 1004 bytes exceeds 1000"\n'
        )
        client.send(b"READ:DEV? 0," + block(addresses[:250].tobytes()) + b"\n")
        reply = client.read_exact(6 + 1000 + 1)
        assert reply.startswith(b"#41000") and reply.endswith(b"\n")
        assert client.query(b"SYST:ERR?\n") == NO_ERROR


@pytest.mark.parametrize("cut", [1, 10, 24, 40, 5000, 6010])
def test_an_indefinite_block_frames_the_same_however_it_arrives(cut):
    """'#0' data runs to the LF whatever it holds (',#1B', more than the text limit)."""
    tricky = np.array([0.1, 0.1, 0.1], dtype="<f4").tobytes() + b",#15"  # 6.6e-7 V, as bytes
    assert np.isfinite(np.frombuffer(tricky, "<f4")).all()
    stream = (
        b"MVM:FORW? 0,0,4,0,4,#0" + tricky + b"\n*IDN?\n"
        + b"READ:DEV? 0,#0" + np.arange(1, 1501, dtype="<u4").tobytes().replace(b"\n", b"\x0b")
        + b"\n*IDN?\n"
    )  # fmt: skip
    whole = MessageFramer(block_header=COMMANDS.takes_block).feed(stream)
    framer = MessageFramer(block_header=COMMANDS.takes_block)
    pieces = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
    assert pieces == whole and len(whole) == 4 and whole[1] == whole[3] == b"*IDN?"
    assert not any(isinstance(item, Exception) for item in whole)


def test_a_carriage_return_before_a_block_is_white_space_to_the_framer_too():
    framer = MessageFramer(block_header=COMMANDS.takes_block)
    data = np.array([10, 2], dtype="<u4").tobytes()  # an LF inside
    assert framer.feed(b"READ:DEV? 0,\r#18" + data + b"\n") == [b"READ:DEV? 0,\r#18" + data]


def test_a_trickle_cannot_hold_the_chip():
    """A byte now and then, never a whole message: dropped once it has been held longer
    than partial_timeout_s + bytes / partial_min_rate_Bps."""
    with serving(partial_timeout_s=0.5, partial_min_rate_Bps=100.0, busy_wait_s=10.0) as (
        server,
        _,
    ):
        holder = Client(server)
        start = time.monotonic()
        closed = False
        for byte in b"*IDN" * 10:  # one byte every 0.2 s: never silent for 0.5 s
            try:
                holder.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if holder.closed_by_server(timeout=0.2):
                closed = True
                break
        held = time.monotonic() - start
        assert closed and held < 3.0  # 0.5 s + a few bytes at 100 B/s, not 8 s of trickle
        holder.close()
        with client_of(server) as second:
            assert second.query(b"*IDN?\n") == IDN_TINY


def test_pty_drops_an_unread_reply_when_its_session_closes():
    serial = pytest.importorskip("serial")
    wire = WireInterface(make_chip("small", seed=SEED))  # a 16 KiB tile: more than a pty holds
    with PtyServer(wire) as server:
        first = serial.Serial(server.path, timeout=IO_TIMEOUT)
        first.write(b"READ:TILE? 0\n")
        first.flush()
        deadline = time.monotonic() + IO_TIMEOUT
        while wire.messages == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.close()
        while server.sessions_ended == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.sessions_ended == 1
        second = serial.Serial(server.path, timeout=IO_TIMEOUT)
        try:
            second.write(b"*IDN?\n")
            assert second.readline() == b"PCM-HIL,PCM-EMULATOR,EMU-0001,0.1.0\n"
        finally:
            second.close()
