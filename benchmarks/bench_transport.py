"""Transport and emulator benchmarks for pcm-hil: a script, not a test (nothing is asserted).

Run it from the repository root::

    python benchmarks/bench_transport.py            # rich table
    python benchmarks/bench_transport.py --json     # one JSON object on stdout
    python benchmarks/bench_transport.py --quick    # shorter runs, noisier figures

Both servers run in processes of their own, as a chip or a served emulator does for a lab
script: the emulator as ``python -m pcm_hil.cli emulator serve --port 0`` (its ``TcpServer``), and
a *canned-reply* server, this script started again in a hidden ``--serve-canned`` mode, that
answers each request line with exactly the bytes the emulator sends for it (taken from a real
``WireInterface`` here and handed to it), without parsing anything. Both bind 127.0.0.1, are
stopped in a ``finally`` (SIGTERM, then SIGKILL) and, on Linux, get SIGTERM if this process
dies first (``PR_SET_PDEATHSIG``; the canned server also stops when its stdin closes).

What it measures, each against a baseline, with the ratio:

1. Trivial queries/s (``*OPC?`` and ``TEMP?``) through ``PcmChip`` over TCP to the emulator,
   with the default transport (a plain socket) and through pyvisa-py (``visa_library="@py"``),
   against a raw-socket client talking to the canned-reply server (the same request and reply
   bytes); and ``PcmChip`` against the canned server itself (the driver and transport cost
   alone, no emulator work). A breakdown of one ``*OPC?`` puts the transports alone, the
   driver in-process and the emulator's own ``WireInterface.feed`` beside them.
2. MB/s of a bulk tile read (``read_tile`` of a 256×256 tile: a 256 KiB float32 block) through
   the driver from the canned server (the transport efficiency figure) and from the emulator
   (which includes the emulator's physics, ≈1.2 ms per tile), against the raw socket receiving
   the same bytes from the canned server.
3. Time to read one 256×256 tile through the driver: in-process, over TCP with the default
   transport and over TCP through pyvisa-py (and the chip-level ``EmulatedChip.read_tile``).
4. Time to advance virtual time and read 1,048,576 devices (16 tiles of 256×256): at the chip
   level, through the driver in-process and over TCP, against a numpy floor (one ``exp``, one
   float32 ``standard_normal`` and a few multiplies over 1M float32, into preallocated arrays).

Every figure is the median (and best) of several timed rounds after a warm-up; each round runs
enough calls to last a fixed time (``--quick`` shortens the rounds). A value and its baseline
are timed in interleaved rounds (one round of each in turn), so that both see the machine in
the same state. With two or more CPUs allowed, this (client) process is pinned to one CPU and
the server processes to another (``--cpu`` and ``--server-cpu`` pick them, the same one if
asked; ``--no-pin`` turns pinning off), so that every round trip crosses between the same two
CPUs on every run instead of wherever the scheduler puts each process. Crossing CPUs costs a
wake-up of the other side at every round trip: on a small VM that is 100-250 µs, ten times a
raw round trip on one CPU, and it varies from second to second.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import json
import math
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import IO, Any

import numpy as np

from pcm_hil.drivers.chip import PcmChip
from pcm_hil.drivers.errors import ChipBusyError
from pcm_hil.drivers.transports.tcp import SocketTransport
from pcm_hil.drivers.transports.visa import VisaTransport
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.tcp import TcpServer

TILES, ROWS, COLUMNS = 16, 256, 256
CHIP_OPTIONS = {"tiles": TILES, "rows": ROWS, "columns": COLUMNS}
IN_PROCESS_RESOURCE = f"emulator?rows={ROWS}&columns={COLUMNS}&tiles={TILES}"
TILE_PAYLOAD_BYTES = ROWS * COLUMNS * 4  # float32
DEVICES = TILES * ROWS * COLUMNS
ADVANCE_S = 60.0  # virtual seconds per advance in figure 4

OPC_LINE = b"*OPC?"
TEMP_LINE = b"TEMP?"
TILE_LINE = b"READ:TILE? 0"
ERROR_LINE = b"SYST:ERR?"
TILE_REQUEST = TILE_LINE + b"\n" + ERROR_LINE + b"\n"  # what PcmChip.read_tile(0) writes

TARGET_TCP_RATIO = 0.5
TARGET_MILLION_S = 0.020

# Asked of the canned server by the benchmark itself (never by the driver): how many lines it
# had no canned reply for and handed to its WireInterface fallback.
FALLBACKS_LINE = b"BENCH:FALLBACKS?"
SERVER_START_TIMEOUT_S = 30.0


# --- timing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    round_s: float  # each timed round lasts about this long
    rounds: int
    warmup_calls: int


FULL = Plan(round_s=0.25, rounds=7, warmup_calls=3)
QUICK = Plan(round_s=0.05, rounds=3, warmup_calls=1)


@dataclass(frozen=True)
class Timing:
    """Seconds per call, one sample per round (each the mean over ``number`` calls)."""

    samples: tuple[float, ...]
    number: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "best_s": self.best,
            "rounds": len(self.samples),
            "calls_per_round": self.number,
        }


def _batch(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start


def _autorange(fn: Callable[[], object], plan: Plan) -> int:
    """Warm up, then the number of calls that lasts about ``plan.round_s`` (as timeit does)."""
    for _ in range(plan.warmup_calls):
        fn()
    number, elapsed = 1, _batch(fn, 1)
    while elapsed < plan.round_s / 5 and number < 1_000_000:
        number *= 4
        elapsed = _batch(fn, number)
    return max(1, math.ceil(number * plan.round_s / max(elapsed, 1e-9)))


def measure_interleaved(fns: dict[str, Callable[[], object]], plan: Plan) -> dict[str, Timing]:
    """Time several calls in alternating rounds (one round of each in turn, ``plan.rounds``
    times), each round sized for its own call. Whatever the machine does meanwhile, a value
    and its baseline see it alike, so their ratio holds: across two CPUs of a VM a round trip
    costs 1.5-2x more from one second to the next, which made a baseline timed apart from what
    it is compared with worth little."""
    numbers = {name: _autorange(fn, plan) for name, fn in fns.items()}
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(plan.rounds):
        for name, fn in fns.items():
            samples[name].append(_batch(fn, numbers[name]) / numbers[name])
    return {name: Timing(tuple(samples[name]), numbers[name]) for name in fns}


def measure(fn: Callable[[], object], plan: Plan) -> Timing:
    return measure_interleaved({"": fn}, plan)[""]


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# --- CPU placement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the benchmark (client) and the server processes may run on; None: unpinned."""

    client: frozenset[int] | None
    servers: frozenset[int] | None
    why: str = ""

    def describe(self) -> str:
        if self.client is None and self.servers is None:
            return f"not pinned{f' ({self.why})' if self.why else ''}"
        if self.client == self.servers:
            return f"client and servers all on CPU {_cpus(self.client)}"
        return f"client on CPU {_cpus(self.client)}, servers on CPU {_cpus(self.servers)}"


