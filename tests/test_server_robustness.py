"""Robustness of the emulator's servers against malformed, hostile and interrupted input.

Every server here is started by the test on 127.0.0.1 port 0 (or on a fresh pty) and stopped by
it; clients are raw sockets (or pyserial on the pty) and every read has a deadline, so a server
that stops answering fails the test instead of hanging it.

The expected wire strings are derived from the code: ``protocols/errors.py`` (codes, messages,
``<code>,"<message>;<detail>"`` entries), ``protocols/codec.py`` (framing limits, details of
each check), ``protocols/table.py`` (range texts) and ``emulator/chip.py`` (identity, limits).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.chip import EmulatedChip
from pcm_hil.emulator.servers.pty import PtyServer
from pcm_hil.emulator.servers.tcp import TcpServer
from pcm_hil.protocols import COMMANDS
from pcm_hil.protocols.blocks import MAX_BLOCK_BYTES
from pcm_hil.protocols.chip import PULSE_OUTSIDE_LIMITS
from pcm_hil.protocols.errors import (
    BLOCK_DATA_ERROR,
    BLOCK_NOT_ALLOWED,
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    DUPLICATE_ADDRESS,
    INPUT_BUFFER_OVERRUN,
    INVALID_BLOCK_DATA,
    INVALID_CHARACTER,
    LENGTH_MISMATCH,
    MISSING_PARAMETER,
    PARAMETER_NOT_ALLOWED,
    QUEUE_OVERFLOW,
    SYNTAX_ERROR,
    TOO_MUCH_DATA,
    UNDEFINED_HEADER,
    ScpiError,
)
from pcm_hil.protocols.framing import MAX_TEXT_BYTES, MessageFramer

SEED = 20240611
IO_TIMEOUT = 5.0  # seconds any single expected reply may take
IDN = b"PCM-HIL,PCM-EMULATOR,EMU-0001,0.1.0\n"
NO_ERROR = b'0,"No error"\n'
BUSY = b'105,"Chip busy;another client controls this chip"\n'

# The "tiny" profile: 2 tiles of 16 x 16 devices, pulse limits 600 uA / 10..1000 ns,
# temperature setpoint 233..400 K.
TILES, ROWS, COLUMNS = 2, 16, 16
#: The whole tile as an MVM window: row_start, row_count, column_start, column_count.
WINDOW = b"0,%d,0,%d," % (ROWS, COLUMNS)
DEVICES = ROWS * COLUMNS
AMP_MAX, WIDTH_MIN, WIDTH_MAX = 600.0, 10.0, 1000.0
TEMP_MIN, TEMP_MAX = 233.0, 400.0


# --- wire helpers ------------------------------------------------------------------------------


def block(data: bytes) -> bytes:
    """IEEE 488.2 definite-length block, written out independently of protocols.blocks."""
    size = str(len(data)).encode()
    return b"#" + str(len(size)).encode() + size + data


def u4(values) -> bytes:
    return block(np.asarray(values, dtype="<u4").tobytes())


def f4(values) -> bytes:
    return block(np.asarray(values, dtype="<f4").tobytes())


class Client:
    """A raw socket client with deadline-bounded reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete reply; buffered {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed by the server; buffered {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def readline(self, timeout: float = IO_TIMEOUT) -> bytes:
        """One response message up to and including its LF (callers never expect blocks)."""
        deadline = time.monotonic() + timeout
        while (end := self.buf.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def read_exact(self, count: int, timeout: float = IO_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < count:
            self._fill(deadline)
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def query(self, message: bytes) -> bytes:
        self.send(message)
        return self.readline()

    def sync(self) -> None:
        """*OPC? answers 1: every earlier message has been processed, nothing is pending."""
        assert self.query(b"*OPC?\n") == b"1\n"

    def next_error(self) -> int:
        return int(self.query(b"SYST:ERR?\n").split(b",", 1)[0])

    def expect_eof(self, timeout: float = IO_TIMEOUT) -> None:
        """The server closes the connection without sending anything more."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionResetError):
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the server did not close the connection")
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                self.buf += chunk
        assert self.buf == b"", bytes(self.buf[:200])

    def close(self) -> None:
        self.sock.close()


def raw_connect(server: TcpServer) -> Client:
    return Client(socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT))


def connect(server: TcpServer, timeout: float = IO_TIMEOUT) -> Client:
    """A connection the server accepted (and answers), retrying while the previous client's
    slot is still being released (the server then answers 105 busy and closes)."""
    deadline = time.monotonic() + timeout
    while True:
        client = raw_connect(server)
        try:
            reply = client.query(b"*OPC?\n")
        except OSError:  # refused and closed before or while we wrote
            reply = b""
        if reply == b"1\n":
            return client
        client.close()
        assert reply in (b"", BUSY), reply
        if time.monotonic() > deadline:
            raise TimeoutError("the server never accepted a new client")
        time.sleep(0.01)


def close_and_wait(client: Client) -> None:
    """Half-close, then wait for the server to close its end: it has seen every byte."""
    client.sock.shutdown(socket.SHUT_WR)
    client.expect_eof()
    client.close()


# --- chip state --------------------------------------------------------------------------------


State = tuple[dict[str, np.ndarray], float, float]


def chip_state(chip: EmulatedChip) -> State:
    return chip.devices.snapshot(), chip.now(), chip.temperature_K


def assert_same_state(before: State, after: State) -> None:
    arrays_before, now_before, temp_before = before
    arrays_after, now_after, temp_after = after
    assert arrays_before.keys() == arrays_after.keys()
    for name in arrays_before:
        np.testing.assert_array_equal(arrays_after[name], arrays_before[name], err_msg=name)
    assert now_after == now_before
    assert temp_after == temp_before


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def chip() -> EmulatedChip:
    return make_chip("tiny", seed=SEED)


@pytest.fixture
def server(chip: EmulatedChip) -> Iterator[TcpServer]:
    srv = TcpServer(WireInterface(chip), host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: TcpServer) -> Iterator[Client]:
    c = connect(server)
    try:
        yield c
    finally:
        c.close()


# --- fuzz case generators ------------------------------------------------------------------------
#
# Each generator returns one program message (with its LF) that is invalid, and the single
# error code the chip must queue for it. None of them is a valid command, so none may change
# the chip's state. Block headers always come with at least as many bytes as they announce
# before the message's LF, so no header can swallow the following messages.

Case = tuple[bytes, int]
CaseGenerator = Callable[[np.random.Generator], Case]


def _addresses(rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    count = int(rng.integers(1, 17)) if count is None else count
    return rng.choice(DEVICES, size=count, replace=False).astype("<u4")


def _amplitudes(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0.0, AMP_MAX, count).astype("<f4")


def _widths(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(WIDTH_MIN, WIDTH_MAX, count).astype("<f4")


def _tile(rng: np.random.Generator) -> bytes:
    return str(int(rng.integers(0, TILES))).encode()


def _pulse(tile: bytes, addresses: bytes, amplitudes: bytes, widths: bytes) -> bytes:
    return b"PULS:APPL " + tile + b"," + addresses + b"," + amplitudes + b"," + widths + b"\n"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(0, len(options)))]


_NO_BLOCKS = re.compile(rb"#(?=[0-9])")


def _no_block_header(data: bytes) -> bytes:
    """Make random bytes free of LF and of '#<digit>' (which would start a block)."""
    return _NO_BLOCKS.sub(b"%", data.replace(b"\n", b" "))


def gen_overlong(rng: np.random.Generator) -> Case:
    size = int(rng.integers(MAX_TEXT_BYTES + 1, 3 * MAX_TEXT_BYTES))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        text = b"A" * size
    elif kind == 1:
        text = b"READ:TILE? " + b"9" * size
    else:
        text = _no_block_header(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return text + b"\n", INPUT_BUFFER_OVERRUN


_MNEMONIC_CHARS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def gen_unknown_header(rng: np.random.Generator) -> Case:
    while True:
        nodes = []
        for _ in range(int(rng.integers(1, 4))):
            length = int(rng.integers(1, 9))
            nodes.append(rng.choice(_MNEMONIC_CHARS, size=length).tobytes())
        header = b":".join(nodes)
        if rng.random() < 0.2:
            header = b"*" + header[:4]
        if rng.random() < 0.5:
            header += b"?"
        if COMMANDS.lookup(header.decode()) is None:
            break
    args = _pick(rng, [b"", b" 1", b" 0,1,2", b" ON", b" " + u4([1, 2])])
    return header + args + b"\n", UNDEFINED_HEADER


_BAD_INTS = [b"abc", b"1.5", b"1e3", b"0x10", b"--1", b"1 2", b"ON", b"'0'", b'"1"', b"1a"]
_BAD_FLOATS = [b"nan", b"NaN", b"inf", b"-INF", b"1e", b"e5", b"1.2.3", b"300K", b"3OO", b"0x1p3"]


def gen_wrong_type(rng: np.random.Generator) -> Case:
    bad_int = _pick(rng, _BAD_INTS)
    bad_float = _pick(rng, _BAD_FLOATS)
    count = int(rng.integers(1, 9))
    addrs = _addresses(rng, count)
    options = [
        b"READ:TILE? " + bad_int + b"\n",
        b"*ESE " + bad_int + b"\n",
        b"READ:DEV? " + bad_int + b"," + u4(addrs) + b"\n",
        b"MVM:FORW? " + bad_int + b"," + WINDOW + f4(np.zeros(ROWS)) + b"\n",
        _pulse(bad_int, u4(addrs), f4(_amplitudes(rng, count)), f4(_widths(rng, count))),
        b"TEMP " + bad_float + b"\n",
        b"CLOC:ADV " + bad_float + b"\n",
        # a number (or other text) where a block belongs; '#A' is not a block header
        b"READ:DEV? " + _tile(rng) + b",5\n",
        b"READ:DEV? " + _tile(rng) + b",#A12\n",
        b"MVM:TRAN? " + _tile(rng) + b"," + WINDOW + b"#H1F\n",
        _pulse(_tile(rng), u4(addrs), b"500", f4(_widths(rng, count))),
    ]
    return _pick(rng, options), DATA_TYPE_ERROR


def gen_block_not_allowed(rng: np.random.Generator) -> Case:
    # the framer sees no block after a header that takes none: an LF inside would end the line
    addresses = [a for a in _addresses(rng) if a != 0x0A] or [0]
    data = u4(addresses)
    options = [
        b"READ:TILE? " + data + b"\n",
        b"TEMP " + f4([300.0]) + b"\n",
        b"*ESE " + data + b"\n",
        b"READ:DEV? " + data + b"," + data + b"\n",
    ]
    return _pick(rng, options), BLOCK_NOT_ALLOWED


def gen_missing(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 9))
    addrs = u4(_addresses(rng, count))
    amps = f4(_amplitudes(rng, count))
    options = [
        b"READ:TILE?\n",
        b"READ:TILE?   \n",
        b"*ESE\n",
        b"TEMP\n",
        b"TEMP ;*OPC\n",
        b"CLOC:ADV\n",
        b"READ:DEV? " + _tile(rng) + b"\n",
        b"READ:DEV? ," + addrs + b"\n",
        b"MVM:FORW? 0\n",
        b"MVM:TRAN? 1\n",
        b"PULS:APPL\n",
        b"PULS:APPL " + _tile(rng) + b"," + addrs + b"\n",
        b"PULS:APPL " + _tile(rng) + b"," + addrs + b"," + amps + b"\n",
        b"PULS:APPL ," + addrs + b"," + amps + b"," + amps + b"\n",
    ]
    return _pick(rng, options), MISSING_PARAMETER


def gen_too_many(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 9))
    addrs = u4(_addresses(rng, count))
    amps = f4(_amplitudes(rng, count))
    widths = f4(_widths(rng, count))
    nullary = _pick(rng, [c.short_form for c in COMMANDS if not c.args]).encode()
    options = [
        nullary + b" " + _pick(rng, [b"1", b"0", b"x", b"1,2", b"ON", addrs]) + b"\n",
        b"READ:TILE? 0,0\n",
        b"TEMP 300,1\n",
        b"*ESE 1,2\n",
        b"READ:DEV? " + _tile(rng) + b"," + addrs + b"," + addrs + b"\n",
        b"PULS:APPL " + _tile(rng) + b"," + addrs + b"," + amps + b"," + widths + b",1\n",
    ]
    return _pick(rng, options), PARAMETER_NOT_ALLOWED


def gen_out_of_range(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 17))
    good = _addresses(rng, count)
    bad = good.copy()
    bad[int(rng.integers(0, count))] = rng.integers(DEVICES, 2**32, dtype=np.uint64)
    amps = f4(_amplitudes(rng, count))
    widths = f4(_widths(rng, count))
    low_temp = rng.uniform(-1e6, TEMP_MIN - 0.01)
    high_temp = rng.uniform(TEMP_MAX + 0.01, 1e6)
    options = [
        b"READ:TILE? %d\n" % rng.integers(TILES, 2**40),
        b"READ:TILE? %d\n" % -rng.integers(1, 2**40),
        b"READ:TILE? 18446744073709551615\n",  # 2**64 - 1: the largest that does not crash
        b"*ESE %d\n" % rng.integers(256, 2**31),
        b"*ESE -1\n",
        b"TEMP " + repr(float(low_temp)).encode() + b"\n",
        b"TEMP " + repr(float(high_temp)).encode() + b"\n",
        b"TEMP 1e999\n",
        b"TEMP -1e999\n",
        b"CLOC:ADV -%r\n" % float(rng.uniform(1e-9, 1e9)),
        b"CLOC:ADV 1.0000001e10\n",
        b"CLOC:ADV 1e400\n",
        b"READ:DEV? " + _tile(rng) + b"," + u4(bad) + b"\n",
        b"READ:DEV? %d," % rng.integers(TILES, 100) + u4(good) + b"\n",
        b"MVM:FORW? %d," % rng.integers(TILES, 100) + WINDOW + f4(np.zeros(ROWS)) + b"\n",
        _pulse(_tile(rng), u4(bad), amps, widths),
        _pulse(b"%d" % rng.integers(TILES, 100), u4(good), amps, widths),
        _pulse(b"-1", u4(good), amps, widths),
    ]
    return _pick(rng, options), DATA_OUT_OF_RANGE


def gen_pulse_limits(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 17))
    addrs = u4(_addresses(rng, count))
    amps = _amplitudes(rng, count)
    widths = _widths(rng, count)
    where = int(rng.integers(0, count))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        amps[where] = AMP_MAX + float(rng.uniform(0.5, 1e6))
    elif kind == 1:
        amps[where] = -float(rng.uniform(0.01, 1e3))
    elif kind == 2:
        widths[where] = float(rng.uniform(0.0, WIDTH_MIN - 0.01))
    else:
        widths[where] = WIDTH_MAX + float(rng.uniform(0.5, 1e6))
    if rng.random() < 0.3:  # a single amplitude or width broadcasts
        amps = amps[where : where + 1]
        widths = widths[where : where + 1]
    return _pulse(_tile(rng), addrs, f4(amps), f4(widths)), PULSE_OUTSIDE_LIMITS


def gen_bad_block_header(rng: np.random.Generator) -> Case:
    headers = [
        b"#3 12",
        b"#1x",
        b"#2-1",
        b"#3+12",
        b"#4 1e3",
        b"#9abcdefghi",
        b"#5\t\t\t\t\t",
        b"#2" + bytes([int(rng.integers(128, 256))]) * 2,
    ]
    header = _pick(rng, headers)
    # only where the table takes a block is '#<digit>' a block (test_framing_limits.py: elsewhere)
    prefix = _pick(rng, [b"READ:DEV? 0,", b"PULS:APPL 1,", b"MVM:FORW? 0,", b"PULSE:APPLY 1, "])
    return prefix + header + b"abcdefgh\n", INVALID_BLOCK_DATA


def gen_oversized_block(rng: np.random.Generator) -> Case:
    options = [
        b"#9999999999",
        b"#9%09d" % (MAX_BLOCK_BYTES + 1),
        b"#9%09d" % rng.integers(MAX_BLOCK_BYTES + 1, 10**9),
        b"#8%08d" % rng.integers(MAX_BLOCK_BYTES + 1, 10**8),
    ]
    prefix = _pick(rng, [b"READ:DEV? 0,", b"PULS:APPL 0,", b"MVM:FORW? 1," + WINDOW])
    return prefix + _pick(rng, options) + b"tail\n", TOO_MUCH_DATA


def gen_block_not_whole(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 9))
    addrs = u4(_addresses(rng, count))
    widths = f4(_widths(rng, count))
    odd = rng.integers(0, 256, 4 * count + int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
    options = [
        b"READ:DEV? " + _tile(rng) + b"," + block(odd) + b"\n",
        b"MVM:FORW? " + _tile(rng) + b"," + WINDOW + block(odd) + b"\n",
        _pulse(_tile(rng), block(odd), widths, widths),
        _pulse(_tile(rng), addrs, block(odd), widths),
        _pulse(_tile(rng), addrs, f4(_amplitudes(rng, count)), block(odd)),
    ]
    return _pick(rng, options), BLOCK_DATA_ERROR


def gen_length_mismatch(rng: np.random.Generator) -> Case:
    count = int(rng.integers(2, 17))
    addrs = u4(_addresses(rng, count))
    other = int(_pick(rng, [n for n in range(2, 20) if n != count]))
    kind = int(rng.integers(0, 5))
    if kind == 0:
        message = _pulse(_tile(rng), addrs, f4(_amplitudes(rng, other)), f4(_widths(rng, 1)))
    elif kind == 1:
        message = _pulse(_tile(rng), addrs, f4(_amplitudes(rng, 1)), f4(_widths(rng, other)))
    elif kind == 2:
        bad_rows = int(_pick(rng, [n for n in range(1, 80) if n % ROWS]))
        message = b"MVM:FORW? " + _tile(rng) + b"," + WINDOW + f4(np.zeros(bad_rows)) + b"\n"
    elif kind == 3:
        bad_cols = int(_pick(rng, [n for n in range(1, 80) if n % COLUMNS]))
        message = b"MVM:TRAN? " + _tile(rng) + b"," + WINDOW + f4(np.zeros(bad_cols)) + b"\n"
    else:  # empty blocks: fewer than one element
        message = _pick(
            rng,
            [
                b"READ:DEV? 0,#10\n",
                b"MVM:FORW? 1," + WINDOW + b"#10\n",
                _pulse(b"0", b"#10", b"#10", b"#10"),
                _pulse(b"0", addrs, b"#10", f4(_widths(rng, count))),
            ],
        )
    return message, LENGTH_MISMATCH


def gen_duplicates(rng: np.random.Generator) -> Case:
    count = int(rng.integers(2, 17))
    addrs = _addresses(rng, count)
    addrs[int(rng.integers(1, count))] = addrs[0]
    amps = f4(_amplitudes(rng, count if rng.random() < 0.5 else 1))
    widths = f4(_widths(rng, count if rng.random() < 0.5 else 1))
    return _pulse(_tile(rng), u4(addrs), amps, widths), DUPLICATE_ADDRESS


def gen_not_finite(rng: np.random.Generator) -> Case:
    count = int(rng.integers(1, 17))
    addrs = u4(_addresses(rng, count))
    amps = _amplitudes(rng, count)
    widths = _widths(rng, count)
    poison = _pick(rng, [np.nan, np.inf, -np.inf])
    kind = int(rng.integers(0, 3))
    if kind == 0:
        amps[int(rng.integers(0, count))] = poison
        message = _pulse(_tile(rng), addrs, f4(amps), f4(widths))
    elif kind == 1:
        widths[int(rng.integers(0, count))] = poison
        message = _pulse(_tile(rng), addrs, f4(amps), f4(widths))
    else:
        inputs = rng.uniform(-0.2, 0.2, ROWS * int(rng.integers(1, 4))).astype("<f4")
        inputs[int(rng.integers(0, inputs.size))] = poison
        head = _pick(rng, [b"MVM:FORW? ", b"MVM:TRAN? "])
        message = head + _tile(rng) + b"," + WINDOW + f4(inputs) + b"\n"
    return message, DATA_OUT_OF_RANGE


def _indefinite(data: bytes) -> bytes:
    assert b"\n" not in data
    return b"#0" + data


def gen_indefinite(rng: np.random.Generator) -> Case:
    """The '#0' form: its data runs to the LF, so it must hold no LF (checked)."""
    count = int(rng.integers(1, 9))
    addrs = _addresses(rng, count)
    addrs = addrs[(addrs & 0xFF) != 0x0A]  # no LF byte inside the data
    if addrs.size == 0:
        addrs = np.array([1], dtype="<u4")
    raw = addrs.astype("<u4").tobytes()
    options: list[Case] = [
        (b"READ:TILE? " + _indefinite(b"abcd") + b"\n", BLOCK_NOT_ALLOWED),
        (b"PULS:APPL 0," + _indefinite(raw) + b"\n", MISSING_PARAMETER),
        (b"READ:DEV? 0," + _indefinite(raw + b"xyz") + b"\n", BLOCK_DATA_ERROR),
        (b"READ:DEV? 0," + _indefinite(b"\x00\x01\x00\x00") + b"\n", DATA_OUT_OF_RANGE),
        (b"READ:DEV? 0," + _indefinite(b"") + b"\n", LENGTH_MISMATCH),
        (
            b"PULS:APPL 0," + u4(addrs) + b"," + f4([500.0]) + b"," + _indefinite(b"\x00") + b"\n",
            BLOCK_DATA_ERROR,
        ),
        (
            b"PULS:APPL 0,"
            + u4(addrs)
            + b","
            + f4([500.0])
            + b","
            + _indefinite(np.array([np.nan], "<f4").tobytes())
            + b"\n",
            DATA_OUT_OF_RANGE,
        ),
        (_indefinite(b"abc") + b"\n", INVALID_CHARACTER),
        (b"FOO " + _indefinite(raw) + b"\n", UNDEFINED_HEADER),
    ]
    return _pick(rng, options)


def gen_invalid_character(rng: np.random.Generator) -> Case:
    junk = bytes([int(_pick(rng, [0, 1, 0x7F, 0x80, 0xFF, ord("!"), ord("@"), ord("%")]))])
    options = [
        junk + b"*IDN?\n",
        b"*IDN?" + junk + b"\n",
        b"SYST:ERR?" + junk + b"\n",
        b"READ:TILE?" + junk + b"0\n",
        b";\n",
        b";;*OPC?\n",
        b",\n",
        b"\t;*IDN?\n",
    ]
    return _pick(rng, options), INVALID_CHARACTER


def gen_syntax(rng: np.random.Generator) -> Case:
    addrs = u4(_addresses(rng))
    options = [
        b"READ:DEV? 0," + addrs + b" x\n",
        b"READ:DEV? 0," + addrs + addrs + b"\n",
        b"READ:DEV? 1," + addrs + b"0\n",
    ]
    return _pick(rng, options), SYNTAX_ERROR


TARGETED: dict[str, tuple[CaseGenerator, int]] = {
    # category: (generator, how many cases)
    "overlong": (gen_overlong, 250),
    "unknown header": (gen_unknown_header, 700),
    "wrong type": (gen_wrong_type, 700),
    "block not allowed": (gen_block_not_allowed, 250),
    "missing parameter": (gen_missing, 600),
    "too many parameters": (gen_too_many, 600),
    "out of range": (gen_out_of_range, 800),
    "pulse limits": (gen_pulse_limits, 500),
    "bad block header": (gen_bad_block_header, 400),
    "oversized block": (gen_oversized_block, 300),
    "block not whole": (gen_block_not_whole, 400),
    "length mismatch": (gen_length_mismatch, 400),
    "duplicate address": (gen_duplicates, 300),
    "not finite": (gen_not_finite, 300),
    "indefinite block": (gen_indefinite, 300),
    "invalid character": (gen_invalid_character, 300),
    "syntax": (gen_syntax, 200),
}

_SCPI_ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789:*?,; .-+e\"'\t\r", np.uint8
)


def gen_random_line(rng: np.random.Generator) -> bytes:
    """Random bytes (binary garbage) or random SCPI-alphabet text; error code not predicted."""
    size = int(rng.integers(0, 160))
    if rng.random() < 0.5:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    else:
        data = rng.choice(_SCPI_ALPHABET, size=size).tobytes()
    return _no_block_header(data) + b"\n"


def fuzz_plan(rng: np.random.Generator) -> list[tuple[str, bytes, int | None]]:
    cases: list[tuple[str, bytes, int | None]] = []
    for category, (generate, count) in TARGETED.items():
        for _ in range(count):
            message, code = generate(rng)
            cases.append((category, message, code))
    cases += [("random", gen_random_line(rng), None) for _ in range(4000)]
    order = rng.permutation(len(cases))
    return [cases[i] for i in order]


def run_batch(client: Client, batch: list[tuple[str, bytes, int | None]]) -> None:
    """Pipeline a batch: each targeted case as ``*CLS``, the case, ``SYST:ERR?;SYST:ERR:COUN?``
    (its error, and that it queued exactly one); random lines as they are; then ``*OPC?``."""
    stream = bytearray()
    checked = []
    for category, message, code in batch:
        if code is None:
            stream += message
        else:
            stream += b"*CLS\n" + message + b"SYST:ERR?;SYST:ERR:COUN?\n"
            checked.append((category, message, code))
    stream += b"*OPC?\n"
    client.send(bytes(stream))
    for category, message, code in checked:
        reply = client.readline()
        entry, _, count = reply.rstrip(b"\n").rpartition(b";")
        got = int(entry.split(b",", 1)[0])
        assert (got, count) == (code, b"0"), (category, message[:120], reply)
    assert client.readline() == b"1\n"


def fuzz_plan_sample(rng: np.random.Generator, count: int) -> list[tuple[str, bytes, int | None]]:
    categories = list(TARGETED)
    out: list[tuple[str, bytes, int | None]] = []
    for _ in range(count):
        category = _pick(rng, categories)
        message, code = TARGETED[category][0](rng)
        out.append((category, message, code))
    return out


# --- 1. fuzz -------------------------------------------------------------------------------------


def _truncated_endings(rng: np.random.Generator) -> list[bytes]:
    """Things sent as the last bytes of a connection, which is then closed."""
    addrs = u4(_addresses(rng, 4))
    return [
        b"PULS:APPL 0,#18" + b"\x01\x00\x00\x00",  # block announces 8 bytes, 4 follow
        b"PULS:APPL 0," + addrs + b",#14\x00\x00",  # second block cut short
        b"READ:DEV? 0,#9000000400" + bytes(100),
        b"MVM:FORW? 1," + WINDOW + b"#41024" + bytes(1000),
        b"READ:DEV? 0,#0\x01\x00\x00\x00",  # indefinite block, never terminated
        b"READ:DEV? 0,#9123",  # header cut short
        b"READ:DEV? 0,#",
        b'TEMP "unterminated',
        b"TEMP 350",  # valid, but never terminated: must not execute
        b"A" * (MAX_TEXT_BYTES + 100),  # over-long, never terminated
        rng.integers(0, 256, 300, dtype=np.uint8).tobytes().replace(b"\n", b""),
    ]


def test_fuzz_tcp_server(server: TcpServer, chip: EmulatedChip) -> None:
    rng = np.random.default_rng(SEED)
    before = chip_state(chip)
    plan = fuzz_plan(rng)
    sent = 0
    client = connect(server)
    try:
        client.send(b"*CLS\n")
        for start in range(0, len(plan), 200):
            run_batch(client, plan[start : start + 200])
            sent += len(plan[start : start + 200])
        # Spot check a full error entry of each targeted category after the pipelined run.
        for generate, _count in TARGETED.values():
            message, code = generate(rng)
            client.send(b"*CLS\n" + message)
            assert client.next_error() == code, message[:120]
            assert client.query(b"SYST:ERR:COUN?\n") == b"0\n"
    finally:
        client.close()

    # Truncated blocks, open quotes and unterminated messages, each the last thing sent on a
    # connection that is then closed; each connection first proves it is in sync.
    endings = _truncated_endings(rng)
    for round_ in range(4):
        for ending in endings:
            client = connect(server)
            batch = [(c, m, k) for c, m, k in fuzz_plan_sample(rng, 5)]
            run_batch(client, batch)
            sent += len(batch)
            client.send(ending)
            sent += 1
            if round_ % 2:
                close_and_wait(client)
            else:
                client.close()

    assert sent >= 10_000
    fresh = connect(server)
    try:
        assert fresh.query(b"*IDN?\n") == IDN
        assert fresh.query(b"TEMP?;CLOC:TIME?\n") == b"300.0;0.0\n"
    finally:
        fresh.close()
    assert_same_state(before, chip_state(chip))


def test_fuzz_plan_is_deterministic() -> None:
    first = fuzz_plan(np.random.default_rng(SEED))
    second = fuzz_plan(np.random.default_rng(SEED))
    assert first == second
    assert len(first) >= 10_000
    # None of the planned lines carries an LF other than its terminator outside a block, and no
    # random line starts a block.
    for category, message, _code in first:
        assert message.endswith(b"\n")
        if category == "random":
            assert b"\n" not in message[:-1]
            assert _NO_BLOCKS.search(message) is None


# --- 2. a client that drops mid-message --------------------------------------------------------


def _valid_pulse() -> bytes:
    addresses = np.arange(DEVICES // 2, dtype="<u4")
    return _pulse(b"0", u4(addresses), f4([400.0]), f4([100.0]))


def test_client_dropping_mid_message_applies_nothing(server: TcpServer, chip: EmulatedChip) -> None:
    message = _valid_pulse()
    before = chip_state(chip)
    cuts = sorted(
        {
            5,
            len(b"PULS:APPL 0,"),
            len(b"PULS:APPL 0,#"),
            len(b"PULS:APPL 0,#3"),
            len(b"PULS:APPL 0,#3512"),
            len(message) // 2,
            len(message) - 30,
            len(message) - 1,  # everything but the LF
        }
    )
    for index, cut in enumerate(cuts):
        client = connect(server)
        if index % 2:
            for i in range(cut):  # byte by byte: every partial state of the framer
                client.send(message[i : i + 1])
        else:
            client.send(message[:cut])
        close_and_wait(client)
        assert_same_state(before, chip_state(chip))
    # A CR is not a terminator either.
    client = connect(server)
    client.send(message[:-1] + b"\r")
    close_and_wait(client)
    assert_same_state(before, chip_state(chip))

    # The next client works, and nothing of the dropped messages leaks into its framer.
    client = connect(server)
    try:
        assert client.query(b"*IDN?\n") == IDN
        assert client.query(b"SYST:ERR:COUN?\n") == b"0\n"
        assert_same_state(before, chip_state(chip))
        # Control: the same message, complete (and split into small pieces), does apply.
        for i in range(0, len(message), 7):
            client.send(message[i : i + 7])
        client.sync()
        assert client.query(b"SYST:ERR?\n") == NO_ERROR
    finally:
        client.close()
    after = chip.devices.snapshot()
    assert not np.array_equal(after["g_prog"], before[0]["g_prog"])


# --- 3. one client at a time ---------------------------------------------------------------------


def test_second_connection_is_refused_busy(server: TcpServer, chip: EmulatedChip) -> None:
    first = connect(server)
    try:
        assert first.query(b"*IDN?\n") == IDN
        for _ in range(3):
            second = raw_connect(server)
            try:
                assert second.readline() == BUSY
                # Whatever it sends is never executed.
                with contextlib.suppress(OSError):
                    second.send(b"TEMP 350\n")
                second.expect_eof()
            finally:
                second.close()
            # The first client is not disturbed.
            assert first.query(b"*IDN?\n") == IDN
            assert first.query(b"SYST:ERR?\n") == NO_ERROR
        assert chip.temperature_K == 300.0
        assert server.connections == 1
    finally:
        first.close()
    third = connect(server)
    try:
        assert third.query(b"*IDN?\n") == IDN
        assert third.query(b"TEMP?\n") == b"300.0\n"
    finally:
        third.close()
    assert server.connections == 2


# --- 4. every kind of bad input on one connection -----------------------------------------------


def _bad_inputs() -> list[tuple[str, bytes, int]]:
    addrs = u4([1, 2, 3])
    items: list[tuple[str, bytes, int]] = [
        ("empty line", b"\n", 0),
        ("blank line", b" \t \r\n", 0),
        ("CR LF", b"\r\n", 0),
        ("CR inside a header", b"*OPC\r?\n", INVALID_CHARACTER),
        ("NUL bytes", b"\x00\x00\x00\n", INVALID_CHARACTER),
        ("binary garbage", bytes(range(128, 256)) + b"\n", INVALID_CHARACTER),
        ("invalid UTF-8 header", b"\xc3\x28:FOO?\n", INVALID_CHARACTER),
        ("separator only", b";\n", INVALID_CHARACTER),
        ("unknown header", b"FOO:BAR?\n", UNDEFINED_HEADER),
        ("unknown common", b"*XYZ\n", UNDEFINED_HEADER),
        ("optional node misplaced", b"SYST:NEXT?\n", UNDEFINED_HEADER),
        ("too long text", b"X" * (MAX_TEXT_BYTES + 1) + b"\n", INPUT_BUFFER_OVERRUN),
        ("text at the limit", b"X" * MAX_TEXT_BYTES + b"\n", UNDEFINED_HEADER),
        ("huge text", b"READ:TILE? " + b"1" * 200_000 + b"\n", INPUT_BUFFER_OVERRUN),
        (
            "blocks do not count as text",
            b"READ:DEV? 0," + b" " * 4000 + u4([300] * 3000) + b"\n",
            DATA_OUT_OF_RANGE,
        ),
        ("unterminated quote", b'TEMP "300\n', DATA_TYPE_ERROR),
        ("quoted separator", b"TEMP '3;00'\n", DATA_TYPE_ERROR),
        ("wrong int", b"READ:TILE? zero\n", DATA_TYPE_ERROR),
        ("wrong float", b"TEMP NaN\n", DATA_TYPE_ERROR),
        ("number for block", b"READ:DEV? 0,3\n", DATA_TYPE_ERROR),
        ("#A is no block", b"READ:DEV? 0,#A0000\n", DATA_TYPE_ERROR),
        ("block for number", b"READ:TILE? " + addrs + b"\n", BLOCK_NOT_ALLOWED),
        ("missing", b"MVM:FORW? 0\n", MISSING_PARAMETER),
        ("empty argument", b"TEMP ,\n", PARAMETER_NOT_ALLOWED),
        ("too many", b"*RST 1\n", PARAMETER_NOT_ALLOWED),
        ("tile out of range", b"READ:TILE? 2\n", DATA_OUT_OF_RANGE),
        ("temperature infinite", b"TEMP 1e400\n", DATA_OUT_OF_RANGE),
        ("clock backwards", b"CLOC:ADV -1\n", DATA_OUT_OF_RANGE),
        ("pulse too strong", _pulse(b"0", addrs, f4([600.5]), f4([100.0])), PULSE_OUTSIDE_LIMITS),
        ("pulse too short", _pulse(b"0", addrs, f4([300.0]), f4([9.99])), PULSE_OUTSIDE_LIMITS),
        ("bad block digits", b"READ:DEV? 0,#3 12abcd\n", INVALID_BLOCK_DATA),
        ("bad block header", b"READ:DEV? 0,#1x\n", INVALID_BLOCK_DATA),
        ("no block where a header goes", b"#1x\n", INVALID_CHARACTER),
        ("oversized block", b"READ:DEV? 0,#9999999999\n", TOO_MUCH_DATA),
        ("oversized block, just", b"READ:DEV? 0,#9067108865\n", TOO_MUCH_DATA),
        ("odd block", b"READ:DEV? 0,#13abc\n", BLOCK_DATA_ERROR),
        ("block with LF and CR inside", b"READ:DEV? 0,#15\n\r\n\r\n\n", BLOCK_DATA_ERROR),
        ("empty block", b"READ:DEV? 0,#10\n", LENGTH_MISMATCH),
        (
            "length mismatch",
            _pulse(b"0", addrs, f4([300.0, 300.0]), f4([100.0])),
            LENGTH_MISMATCH,
        ),
        (
            "duplicate",
            _pulse(b"1", u4([7, 8, 7]), f4([300.0]), f4([100.0])),
            DUPLICATE_ADDRESS,
        ),
        ("NaN amplitude", _pulse(b"0", addrs, f4([np.nan]), f4([100.0])), DATA_OUT_OF_RANGE),
        ("inf input", b"MVM:FORW? 0," + WINDOW + f4([np.inf] * ROWS) + b"\n", DATA_OUT_OF_RANGE),
        ("indefinite block", b"READ:TILE? #0junk\n", BLOCK_NOT_ALLOWED),
        ("indefinite, odd", b"READ:DEV? 0,#0abc\n", BLOCK_DATA_ERROR),
        ("text after block", b"READ:DEV? 0," + addrs + b"junk\n", SYNTAX_ERROR),
    ]
    return items


def test_server_keeps_serving_after_bad_input_on_same_connection(
    client: Client, chip: EmulatedChip
) -> None:
    before = chip_state(chip)
    for name, message, code in _bad_inputs():
        client.send(message + b"*OPC?\n")
        assert client.readline() == b"1\n", name
        assert client.next_error() == code, name
        assert client.query(b"SYST:ERR:COUN?\n") == b"0\n", name
        assert client.query(b"*IDN?\n") == IDN, name
    # All of them again, pipelined in groups that fit the 32-entry error queue.
    items = _bad_inputs()
    for start in range(0, len(items), 20):
        group = items[start : start + 20]
        client.send(b"*CLS\n" + b"".join(m for _n, m, _c in group) + b"*OPC?\n")
        assert client.readline() == b"1\n"
        expected = [c for _n, _m, c in group if c != 0]
        assert client.query(b"SYST:ERR:COUN?\n") == b"%d\n" % len(expected)
        assert [client.next_error() for _ in expected] == expected
    assert_same_state(before, chip_state(chip))


# --- 5. error queue overflow -------------------------------------------------------------------


def test_error_queue_overflow(client: Client) -> None:
    client.send(b"*CLS\n" + b"FOO\n" * 40)
    assert client.query(b"SYST:ERR:COUN?\n") == b"32\n"
    entries = [client.query(b"SYST:ERR?\n") for _ in range(32)]
    assert entries[:31] == [b'-113,"Undefined header;FOO"\n'] * 31
    assert entries[31] == b'-350,"Queue overflow"\n'
    assert int(entries[31].split(b",")[0]) == QUEUE_OVERFLOW
    assert client.query(b"SYST:ERR?\n") == NO_ERROR

    # Once an entry is read there is room again: the newest error goes after the -350.
    client.send(b"FOO\n" * 40 + b"SYST:ERR?\nBAR\n")
    assert client.readline() == b'-113,"Undefined header;FOO"\n'
    assert client.query(b"SYST:ERR:COUN?\n") == b"32\n"
    entries = [client.query(b"SYST:ERR?\n") for _ in range(32)]
    assert entries[:30] == [b'-113,"Undefined header;FOO"\n'] * 30
    assert entries[30:] == [b'-350,"Queue overflow"\n', b'-113,"Undefined header;BAR"\n']
    assert client.query(b"SYST:ERR?\n") == NO_ERROR


# --- 6. status registers ---------------------------------------------------------------------------


def test_event_status_and_status_byte(client: Client) -> None:
    q = client.query
    assert q(b"*CLS;*ESR?;*STB?\n") == b"0;0\n"
    # Command error: bit 5.
    client.send(b"FOO\n")
    assert q(b"*ESR?\n") == b"32\n"
    assert q(b"*ESR?\n") == b"0\n"  # read and cleared
    assert q(b"*STB?\n") == b"4\n"  # the -113 is still queued
    assert q(b"SYST:ERR?\n") == b'-113,"Undefined header;FOO"\n'
    assert q(b"*STB?\n") == b"0\n"
    # Execution error (-222): bit 4.
    client.send(b"READ:TILE? 7\n")
    assert q(b"*STB?;*ESR?;*ESR?\n") == b"4;16;0\n"
    # Device-specific error (101): bit 3.
    client.send(b"*CLS\n" + _pulse(b"0", u4([1]), f4([700.0]), f4([100.0])))
    assert q(b"*ESR?\n") == b"8\n"
    assert client.next_error() == PULSE_OUTSIDE_LIMITS
    # Several classes at once; *OPC sets bit 0.
    client.send(b"*CLS\nFOO\nTEMP 1000\n" + _pulse(b"0", u4([1, 1]), f4([1.0]), f4([10.0])))
    client.send(b"*OPC\n")
    assert q(b"*ESR?\n") == b"57\n"  # 32 + 16 + 8 + 1
    # The summary bit of *STB? follows ESR AND ESE.
    client.send(b"*CLS\n*ESE 32\nFOO\n")
    assert q(b"*ESE?;*STB?\n") == b"32;36\n"
    assert q(b"*ESR?;*STB?\n") == b"32;4\n"
    client.send(b"*CLS\nREAD:TILE? 9\n")
    assert q(b"*STB?\n") == b"4\n"  # execution error, not enabled
    # *RST clears the enable mask, *CLS the queue and ESR.
    client.send(b"*RST\n*CLS\n")
    assert q(b"*ESE?;*ESR?;*STB?;SYST:ERR:COUN?\n") == b"0;0;0;0\n"


# --- 7. exact wire traffic -----------------------------------------------------------------------


def exchange(client: Client, request: bytes, expected: bytes) -> None:
    """``request`` produces exactly ``expected`` and nothing more."""
    client.send(request)
    assert client.read_exact(len(expected)) == expected, request[:80]
    client.send(b"*OPC?\n")
    assert client.readline() == b"1\n", request[:80]


def test_exact_wire_traffic(server: TcpServer, chip: EmulatedChip) -> None:
    twin = make_chip("tiny", seed=SEED)  # same seed, same calls: the same read noise
    client = connect(server)
    try:
        ex = exchange
        ex(client, b"*IDN?\n", IDN)
        ex(client, b"*IDN?\r\n", IDN)
        ex(client, b"SYST:ERR?\n", NO_ERROR)
        ex(client, b"syst:error:next?\n", NO_ERROR)
        ex(client, b":SYSTEM:ERROR?\n", NO_ERROR)
        ex(client, b"FOO\nSYST:ERR?\n", b'-113,"Undefined header;FOO"\n')
        ex(
            client,
            b"READ:TILE? 7\nSYST:ERR?\n",
            b'-222,"Data out of range;tile=7 outside [0, 1]"\n',
        )
        ex(
            client,
            b"*IDN? 1\nSYST:ERR?\n",
            b'-108,"Parameter not allowed;*IDN? takes 0 argument(s), got 1"\n',
        )
        ex(client, b"READ:TILE?\nSYST:ERR?\n", b'-109,"Missing parameter;READ:TILE? needs tile"\n')
        ex(
            client,
            b'READ:TILE? "a"\nSYST:ERR?\n',
            b"-104,\"Data type error;tile='?a?' is not an integer\"\n",
        )
        ex(
            client,
            b"READ:TILE? #14abcd\nSYST:ERR?\n",
            b'-168,"Block data not allowed;tile must not be a block"\n',
        )
        ex(
            client,
            b"READ:DEV? 0,#13abc\nSYST:ERR?\n",
            b'-160,"Block data error;block of 3 bytes is not a whole number of 4-byte uint32"\n',
        )
        ex(
            client,
            b"READ:DEV? 0,#3 12abcd\nSYST:ERR?\n",
            b"-161,\"Invalid block data;block length b' 12' is not decimal\"\n",
        )
        ex(
            client,
            b"READ:DEV? 0,#9999999999\nSYST:ERR?\n",
            b'-223,"Too much data;block of 999999999 bytes exceeds 67108864"\n',
        )
        ex(
            client,
            b"#9999999999\nSYST:ERR?\n",
            b"-101,\"Invalid character;at '#9999999999'\"\n",
        )
        ex(
            client,
            b"Y" * 5000 + b"\nSYST:ERR?\n",
            b'-363,"Input buffer overrun;message text longer than 4096 bytes"\n',
        )
        ex(
            client,
            b"*IDN?\x01\nSYST:ERR?\n",
            b"-101,\"Invalid character;after header at '?'\"\n",
        )
        ex(
            client,
            b"READ:DEV? 0,#14abcd x\nSYST:ERR?\n",
            b"-102,\"Syntax error;expected ',' or ';' at 'x'\"\n",
        )
        ex(
            client,
            _pulse(b"0", u4([1, 2]), f4([700.0]), f4([100.0])) + b"SYST:ERR?\n",
            b'101,"Pulse outside safe limits;amplitudes holds 700 uA, outside [0, 600] uA"\n',
        )
        ex(
            client,
            _pulse(b"0", u4([1, 2, 3]), f4([500.0, 500.0]), f4([100.0])) + b"SYST:ERR?\n",
            b'102,"Array length mismatch;amplitudes has 2 elements, addresses has 3"\n',
        )
        ex(
            client,
            _pulse(b"0", u4([4, 4]), f4([500.0]), f4([100.0])) + b"SYST:ERR?\n",
            b'103,"Duplicate address in one command;a value appears twice in addresses"\n',
        )
        ex(
            client,
            _pulse(b"0", u4([1]), f4([np.nan]), f4([100.0])) + b"SYST:ERR?\n",
            b'-222,"Data out of range;amplitudes holds NaN or infinity"\n',
        )
        ex(client, b"TEMP 1e400\nSYST:ERR?\n", b'-222,"Data out of range;kelvin is not finite"\n')
        # Replies of units before the failing one are sent; the rest is discarded.
        ex(client, b"*OPC?;FOO;*IDN?\n", b"1\n")
        ex(client, b"SYST:ERR?\n", b'-113,"Undefined header;FOO"\n')
        ex(client, b"SYST:VERS?;SYST:PROT?\n", b"1999.0;1.1\n")
        ex(client, b"CHIP:GEOM?;CHIP:GMAX?\n", b"2,16,16;25.0\n")
        ex(client, b"CHIP:LIM?;CHIP:TEMP:LIM?\n", b"600.0,10.0,1000.0;233.0,400.0\n")
        ex(client, b"READ:VOLT?;MVM:RES?\n", b"0.2;8,8\n")
        ex(client, b"TEMP?;CLOC:TIME?;CLOC:MODE?\n", b"300.0;0.0;VIRT\n")
        ex(client, b"*TST?;*ESE?;SYST:ERR:COUN?\n", b"0;0;0\n")
        # A block reply: the first read on either chip draws the same noise.
        expected = twin.read_tile(0).astype("<f4").tobytes()
        ex(client, b"READ:TILE? 0\n", b"#41024" + expected + b"\n")
    finally:
        client.close()


# --- 8. pty server -------------------------------------------------------------------------------


def test_pty_server() -> None:
    serial = pytest.importorskip("serial")
    chip = make_chip("tiny", seed=SEED)
    before = chip_state(chip)
    with PtyServer(WireInterface(chip)) as server:
        port = serial.Serial(server.path, timeout=2)
        try:
            port.write(b"*IDN?\n")
            assert port.readline() == IDN
            port.write(b"FOO\nSYST:ERR?\n")
            assert port.readline() == b'-113,"Undefined header;FOO"\n'
            port.write(b"READ:DEV? 0,#14abcd x\nSYST:ERR?\n")
            assert port.readline() == b"-102,\"Syntax error;expected ',' or ';' at 'x'\"\n"
            port.write(b"\x00\xff\xfe\x03garbage\nSYST:ERR?\n")
            assert port.readline().startswith(b'-101,"Invalid character;')
            port.write(bytes(range(256)).replace(b"\n", b"") + b"\n" + b"SYST:ERR?\n")
            assert port.readline().startswith(b"-101,")
            # Raw mode: LF, CR and control bytes inside a block pass unchanged.
            port.write(b"READ:DEV? 0,#15\n\r\x03\x04\x11\nSYST:ERR?\n")
            assert port.readline().startswith(b"-160,")
            port.write(b"READ:DEV? 0,#14\n\x00\x00\x00\n")  # address 10
            reply = port.read(8)
            assert reply[:3] == b"#14" and reply[-1:] == b"\n", reply
            assert np.frombuffer(reply[3:7], "<f4")[0] > 0
            port.write(b"X" * 6000 + b"\nSYST:ERR?;*OPC?\n")
            assert port.readline().startswith(b"-363,")
            port.write(b"*OPC?;SYST:ERR?\n")
            assert port.readline() == b'1;0,"No error"\n'
        finally:
            port.close()
    assert_same_state(before, chip_state(chip))


# --- defects once found by this suite, now fixed: regressions ---------------------------

HUGE_INT = b"18446744073709551616"  # 2**64


def test_huge_integer_argument_is_range_error_tcp(client: Client) -> None:
    client.send(b"READ:TILE? " + HUGE_INT + b"\nSYST:ERR?\n")
    assert client.readline().startswith(b"-222,")
    client.sync()


def test_huge_integer_argument_is_range_error_pty() -> None:
    serial = pytest.importorskip("serial")
    with PtyServer(WireInterface(make_chip("tiny", seed=SEED))) as server:
        port = serial.Serial(server.path, timeout=1)
        try:
            port.write(b"*ESE -" + HUGE_INT + b"\nSYST:ERR?\n")
            assert port.readline().startswith(b"-222,")
            port.write(b"*IDN?\n")
            assert port.readline() == IDN
        finally:
            port.close()


def test_short_bad_block_header_does_not_hold_next_message(client: Client) -> None:
    client.send(b"FOO #9\n*OPC?\n")
    assert client.readline(timeout=1.0) == b"1\n"


def test_indefinite_block_respects_block_limit() -> None:
    framer = MessageFramer(max_text=64, max_block=16)
    items = framer.feed(b"READ:DEV? 0,#0" + b"\x01" * 100 + b"\n*OPC?\n")
    assert isinstance(items[0], ScpiError) and items[0].code == TOO_MUCH_DATA
    assert items[1:] == [b"*OPC?"]


def test_unterminated_quote_is_bounded() -> None:
    framer = MessageFramer(max_text=64)
    items = framer.feed(b'TEMP "' + b"a" * 1000)
    assert [getattr(item, "code", None) for item in items] == [INPUT_BUFFER_OVERRUN]
    assert framer.pending  # the rest of the message is still being discarded: held, not stored
    assert framer.feed(b"a" * 10_000) == []
    assert framer.feed(b'"\n*OPC?\n') == [b"*OPC?"]
    assert not framer.pending
