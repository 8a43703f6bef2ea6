"""What a hostile or careless client can do to a served emulator (issue #11): a script, run
from the repository root::

    .venv/bin/python benchmarks/bench_attacks.py            # the attacks at full size
    .venv/bin/python benchmarks/bench_attacks.py --quick    # attacks ÷10, shorter waits

Each check starts a fresh ``pcm-hil emulator serve --port 0`` (the default profile, 4×256×256,
through ``pcm_hil.testing.serve.served_emulator``) and talks to it over raw sockets.

Memory attacks. On one connection: ``*IDN?``, then the server's idle resident memory (VmRSS
from ``/proc/<pid>/status``) and a reset of its peak (VmHWM, through ``clear_refs``); then the
attack, without reading any reply, until the server has been quiet (RSS and CPU time flat) for
a second; then the connection is closed and a *new* one must get ``*IDN?`` answered within
10 s. A thread samples VmRSS every 20 ms throughout; the peak is the larger of those samples
and VmHWM at the end. A server past ``--limit-mb`` (4,000 MB) is killed to protect the machine.

1. 8,000 pipelined ``READ:TILE? 0`` lines (2 GiB of replies asked for by 104 KB).
2. One ``MVM:FORWard?`` on a 1-row, all-columns window with 1M input vectors: 4 MiB in, a
   reply 256× that size asked for.
3. 1.5M rejected lines (``FOO``, undefined header), sent in 64 KiB chunks.

Target: peak − idle ≤ 200 MB, and ``*IDN?`` answered afterwards.

Two more checks. A slow reader asks for 64 tile reads in one message (a 16 MiB reply:
64 × 256 KiB blocks), pauses 2 s, then reads at 10 MB/s: target, every byte of the reply (its
length computed from the command table's reply format) and a reply that parses. A partial
message (``*IDN`` with no newline; ``PULS 0,#18`` and ``PULS:APPL 0,#18``, a block header and
no data) is left on an open connection: the time until a second client gets ``*IDN?``
answered, beside the server's documented partial-message and idle timeouts (``ServingLimits``
in ``pcm_hil.protocols.limits``, where it exists), capped at 30 s (10 s with ``--quick``). Target: freed within that timeout plus the
server's busy wait and 1 s.

Exit status 1 if any target is missed. Inputs are deterministic (a seeded numpy Generator).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.protocols.blocks import decode_array, decode_block, encode_block
from pcm_hil.testing.serve import served_emulator

MB = 1e6
TARGET_MB = 200.0
IDN_TIMEOUT_S = 10.0
SAMPLE_S = 0.02
ATTACK_TIMEOUT_S = 120.0  # the longest an attack may send or wait for the server to settle
SLOW_REPLY_BYTES = 16 * 1024 * 1024
SLOW_PAUSE_S = 2.0
SLOW_RATE = 10e6  # bytes/s
PARTIALS = (b"*IDN", b"PULS 0,#18", b"PULS:APPL 0,#18")
TICKS = float(os.sysconf("SC_CLK_TCK"))  # /proc/<pid>/stat counts CPU time in these


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- the server and its memory ---------------------------------------------------------------------


class Server:
    """A served emulator: its address and what /proc says of its process."""

    def __init__(self, process: subprocess.Popen, resource: str) -> None:
        self.process = process
        self.pid = process.pid
        host, port = resource.split("::")[1:3]  # TCPIP0::host::port::SOCKET
        self.host, self.port = host, int(port)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def status_mb(self, key: str) -> float | None:
        """VmRSS or VmHWM in MB; None once the process is gone."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024 / MB
        except OSError:
            pass
        return None

    def rss_mb(self) -> float | None:
        return None if self.process.poll() is not None else self.status_mb("VmRSS")

    def reset_peak(self) -> bool:
        """Set VmHWM back to the current RSS (Linux 4.0+); False if not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as clear:
                clear.write("5")
            return True
        except OSError:
            return False

    def cpu_s(self) -> float:
        """User + system CPU time so far."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, IndexError):
            return 0.0


@contextlib.contextmanager
def fresh_server() -> Iterator[Server]:
    with served_emulator("--seed", "0") as served:
        yield Server(served.process, served.resource)