def _cpus(cpus: frozenset[int] | set[int] | None) -> str:
    return "any" if cpus is None else ",".join(str(cpu) for cpu in sorted(cpus))


def choose_placement(no_pin: bool, cpu: int | None, server_cpu: int | None) -> Placement:
    """The client on one CPU and the servers on another, when 2+ CPUs are allowed (or where
    ``--cpu`` and ``--server-cpu`` say, the same one if they say so)."""
    if no_pin:
        return Placement(None, None, "--no-pin")
    if not hasattr(os, "sched_setaffinity"):
        return Placement(None, None, f"no sched_setaffinity on {sys.platform}")
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return Placement(None, None, f"{len(allowed)} CPU allowed")
    client = allowed[0] if cpu is None else cpu
    if server_cpu is None:
        server_cpu = next(c for c in allowed if c != client)
    return Placement(frozenset({client}), frozenset({server_cpu}))


# --- server processes ---------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """What a server child runs between fork and exec: pin itself before it starts any
    thread (a later ``sched_setaffinity(pid)`` only moves the thread whose id is ``pid``), and
    on Linux ask for SIGTERM should this process die without stopping it."""
    parent = os.getpid()
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
    sigterm = int(signal.SIGTERM)

    def setup() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sigterm)
            if os.getppid() != parent:  # the parent died before the prctl
                os._exit(1)

    return setup


def _thread_cpus(pid: int) -> set[int] | None:
    """The CPUs any thread of a process may run on (Linux), or those of its main thread."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    cpus: set[int] = set()
    for tid in tids:
        with contextlib.suppress(OSError):
            cpus |= os.sched_getaffinity(tid)
    return cpus


class ServerProcess:
    """A server in a process of its own. It prints its VISA resource string as the first line
    of its stdout once it listens; ``stop`` sends SIGTERM, and SIGKILL after 5 s."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        cpus: frozenset[int] | None,
        stdin_data: bytes | None = None,
    ) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=_child_setup(cpus),
        )
        try:
            if cpus is not None:  # already done in the child before exec; this checks it holds
                os.sched_setaffinity(self.process.pid, cpus)
            if stdin_data is not None:
                assert self.process.stdin is not None
                self.process.stdin.write(stdin_data)
                self.process.stdin.flush()  # left open: the canned server stops when it closes
            self.resource = self._first_line()
            address = SocketTransport.match(self.resource)
            if address is None:
                raise RuntimeError(f"{name} printed {self.resource!r}, not a SOCKET resource")
            self.host, self.port = address
            self.cpus = _thread_cpus(self.process.pid)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _first_line(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], SERVER_START_TIMEOUT_S)
        line = stdout.readline().decode().strip() if ready else ""
        if not line:
            raise RuntimeError(
                f"the {self.name} server did not start within {SERVER_START_TIMEOUT_S:g} s "
                f"(exit status {self.process.poll()}); its stderr:\n{self._stderr_text()}"
            )
        return line

    def _stderr_text(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")
        return ""

    def stop(self) -> None:
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()


def start_emulator(cpus: frozenset[int] | None) -> ServerProcess:
    """The emulator's TcpServer, as ``pcm-hil emulator serve`` runs it."""
    argv = [sys.executable, "-m", "pcm_hil.cli", "emulator", "serve", "--port", "0"]
    argv += ["--tiles", str(TILES), "--rows", str(ROWS), "--columns", str(COLUMNS), "--seed", "0"]
    return ServerProcess("emulator", argv, cpus)


def start_canned(replies: dict[bytes, bytes], cpus: frozenset[int] | None) -> ServerProcess:
    """This script again, in its hidden ``--serve-canned`` mode, given the replies on stdin."""
    table = {
        base64.b64encode(line).decode(): base64.b64encode(reply).decode()
        for line, reply in replies.items()
    }
    argv = [sys.executable, os.path.abspath(__file__), "--serve-canned"]
    return ServerProcess("canned-reply", argv, cpus, json.dumps(table).encode() + b"\n")


def open_tcp(resource: str, visa_library: str | None = None) -> PcmChip:
    """Open the emulator's TcpServer, waiting while it still serves the previous client (it
    refuses a second connection with 105 until it has seen the first one close)."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            return PcmChip.open(resource, visa_library=visa_library)
        except ChipBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- the canned-reply ("echo") server and the raw-socket client ------------------------------------


def canned_replies(lines: list[bytes]) -> dict[bytes, bytes]:
    """The exact bytes the emulator answers to each request line (LF included)."""
    wire = WireInterface(make_chip("small", 0, **CHIP_OPTIONS))
    framer = wire.new_framer()
    return {line: wire.feed(framer, line + b"\n") for line in lines}


class CannedDevice:
    """Answers every request line from a table of canned replies: no parsing, no chip work.
    Served by the emulator's own ``TcpServer`` (several clients, one thread each).

    Lines not in the table (the driver's opening handshake) go to a real ``WireInterface``,
    so that ``PcmChip.open`` works against it too; ``BENCH:FALLBACKS?`` answers how many
    lines went there. Only LF-terminated lines without binary blocks are understood, which is
    all the benchmark sends. Runs in the ``--serve-canned`` process.
    """

    exclusive = False

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        self.replies = replies
        self._fallback = WireInterface(make_chip("small", 0, **CHIP_OPTIONS))
        self.fallback_lines = 0

    def new_framer(self) -> list:
        """A connection's state: [the partial line, the fallback chip's framer]."""
        return [b"", self._fallback.new_framer()]

    def feed(self, framer: list, data: bytes) -> bytes:
        *lines, framer[0] = (framer[0] + data).split(b"\n")
        out = []
        for line in lines:
            reply = self.replies.get(line)
            if reply is None:
                if line == FALLBACKS_LINE:
                    reply = b"%d\n" % self.fallback_lines
                else:
                    self.fallback_lines += 1
                    reply = self._fallback.feed(framer[1], line + b"\n")
            out.append(reply)
        return b"".join(out)


def serve_canned() -> int:
    """The hidden ``--serve-canned`` mode: read the reply table (one JSON line of base64) from
    stdin, serve it on 127.0.0.1, print the resource string, and run until SIGTERM, SIGINT or
    the end of stdin (the benchmark closing it, or dying)."""
    table = json.loads(sys.stdin.buffer.readline())
    replies = {base64.b64decode(line): base64.b64decode(reply) for line, reply in table.items()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        stop.set()

    server = TcpServer(CannedDevice(replies)).start()
    threading.Thread(target=watch_stdin, name="canned-stdin", daemon=True).start()
    print(server.resource, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


def canned_fallbacks(canned: ServerProcess) -> int:
    """How many lines the canned server has had no canned reply for, so far."""
    with socket.create_connection((canned.host, canned.port), timeout=5.0) as sock:
        sock.sendall(FALLBACKS_LINE + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(64)
            if not chunk:
                raise ConnectionError("the canned-reply server closed the connection")
            data += chunk
    return int(data)


@contextlib.contextmanager
def canned_only(canned: ServerProcess):
    """Check that nothing sent inside the block needed the canned server's fallback."""
    before = canned_fallbacks(canned)
    yield
    if canned_fallbacks(canned) != before:
        raise RuntimeError("the driver sent lines the canned server had no reply for")