class Watch(threading.Thread):
    """Samples the server's VmRSS every 20 ms; kills the server past ``limit_mb``."""

    def __init__(self, server: Server, limit_mb: float) -> None:
        super().__init__(daemon=True)
        self.server, self.limit_mb = server, limit_mb
        self.peak_mb = 0.0
        self.killed = False
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = self.server.rss_mb()
            if rss is None:
                return
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.limit_mb:
                self.killed = True
                self.server.process.kill()
                return
            time.sleep(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()


def wait_until_quiet(server: Server, watch: Watch, window_s: float = 1.0) -> None:
    """Return once the server's RSS has grown < 1 MB and it has used < 10% of a CPU over the
    last ``window_s`` (it has done what it will do with what it received), or it is gone."""
    start = time.monotonic()
    samples: list[tuple[float, float, float]] = []
    while time.monotonic() - start < ATTACK_TIMEOUT_S and not watch.killed:
        now, rss, cpu = time.monotonic(), server.rss_mb(), server.cpu_s()
        if rss is None:
            return
        samples.append((now, rss, cpu))
        old = [sample for sample in samples if sample[0] <= now - window_s]
        if old:
            then, rss_then, cpu_then = old[-1]
            if rss - rss_then < 1.0 and cpu - cpu_then < 0.1 * (now - then):
                return
        time.sleep(0.1)


# --- raw-socket helpers ---------------------------------------------------------------------------


def read_line(sock: socket.socket, timeout: float) -> bytes:
    """Bytes up to and including LF (fewer if the server closes first)."""
    sock.settimeout(timeout)
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def query(sock: socket.socket, line: bytes, timeout: float = 10.0) -> bytes:
    sock.sendall(line + b"\n")
    return read_line(sock, timeout).rstrip(b"\n")


def answers_idn(server: Server, identity: bytes, within_s: float) -> tuple[float | None, str]:
    """The seconds until a new connection gets ``*IDN?`` answered with ``identity``, retrying
    while the chip is busy (None if not within ``within_s``); and what happened, for a table."""
    start = time.monotonic()
    last = "no answer"
    while (left := within_s - (time.monotonic() - start)) > 0:
        if server.process.poll() is not None:
            return None, "no (server gone)"
        try:
            with server.connect(timeout=left) as sock:
                reply = query(sock, b"*IDN?", timeout=max(left, 0.01))
            if reply == identity:
                seconds = time.monotonic() - start
                return seconds, f"yes ({seconds * 1e3:,.0f} ms)"
            last = reply[:40].decode(errors="replace") or "closed"
        except OSError as error:
            last = type(error).__name__
        time.sleep(0.05)
    return None, f"no ({last})"


# --- the memory attacks ---------------------------------------------------------------------------


@dataclass
class MemoryRow:
    attack: str
    idle_mb: float
    peak_mb: float
    end_mb: float | None
    killed: bool
    idn: str
    idn_ok: bool
    note: str = ""

    @property
    def met(self) -> bool:
        return not self.killed and self.idn_ok and self.peak_mb - self.idle_mb <= TARGET_MB


Attack = Callable[[socket.socket, tuple[int, int, int]], str]


def pipelined_tile_reads(lines: int) -> Attack:
    def attack(sock: socket.socket, geometry: tuple[int, int, int]) -> str:
        sock.sendall(b"READ:TILE? 0\n" * lines)
        return f"{lines * 13 / 1e3:,.0f} KB sent"

    return attack


def mvm_amplification(vectors: int, seed: int) -> Attack:
    def attack(sock: socket.socket, geometry: tuple[int, int, int]) -> str:
        columns = geometry[2]
        inputs = np.random.default_rng(seed).uniform(-0.2, 0.2, vectors).astype("<f4")
        header = f"MVM:FORW? 0,0,1,0,{columns},".encode()
        sock.sendall(header + encode_block(inputs.tobytes()) + b"\n")
        return (
            f"{inputs.nbytes / 2**20:.2f} MiB in, {inputs.nbytes * columns / 2**20:,.0f} MiB asked"
        )

    return attack


def largest_mvms(count: int, seed: int) -> Attack:
    """The largest requests the chip accepts, pipelined: full-window MVMs of MVM:BATCh?
    vectors each (a 16 MiB block in, a 16 MiB block out at 256 columns) — the fixed bound."""

    def attack(sock: socket.socket, geometry: tuple[int, int, int]) -> str:
        _, rows, columns = geometry
        batch = int(query(sock, b"MVM:BATC?"))
        inputs = np.random.default_rng(seed).uniform(-0.2, 0.2, batch * rows).astype("<f4")
        message = f"MVM:FORW? 0,0,{rows},0,{columns},".encode() + encode_block(inputs.tobytes())
        sent = 0
        sock.settimeout(5.0)  # a send held back this long: the server has stopped reading
        try:
            for _ in range(count):
                sock.sendall(message + b"\n")
                sent += 1
        except TimeoutError:  # the server stopped reading: its replies are not being read
            pass
        return (
            f"{sent} of {count} x {inputs.nbytes / 2**20:.0f} MiB sent before the server "
            f"stopped reading, {batch * columns * 4 / 2**20:.0f} MiB out each"
        )

    return attack


def largest_reads(count: int) -> Attack:
    """READ:DEV? with an address block as large as one message may hold (17 MiB),
    pipelined: its reply would pass the 16 MiB reply limit (refused before reading)."""

    def attack(sock: socket.socket, geometry: tuple[int, int, int]) -> str:
        _, rows, columns = geometry
        addresses = np.arange(17 * 2**20 // 4 - 16, dtype="<u4") % (rows * columns)
        message = b"READ:DEV? 0," + encode_block(addresses.tobytes()) + b"\n"
        sock.settimeout(5.0)
        sent = 0
        try:
            for _ in range(count):
                sock.sendall(message)
                sent += 1
        except TimeoutError:
            pass
        return f"{sent} of {count} x {len(message) / 2**20:.0f} MiB sent"

    return attack


def rejected_lines(lines: int) -> Attack:
    def attack(sock: socket.socket, geometry: tuple[int, int, int]) -> str:
        per_chunk = 65536 // 4
        chunk = b"FOO\n" * per_chunk
        for _ in range(lines // per_chunk):
            sock.sendall(chunk)
        sock.sendall(b"FOO\n" * (lines % per_chunk))
        return f"{lines * 4 / MB:.1f} MB sent"

    return attack


def run_memory_attack(name: str, attack: Attack, limit_mb: float) -> MemoryRow:
    progress(f"memory: {name}")
    with fresh_server() as server:
        sock = server.connect()
        identity = query(sock, b"*IDN?")
        tiles, rows, columns = (int(x) for x in query(sock, b"CHIP:GEOM?").split(b","))
        time.sleep(0.2)
        idle = server.rss_mb() or 0.0
        hwm_reset = server.reset_peak()
        watch = Watch(server, limit_mb)
        watch.start()
        note = ""
        try:
            sock.settimeout(ATTACK_TIMEOUT_S)
            started = time.monotonic()
            note = attack(sock, (tiles, rows, columns))
            wait_until_quiet(server, watch)
            note += f"; connection closed after {time.monotonic() - started:.1f} s"
        except OSError as error:
            note = f"send failed: {type(error).__name__}"
        finally:
            sock.close()
        seconds, idn = (
            (None, "no (server killed)")
            if watch.killed
            else answers_idn(server, identity, IDN_TIMEOUT_S)
        )
        end = server.rss_mb()
        hwm = server.status_mb("VmHWM") if hwm_reset and not watch.killed else None
        watch.stop()
        peak = max(watch.peak_mb, hwm or 0.0)
        if not hwm_reset:
            note += "; peak sampled only (VmHWM not reset)"
    return MemoryRow(name, idle, peak, end, watch.killed, idn, seconds is not None, note)


# --- the slow reader ------------------------------------------------------------------------------


@dataclass
class CheckRow:
    check: str
    result: str
    target: str
    met: bool


def slow_reader() -> CheckRow:
    progress(f"slow reader: {SLOW_PAUSE_S:g} s pause, then {SLOW_RATE / MB:g} MB/s")
    with fresh_server() as server, server.connect() as sock:
        tiles, rows, columns = (int(x) for x in query(sock, b"CHIP:GEOM?").split(b","))
        data_bytes = rows * columns * 4  # READ:TILE?: a block of rows × columns <f4
        reads = math.ceil(SLOW_REPLY_BYTES / data_bytes)
        block_bytes = len(f"#{len(str(data_bytes))}{data_bytes}") + data_bytes  # definite form
        expected = reads * block_bytes + reads  # blocks joined by ';', then LF
        message = ";".join(f"READ:TILE? {i % tiles}" for i in range(reads)).encode() + b"\n"
        sock.sendall(message)
        time.sleep(SLOW_PAUSE_S)
        received = bytearray()
        sock.settimeout(30.0)
        start = time.monotonic()
        ended = "all read"
        try:
            while len(received) < expected:
                ahead = start + len(received) / SLOW_RATE - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                chunk = sock.recv(min(65536, expected - len(received)))
                if not chunk:
                    ended = "closed by the server"
                    break
                received += chunk
        except OSError as error:
            ended = type(error).__name__
    parsed = parses(bytes(received), reads, rows * columns)
    result = (
        f"{len(received):,} of {expected:,} bytes ({ended}); "
        f"{'parses' if parsed else 'does not parse'}"
    )
    return CheckRow(
        f"slow reader: {reads} tile reads ({expected / 2**20:.1f} MiB), "
        f"{SLOW_PAUSE_S:g} s pause, {SLOW_RATE / MB:g} MB/s",
        result,
        "every byte, parses",
        len(received) == expected and parsed,
    )


def parses(reply: bytes, blocks: int, values: int) -> bool:
    """Whether ``reply`` is ``blocks`` blocks of ``values`` finite float32 joined by ';' + LF."""
    position = 0
    try:
        for number in range(blocks):
            data, position = decode_block(reply, position)
            array = decode_array(data, "<f4")
            if array.size != values or not np.isfinite(array).all():
                return False
            if reply[position : position + 1] != (b"\n" if number == blocks - 1 else b";"):
                return False
            position += 1
    except Exception:
        return False
    return position == len(reply)


# --- a partial message holding the chip -----------------------------------------------------------


def documented_timeouts() -> tuple[float | None, str]:
    """The partial-message timeout the server documents (None: none) and how the documented
    timeouts read, from ``pcm_hil.protocols.limits.DEFAULT_LIMITS`` where it exists."""
    try:
        from pcm_hil.protocols.limits import DEFAULT_LIMITS
    except ImportError:
        return None, "no timeout documented"
    partial = getattr(DEFAULT_LIMITS, "partial_timeout_s", None)
    idle = getattr(DEFAULT_LIMITS, "idle_timeout_s", None)
    text = ", ".join(
        f"{name} {'none' if value is None else f'{value:g} s'}"
        for name, value in (("partial_timeout_s", partial), ("idle_timeout_s", idle))
    )
    return partial, text


def partial_message(partial: bytes, cap_s: float) -> CheckRow:
    timeout, documented = documented_timeouts()
    busy = inspect.signature(TcpServer).parameters["busy_wait_s"].default
    progress(f"partial message {partial!r}: waiting up to {cap_s:g} s for a second client")
    with fresh_server() as server, server.connect() as holder:
        identity = query(holder, b"*IDN?")
        holder.sendall(partial)
        seconds, _ = answers_idn(server, identity, cap_s)
        holder.setblocking(False)
        try:
            dropped = holder.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            dropped = False
        except OSError:
            dropped = True
    limit = None if timeout is None else timeout + busy + 1.0
    return CheckRow(
        f"partial {partial.decode()!r} holds the chip",
        (
            f"not freed in {cap_s:g} s"
            if seconds is None
            else f"second client served after {seconds:.2f} s"
        )
        + f"; holder {'dropped' if dropped else 'still connected'} ({documented})",
        "freed" if limit is None else f"freed ≤ {limit:g} s",
        seconds is not None and (limit is None or seconds <= limit),
    )


# --- main -----------------------------------------------------------------------------------------


def render(memory: list[MemoryRow], checks: list[CheckRow], limit_mb: float) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    header = ("attack", "idle MB", "peak MB", "peak−idle MB", "end MB", "*IDN? after", "target")
    rows = []
    for row in memory:
        peak = f"> {limit_mb:,.0f} (killed)" if row.killed else f"{row.peak_mb:,.0f}"
        rise = (
            f"> {limit_mb - row.idle_mb:,.0f}"
            if row.killed
            else f"{row.peak_mb - row.idle_mb:,.0f}"
        )
        end = "-" if row.end_mb is None else f"{row.end_mb:,.0f}"
        rows.append((row.attack, f"{row.idle_mb:,.0f}", peak, rise, end, row.idn, verdict(row.met)))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(f"Memory attacks (target: peak − idle ≤ {TARGET_MB:g} MB and *IDN? answered after)")
    for number, row in enumerate((header, *rows)):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  " + " | ".join(cells))
        if number == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    for row in memory:
        if row.note:
            print(f"    {row.attack}: {row.note}")
    print()
    print("Slow reader and partial messages")
    for check in checks:
        print(f"  {check.check}")
        print(f"    {check.result}")
        print(f"    target: {check.target}: {verdict(check.met)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="attacks ÷10, 10 s partial cap")
    parser.add_argument(
        "--limit-mb",
        type=float,
        default=4000.0,
        help="kill a server whose RSS exceeds this (default 4000 MB)",
    )
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    cap_s = 10.0 if args.quick else 30.0
    attacks = {
        f"{8000 // scale:,} pipelined READ:TILE? 0, unread": pipelined_tile_reads(8000 // scale),
        f"MVM:FORW? 1-row window, {1_048_576 // scale:,} vectors, unread": mvm_amplification(
            1_048_576 // scale, seed=11
        ),
        f"{1_500_000 // scale:,} rejected lines (FOO)": rejected_lines(1_500_000 // scale),
        f"READ:DEV? of 17 MiB of addresses, {8 // min(scale, 4)} pipelined": largest_reads(
            8 // min(scale, 4)
        ),
        f"largest legal MVMs, {8 // min(scale, 4)} pipelined, unread": largest_mvms(
            8 // min(scale, 4), seed=12
        ),
    }
    memory = [run_memory_attack(name, attack, args.limit_mb) for name, attack in attacks.items()]
    checks = [slow_reader(), *(partial_message(partial, cap_s) for partial in PARTIALS)]
    render(memory, checks, args.limit_mb)
    return 0 if all(row.met for row in memory) and all(c.met for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