class RawClient:
    """A bare socket client: sendall the request, recv_into a preallocated buffer."""

    def __init__(self, host: str, port: int, max_reply: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(max_reply)
        self.view = memoryview(self.buffer)

    def round_trip(self, request: bytes, reply_bytes: int) -> memoryview:
        self.sock.sendall(request)
        got = 0
        while got < reply_bytes:
            count = self.sock.recv_into(self.view[got:reply_bytes])
            if not count:
                raise ConnectionError("the canned-reply server closed the connection")
            got += count
        return self.view[:reply_bytes]

    def close(self) -> None:
        self.view.release()
        self.sock.close()


# --- the four figures ---------------------------------------------------------------------------------

QUERIES = {"*OPC?": (OPC_LINE, "operation_complete"), "TEMP?": (TEMP_LINE, "temperature")}
RAW = "raw_socket_canned"

# How the driver reaches a server: key -> (label, server, visa_library). The emulator's
# TcpServer serves one client at a time, so the two emulator links are timed in turn.
DRIVER_LINKS = {
    "driver_tcp_emulator": ("PcmChip (socket) <-> emulator", "emulator", None),
    "driver_visa_emulator": ("PcmChip (pyvisa-py) <-> emulator", "emulator", "@py"),
    "driver_tcp_canned": ("PcmChip (socket) <-> canned server", "canned", None),
    "driver_visa_canned": ("PcmChip (pyvisa-py) <-> canned server", "canned", "@py"),
}
# Each group is timed in interleaved rounds, together with the raw socket <-> canned server.
LINK_GROUPS = (
    ("driver_tcp_emulator", "driver_tcp_canned", "driver_visa_canned"),
    ("driver_visa_emulator",),
)


@contextlib.contextmanager
def driver_sessions(servers: dict[str, ServerProcess], keys: tuple[str, ...]):
    """PcmChips on the servers, by link key; those on the canned server checked to need no
    fallback."""
    with contextlib.ExitStack() as stack:
        chips: dict[str, PcmChip] = {}
        for key in keys:
            _label, server, library = DRIVER_LINKS[key]
            chips[key] = stack.enter_context(open_tcp(servers[server].resource, library))
        if any(DRIVER_LINKS[key][1] == "canned" for key in keys):
            stack.enter_context(canned_only(servers["canned"]))
        yield chips


def _versus(value: Timing, baseline: Timing, baseline_name: str) -> dict[str, Any]:
    """A value and the baseline timed in the same interleaved rounds."""
    return {
        "value": value.as_dict(),
        baseline_name: baseline.as_dict(),
        "time_over_baseline": value.median / baseline.median,
    }


def bench_queries(
    plan: Plan, servers: dict[str, ServerProcess], replies: dict[bytes, bytes]
) -> dict[str, Any]:
    """Figure 1: trivial round trips, with a breakdown by layer."""
    canned = servers["canned"]
    results: dict[str, Any] = {
        name: {"request": (line + b"\n").decode(), "reply": replies[line].decode(), "rows": {}}
        for name, (line, _method) in QUERIES.items()
    }
    targets = {"driver_tcp_emulator": TARGET_TCP_RATIO, "driver_tcp_canned": TARGET_TCP_RATIO}
    raw = RawClient(canned.host, canned.port, 64)
    try:
        for name, (line, _method) in QUERIES.items():
            if bytes(raw.round_trip(line + b"\n", len(replies[line]))) != replies[line]:
                raise RuntimeError(f"the canned server answered {name} unexpectedly")
        for keys in LINK_GROUPS:
            with driver_sessions(servers, keys) as chips:
                for name, (line, method) in QUERIES.items():
                    progress(f"queries {name}: raw socket <-> canned server, interleaved with")
                    for key in keys:
                        progress(f"  {DRIVER_LINKS[key][0]}")
                    fns: dict[str, Callable[[], object]] = {
                        RAW: partial(raw.round_trip, line + b"\n", len(replies[line]))
                    }
                    fns.update({key: getattr(chips[key], method) for key in keys})
                    timings = measure_interleaved(fns, plan)
                    for key in keys:
                        value, base = timings[key], timings[RAW]
                        results[name]["rows"][key] = {
                            **_versus(value, base, RAW),
                            "queries_per_s": 1 / value.median,
                            "raw_queries_per_s": 1 / base.median,
                            "ratio_over_raw": base.median / value.median,
                            "target_ratio": targets.get(key),
                        }

        # Where the time of one *OPC? round trip goes, each layer against the raw round trip.
        request, reply = OPC_LINE + b"\n", replies[OPC_LINE]
        progress("queries *OPC? breakdown: raw socket, the transports alone, in-process, feed")
        in_process = PcmChip.open(IN_PROCESS_RESOURCE)
        socket_transport = SocketTransport(canned.resource, canned.host, canned.port, 10.0)
        visa_transport = VisaTransport(canned.resource, 10.0)
        wire = WireInterface(make_chip("small", 0, **CHIP_OPTIONS))
        framer = wire.new_framer()

        def round_trip(transport) -> bytes:
            transport.write(request)
            return transport.read(None)

        try:
            for transport in (socket_transport, visa_transport):
                if round_trip(transport) != reply:
                    raise RuntimeError("the canned server answered *OPC? unexpectedly")
            with canned_only(canned):
                timings = measure_interleaved(
                    {
                        RAW: partial(raw.round_trip, request, len(reply)),
                        "socket_transport_canned": partial(round_trip, socket_transport),
                        "visa_transport_canned": partial(round_trip, visa_transport),
                        "driver_in_process": in_process.operation_complete,
                        "wire_feed": lambda: wire.feed(framer, request),
                    },
                    plan,
                )
        finally:
            socket_transport.close()
            visa_transport.close()
            in_process.close()
    finally:
        raw.close()
    breakdown = {key: _versus(timing, timings[RAW], RAW) for key, timing in timings.items()}
    del breakdown[RAW]
    for key in DRIVER_LINKS:
        row = results["*OPC?"]["rows"][key]
        breakdown[key] = {k: row[k] for k in ("value", RAW, "time_over_baseline")}
    results["breakdown_opc"] = breakdown
    return results


def bench_bulk(
    plan: Plan, servers: dict[str, ServerProcess], replies: dict[bytes, bytes]
) -> dict[str, Any]:
    """Figures 2 and 3: one 256×256 tile read, raw, over TCP and in-process."""
    canned = servers["canned"]
    reply = replies[TILE_LINE] + replies[ERROR_LINE]
    results: dict[str, Any] = {
        "payload_bytes": TILE_PAYLOAD_BYTES,
        "reply_bytes": len(reply),
        "request": TILE_REQUEST.decode(),
        "MB_per_s": {},
        "one_tile": {},
    }
    raw = RawClient(canned.host, canned.port, len(reply))
    in_process = PcmChip.open(IN_PROCESS_RESOURCE)
    wire = WireInterface(make_chip("small", 0, **CHIP_OPTIONS))
    framer = wire.new_framer()
    emulated_chip = make_chip("small", 0, **CHIP_OPTIONS)
    try:
        if bytes(raw.round_trip(TILE_REQUEST, len(reply))) != reply:
            raise RuntimeError("the canned server answered the tile read unexpectedly")
        for number, keys in enumerate(LINK_GROUPS):
            progress("bulk tile read: raw socket <-> canned server, interleaved with")
            for key in keys:
                progress(f"  {DRIVER_LINKS[key][0]}")
            progress("  PcmChip in-process")
            if number == 0:
                progress("  emulator WireInterface.feed alone, EmulatedChip.read_tile")
            with driver_sessions(servers, keys) as chips:
                fns: dict[str, Callable[[], object]] = {
                    RAW: lambda: raw.round_trip(TILE_REQUEST, len(reply)),
                    "driver_in_process": lambda: in_process.read_tile(0),
                }
                for key, chip in chips.items():
                    tile = chip.read_tile(0)
                    if tile.shape != (ROWS, COLUMNS) or tile.dtype != np.float32:
                        raise RuntimeError(f"read_tile gave {tile.shape} {tile.dtype}")
                    fns[key] = partial(chip.read_tile, 0)
                if number == 0:
                    fns["wire_feed"] = lambda: wire.feed(framer, TILE_REQUEST)
                    fns["chip_read_tile"] = lambda: emulated_chip.read_tile(0)
                timings = measure_interleaved(fns, plan)
            for key in keys:
                value, base = timings[key], timings[RAW]
                results["MB_per_s"][key] = {
                    **_versus(value, base, RAW),
                    "MB_per_s": TILE_PAYLOAD_BYTES / value.median / 1e6,
                    "raw_MB_per_s": TILE_PAYLOAD_BYTES / base.median / 1e6,
                    "ratio_over_raw": base.median / value.median,
                    "target_ratio": TARGET_TCP_RATIO if key == "driver_tcp_canned" else None,
                }
            # One tile through the driver over TCP, against the driver in-process.
            one_tile = [key for key in keys if key.endswith("_emulator")]
            if number == 0:
                one_tile = ["driver_in_process", *one_tile, "wire_feed", "chip_read_tile"]
            for key in one_tile:
                results["one_tile"][key] = _versus(
                    timings[key], timings["driver_in_process"], "driver_in_process"
                )
    finally:
        raw.close()
        in_process.close()
    return results


def bench_million(plan: Plan, emulator: ServerProcess) -> dict[str, Any]:
    """Figure 4: advance virtual time, then read all 1,048,576 devices."""
    f4 = np.float32
    chip = make_chip("small", 0, **CHIP_OPTIONS)

    def chip_tiles() -> None:
        chip.advance(ADVANCE_S)
        for tile in range(TILES):
            chip.read_tile(tile)

    def chip_all_at_once() -> None:
        chip.advance(ADVANCE_S)
        chip.devices.read(
            slice(None), slice(None), chip.equivalent_time(), chip.temperature_K
        ).reshape(TILES, ROWS, COLUMNS)

    rng = np.random.default_rng(0)
    a = rng.random(DEVICES, dtype=f4)
    b = rng.random(DEVICES, dtype=f4)
    exp_out = np.empty(DEVICES, dtype=f4)
    noise = np.empty(DEVICES, dtype=f4)

    def numpy_floor() -> None:
        np.exp(a, out=exp_out)
        rng.standard_normal(dtype=f4, out=noise)
        np.multiply(noise, b, out=noise)
        np.add(noise, f4(1.0), out=noise)
        np.multiply(exp_out, noise, out=exp_out)
        np.multiply(exp_out, a, out=exp_out)

    def through(driver: PcmChip) -> Callable[[], None]:
        def run() -> None:
            driver.advance(ADVANCE_S)
            for tile in range(TILES):
                driver.read_tile(tile)

        return run

    progress("1M devices, interleaved: numpy floor; EmulatedChip 16 x read_tile and 1 x")
    progress("  devices.read; PcmChip in-process and over TCP (socket), advance + 16 x read_tile")
    with PcmChip.open(IN_PROCESS_RESOURCE) as in_process, open_tcp(emulator.resource) as tcp:
        timings = measure_interleaved(
            {
                "numpy_floor": numpy_floor,
                "chip_16_read_tile": chip_tiles,
                "chip_read_all_at_once": chip_all_at_once,
                "driver_in_process": through(in_process),
                "driver_tcp": through(tcp),
            },
            plan,
        )
    floor, chip_16 = timings["numpy_floor"].median, timings["chip_16_read_tile"].median
    return {
        "devices": DEVICES,
        "advance_s": ADVANCE_S,
        **{key: timing.as_dict() for key, timing in timings.items()},
        "chip_level_s": min(chip_16, timings["chip_read_all_at_once"].median),
        "target_chip_level_s": TARGET_MILLION_S,
        "ratio_chip_16_over_floor": chip_16 / floor,
        "ratio_chip_all_over_floor": timings["chip_read_all_at_once"].median / floor,
        "ratio_driver_in_process_over_chip_16": timings["driver_in_process"].median / chip_16,
        "ratio_driver_tcp_over_chip_16": timings["driver_tcp"].median / chip_16,
    }


# --- reporting ------------------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def environment(
    quick: bool, placement: Placement, servers: dict[str, ServerProcess]
) -> dict[str, Any]:
    client_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "pyvisa": _version("pyvisa"),
        "pyvisa_py": _version("pyvisa-py"),
        "quick": quick,
        "placement": {
            "pinned": placement.client is not None,
            "description": placement.describe(),
            "client_pid": os.getpid(),
            "client_cpus": sorted(client_cpus) if client_cpus is not None else None,
            "servers": {
                name: {
                    "pid": server.pid,
                    "resource": server.resource,
                    "cpus": sorted(server.cpus) if server.cpus is not None else None,
                }
                for name, server in servers.items()
            },
        },
        "statistic": "median of rounds (best = fastest round)",
    }


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    queries, bulk, million = report["queries"], report["bulk"], report["million_devices"]
    table = Table(title="pcm-hil transport and emulator benchmark (median of rounds)")
    table.add_column("measurement", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("baseline", no_wrap=True)
    table.add_column("baseline value", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)

    def median(key: dict[str, Any]) -> float:
        return key["median_s"]

    def verdict(ok: bool) -> str:
        return "[green]met[/green]" if ok else "[red]not met[/red]"

    def target(ratio: float, goal: float | None) -> str:
        return "" if goal is None else f"≥{goal}x {verdict(ratio >= goal)}"

    # 1. trivial queries: throughput ratio driver/raw
    for number, name in enumerate(QUERIES):
        rows = queries[name]["rows"]
        lead = "1." if number == 0 else "  "
        for key, label in (
            ("driver_tcp_emulator", f"{lead} {name} queries/s: PcmChip→emulator TCP"),
            ("driver_visa_emulator", f"   {name} queries/s: same via pyvisa-py"),
            ("driver_tcp_canned", f"   {name} queries/s: PcmChip→canned (driver+transport)"),
        ):
            row = rows[key]
            table.add_row(
                label,
                f"{row['queries_per_s']:,.0f}/s",
                "raw socket↔canned",
                f"{row['raw_queries_per_s']:,.0f}/s",
                f"{row['ratio_over_raw']:.2f}x",
                target(row["ratio_over_raw"], row["target_ratio"]),
            )
    # ... and where the time of one *OPC? round trip goes: time ratio to the raw round trip
    breakdown = queries["breakdown_opc"]
    for key, label in (
        ("socket_transport_canned", "   *OPC? SocketTransport↔canned"),
        ("visa_transport_canned", "   *OPC? pyvisa-py VisaTransport↔canned"),
        ("driver_tcp_canned", "   *OPC? PcmChip↔canned (codec+socket)"),
        ("driver_visa_canned", "   *OPC? PcmChip↔canned (codec+pyvisa-py)"),
        ("driver_tcp_emulator", "   *OPC? PcmChip↔emulator (socket)"),
        ("driver_visa_emulator", "   *OPC? PcmChip↔emulator (pyvisa-py)"),
        ("driver_in_process", "   *OPC? PcmChip in-process (no socket)"),
        ("wire_feed", "   *OPC? emulator WireInterface.feed only"),
    ):
        row = breakdown[key]
        table.add_row(
            label,
            _us(median(row["value"])),
            "raw round trip",
            _us(median(row[RAW])),
            f"{row['time_over_baseline']:.2f}x time",
            "",
        )
    table.add_section()

    # 2. bulk: throughput ratio driver/raw
    physics = _ms(median(bulk["one_tile"]["chip_read_tile"]["value"]))
    for key, label in (
        ("driver_tcp_canned", "2. tile MB/s: PcmChip→canned (transport)"),
        ("driver_visa_canned", "   tile MB/s: PcmChip→canned via pyvisa-py"),
        ("driver_tcp_emulator", f"   tile MB/s: PcmChip→emulator (incl. {physics} physics)"),
        ("driver_visa_emulator", "   tile MB/s: same via pyvisa-py (incl. physics)"),
    ):
        row = bulk["MB_per_s"][key]
        table.add_row(
            label,
            f"{row['MB_per_s']:,.1f} MB/s",
            "raw socket↔canned",
            f"{row['raw_MB_per_s']:,.1f} MB/s",
            f"{row['ratio_over_raw']:.3f}x",
            target(row["ratio_over_raw"], row["target_ratio"]),
        )
    table.add_section()

    # 3. one tile: time ratio to the in-process driver
    for key, label in (
        ("driver_in_process", "3. one 256×256 tile: PcmChip in-process"),
        ("driver_tcp_emulator", "   one 256×256 tile: PcmChip TCP (socket)"),
        ("driver_visa_emulator", "   one 256×256 tile: PcmChip TCP (pyvisa-py)"),
        ("wire_feed", "   emulator WireInterface.feed (read+encode)"),
        ("chip_read_tile", "   EmulatedChip.read_tile (physics only)"),
    ):
        row = bulk["one_tile"][key]
        table.add_row(
            label,
            _ms(median(row["value"])),
            "PcmChip in-process",
            _ms(median(row["driver_in_process"])),
            f"{row['time_over_baseline']:.2f}x",
            "",
        )
    table.add_section()

    # 4. advance + a million devices: time ratios
    floor = median(million["numpy_floor"])
    chip_16 = median(million["chip_16_read_tile"])
    goal = f"≤{TARGET_MILLION_S * 1e3:g} ms"
    rows: list[tuple[str, str, str, float | None, str]] = [
        ("numpy_floor", "4. numpy floor: exp+normal+muls, 1M f32", "", None, ""),
        (
            "chip_16_read_tile",
            "   EmulatedChip: advance + 16 read_tile",
            "numpy floor",
            floor,
            goal,
        ),
        (
            "chip_read_all_at_once",
            "   EmulatedChip: advance + 1 devices.read",
            "numpy floor",
            floor,
            goal,
        ),
        (
            "driver_in_process",
            "   PcmChip in-process: advance + 16 tiles",
            "EmulatedChip 16 tiles",
            chip_16,
            "",
        ),
        (
            "driver_tcp",
            "   PcmChip TCP (socket): advance + 16 tiles",
            "EmulatedChip 16 tiles",
            chip_16,
            "",
        ),
    ]
    for key, label, base_label, base, goal_text in rows:
        t = median(million[key])
        table.add_row(
            label,
            _ms(t),
            base_label,
            _ms(base) if base else "",
            f"{t / base:.2f}x" if base else "",
            f"{goal_text} {verdict(t <= TARGET_MILLION_S)}" if goal_text else "",
        )

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    env = report["environment"]
    console.print(
        "Ratios: sections 1-2 throughput driver/raw (1.0 = as fast as the raw socket); breakdown "
        "and sections 3-4 time/baseline time. 'canned' = a server answering each request line "
        "with the emulator's exact reply bytes, no parsing. The emulator and the canned server "
        "run in processes of their own; 'socket' = PcmChip's default TCP transport. Each value "
        "is timed in rounds interleaved with those of its baseline.",
        style="dim",
    )
    console.print(
        f"Python {env['python']}, numpy {env['numpy']}, pyvisa {env['pyvisa']}, pyvisa-py "
        f"{env['pyvisa_py']}, {env['cpus']} CPUs, {env['placement']['description']}"
        + (", --quick." if env["quick"] else "."),
        style="dim",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    parser.add_argument("--cpu", type=int, help="the CPU for this process (default: first allowed)")
    parser.add_argument(
        "--server-cpu", type=int, help="the CPU for the servers (default: next allowed)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--serve-canned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_canned:
        return serve_canned()
    plan = QUICK if args.quick else FULL
    placement = choose_placement(args.no_pin, args.cpu, args.server_cpu)
    if placement.client is not None:
        os.sched_setaffinity(0, placement.client)

    replies = canned_replies([OPC_LINE, TEMP_LINE, TILE_LINE, ERROR_LINE])
    servers: dict[str, ServerProcess] = {}
    try:
        progress("starting the canned-reply server and the emulator (separate processes)")
        servers["canned"] = start_canned(replies, placement.servers)
        servers["emulator"] = start_emulator(placement.servers)
        report = {
            "environment": environment(args.quick, placement, servers),
            "queries": bench_queries(plan, servers, replies),
            "bulk": bench_bulk(plan, servers, replies),
            "million_devices": bench_million(plan, servers["emulator"]),
        }
    finally:
        for server in reversed(servers.values()):
            server.stop()

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
