"""Transports: bytes to and from a chip, picked by the resource string.

- ``emulator``, ``emulator?seed=3&…``: the in-process emulated chip (imported on open);
- ``TCPIP0::host::port::SOCKET``: a plain TCP socket, or pyvisa when a VISA library is named;
- ``ASRL…::INSTR`` and any other VISA resource: pyvisa (pyvisa-py unless told otherwise);
- ``serial:/dev/ttyUSB0[?baud=N]``, ``/dev/…``, ``COMn``, pyserial URLs: pyserial.

A transport writes bytes and reads either "up to and including the next LF" (``exact=None``)
or an exact count (inside a binary block, where LF is data). Timeouts and lost connections
become ``ChipTimeoutError`` and ``ChipDisconnectedError``.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl

from pcm_hil.drivers.errors import (
    ChipDisconnectedError,
    ChipTimeoutError,
    ResourceError,
    TransportError,
)

if TYPE_CHECKING:
    from pcm_hil.emulator.faults import FaultPlan

_VISA = re.compile(r"^(TCPIP\d*|ASRL|GPIB\d*|USB\d*|VXI\d*|PXI\d*|VICP\d*)", re.IGNORECASE)
_SERIAL_URL = re.compile(r"^(socket|rfc2217|loop|spy|alt|hwgrep)://", re.IGNORECASE)


class Transport(Protocol):
    """What the driver needs of a connection."""

    resource: str

    def write(self, data: bytes) -> None: ...

    def read(self, exact: int | None) -> bytes: ...

    def read_into(self, buffer: memoryview) -> None:
        """Fill ``buffer`` with exactly ``len(buffer)`` bytes."""

    def clear(self) -> None: ...

    def close(self) -> None: ...


class _CopyInto:
    """``read_into`` by way of ``read``: one copy (transports without a zero-copy path)."""

    def read_into(self, buffer: memoryview) -> None:
        buffer[:] = self.read(len(buffer))


class InProcessTransport(_CopyInto):
    """The embedded emulator: the same bytes as on a wire, with no wire.

    With a fault plan (``emulator.faults.FaultPlan``) the transport is one faulty
    connection: its device faults are applied to the chip now, and its connection faults as
    on TCP, except that nothing waits. A delayed reply is held back: the read that would get
    it raises ``ChipTimeoutError``, after which the reply is there for the next read, as a late
    reply would be. After a drop (``drop_after``, ``drop_mid_block``, ``reset_after``) the
    replies sent before it can still be read; then reads, and every write, raise
    ``ChipDisconnectedError``.
    """

    def __init__(self, resource: str, wire, faults: FaultPlan | None = None) -> None:
        self.resource = resource
        self.wire = wire
        self.faults = faults
        self._framer = wire.new_framer()
        self._pending = bytearray()
        self._closed = False
        self._session = None
        self._dropped = False
        self._consumed = 0  # stream offset of _pending[0]
        self._late: deque[int] = deque()  # stream offsets where delayed replies begin
        if faults:
            faults.apply_to_chip(wire.chip)
            if faults.connection_faults:
                self._session = faults.session(wire)

    @property
    def fault_events(self) -> list:
        """The faults that fired on this connection, in order."""
        return [] if self._session is None else list(self._session.events)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ChipDisconnectedError("in-process transport is closed")
        if self._dropped:
            raise ChipDisconnectedError(f"{self.resource}: the chip closed the connection")
        if self._session is None:
            self._pending += self.wire.feed(self._framer, data)
            return
        for outcome in self._session.feed(self._framer, data):
            if outcome.delay_s and outcome.reply:
                self._late.append(self._consumed + len(self._pending))
            self._pending += outcome.reply
            if outcome.close:
                self._dropped = True
                break

    def read(self, exact: int | None) -> bytes:
        if self._closed:
            raise ChipDisconnectedError("in-process transport is closed")
        available = len(self._pending)
        if self._late:
            available = min(available, self._late[0] - self._consumed)
        if exact is None:
            newline = self._pending.find(b"\n", 0, available)
            count = None if newline < 0 else newline + 1
        else:
            count = exact if exact <= available else None
        if count is None:
            if self._late and self._late[0] - self._consumed < len(self._pending):
                self._late.popleft()  # the late reply arrives, after the timeout
                raise ChipTimeoutError(f"{self.resource}: the reply is late (injected delay)")
            if self._dropped:
                raise ChipDisconnectedError(f"{self.resource}: the chip closed the connection")
            if not self._pending:
                raise ChipTimeoutError(
                    "the emulated chip sent no reply (the command was not a query?)"
                )
            if self._session is not None:
                raise ChipTimeoutError(f"{self.resource}: the reply is incomplete")
            count = len(self._pending) if exact is None else min(exact, len(self._pending))
        with memoryview(self._pending) as view:  # one copy, not a slice and then bytes of it
            data = bytes(view[:count])
        del self._pending[:count]
        self._consumed += count
        return data

    def clear(self) -> None:
        self._consumed += len(self._pending)
        self._pending.clear()
        self._late.clear()
        self._framer.reset()

    def close(self) -> None:
        self._closed = True


class VisaTransport(_CopyInto):
    """Any VISA resource through pyvisa; pyvisa-py (``@py``) unless another library is named."""

    def __init__(self, resource: str, timeout_s: float, visa_library: str = "@py") -> None:
        import pyvisa
        import pyvisa.constants

        self.resource = resource
        self._pyvisa = pyvisa
        try:
            self._manager = pyvisa.ResourceManager(visa_library)
            self._handle = self._manager.open_resource(resource, open_timeout=int(timeout_s * 1000))
        except pyvisa.errors.VisaIOError as error:
            raise ChipDisconnectedError(f"cannot open {resource}: {error.description}") from error
        except (ValueError, OSError) as error:
            raise ResourceError(f"cannot open {resource}: {error}") from error
        self._handle.timeout = timeout_s * 1000
        self._handle.read_termination = "\n"
        self._handle.write_termination = ""
        self._handle.chunk_size = 1 << 20
        self._termchar_enabled = pyvisa.constants.ResourceAttribute.termchar_enabled
        if resource.upper().startswith("ASRL"):
            self._handle.baud_rate = 115200
            self._handle.end_input = pyvisa.constants.SerialTermination.termination_char

    def write(self, data: bytes) -> None:
        try:
            self._handle.write_raw(data)
        except Exception as error:
            raise self._translate(error) from error

    def read(self, exact: int | None) -> bytes:
        try:
            if exact is None:
                return self._handle.read_raw()
            # Inside a binary block LF is data: with the termination character enabled,
            # pyvisa-py ends every low-level read at each 0x0A byte of the block (and copies
            # the rest of its buffer each time), so a 256 KiB float32 block took thousands of
            # reads. Switch it off for the exact-count read.
            self._handle.set_visa_attribute(self._termchar_enabled, False)
            try:
                return self._handle.read_bytes(exact, break_on_termchar=False)
            finally:
                self._handle.set_visa_attribute(self._termchar_enabled, True)
        except Exception as error:
            raise self._translate(error) from error

    def clear(self) -> None:
        try:
            self._handle.flush(self._pyvisa.constants.BufferOperation.discard_read_buffer)
        except Exception:  # not every session type can flush; a clear is best effort
            pass

    def _translate(self, error: Exception) -> TransportError:
        constants = self._pyvisa.constants
        if isinstance(error, self._pyvisa.errors.VisaIOError):
            if error.error_code == constants.StatusCode.error_timeout and self._peer_closed():
                return ChipDisconnectedError(f"{self.resource}: the chip closed the connection")
            if error.error_code == constants.StatusCode.error_timeout:
                return ChipTimeoutError(
                    f"{self.resource}: no reply within {self._handle.timeout / 1000:g} s"
                )
            return ChipDisconnectedError(f"{self.resource}: {error.description}")
        if isinstance(error, (OSError, EOFError)):
            return ChipDisconnectedError(f"{self.resource}: {error}")
        if isinstance(error, self._pyvisa.errors.InvalidSession):
            return ChipDisconnectedError(f"{self.resource}: session closed")
        return TransportError(f"{self.resource}: {error}")

    def _peer_closed(self) -> bool:
        """True when a socket session's peer has closed (pyvisa-py reports that as a
        timeout). Looks at pyvisa-py's socket; False wherever that is not available."""
        import socket

        try:
            session = self._handle.visalib.sessions[self._handle.session]
            sock = session.interface
            return (
                isinstance(sock, socket.socket)
                and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            )
        except BlockingIOError:
            return False
        except (AttributeError, KeyError, TypeError, OSError):
            return False

    def close(self) -> None:
        # Only the session: pyvisa shares one ResourceManager per library, and closing it
        # would close every other open session too.
        try:
            self._handle.close()
        except Exception:
            pass


class SocketTransport:
    """A raw TCP socket, for ``TCPIP[n]::host::port::SOCKET`` resources: the same bytes as
    pyvisa-py sends, without its per-call overhead (attribute look-ups, a select before every
    recv, 4 KiB receives). Exact-count reads land straight in one buffer (``recv_into``)."""

    _SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.IGNORECASE)

    def __init__(self, resource: str, host: str, port: int, timeout_s: float) -> None:
        import socket

        self.resource = resource
        self.timeout_s = timeout_s
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as error:
            raise ChipDisconnectedError(f"cannot open {resource}: {error}") from error
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = bytearray()

    @classmethod
    def match(cls, resource: str) -> tuple[str, int] | None:
        found = cls._SOCKET.match(resource)
        return (found["host"], int(found["port"])) if found else None

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError as error:
            raise ChipTimeoutError(f"{self.resource}: write timed out") from error
        except OSError as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def read(self, exact: int | None) -> bytes:
        try:
            if exact is None:
                start = 0
                while (newline := self._pending.find(b"\n", start)) < 0:
                    start = len(self._pending)
                    self._pending += self._recv(1 << 16)
                data = bytes(self._pending[: newline + 1])
                del self._pending[: newline + 1]
                return data
            out = bytearray(exact)
            with memoryview(out) as view:
                self.read_into(view)
            return bytes(out)
        except TimeoutError as error:
            raise ChipTimeoutError(
                f"{self.resource}: no reply within {self.timeout_s:g} s"
            ) from error
        except OSError as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def read_into(self, buffer: memoryview) -> None:
        """Fill ``buffer``: first from what is pending, then straight from the socket."""
        exact = len(buffer)
        have = min(len(self._pending), exact)
        buffer[:have] = self._pending[:have]
        del self._pending[:have]
        try:
            while have < exact:
                count = self._sock.recv_into(buffer[have:])
                if not count:
                    raise ChipDisconnectedError(f"{self.resource}: connection closed")
                have += count
        except TimeoutError as error:
            raise ChipTimeoutError(
                f"{self.resource}: no reply within {self.timeout_s:g} s"
            ) from error
        except ChipDisconnectedError:
            raise
        except OSError as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def _recv(self, size: int) -> bytes:
        chunk = self._sock.recv(size)
        if not chunk:
            raise ChipDisconnectedError(f"{self.resource}: connection closed")
        return chunk

    def clear(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class SerialTransport(_CopyInto):
    """A raw serial port (or pyserial URL) through pyserial, for boards without VISA."""

    def __init__(self, resource: str, port: str, baud: int, timeout_s: float) -> None:
        import serial

        self.resource = resource
        self._serial_module = serial
        try:
            self._port = serial.serial_for_url(
                port, baudrate=baud, timeout=timeout_s, write_timeout=timeout_s
            )
        except (serial.SerialException, ValueError) as error:
            raise ChipDisconnectedError(f"cannot open {port}: {error}") from error
        self.timeout_s = timeout_s

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except self._serial_module.SerialTimeoutException as error:
            raise ChipTimeoutError(f"{self.resource}: write timed out") from error
        except (self._serial_module.SerialException, OSError) as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def read(self, exact: int | None) -> bytes:
        try:
            if exact is None:
                data = self._port.read_until(b"\n")
                if not data.endswith(b"\n"):
                    raise ChipTimeoutError(
                        f"{self.resource}: no complete reply within {self.timeout_s:g} s"
                    )
                return data
            data = self._port.read(exact)
            if len(data) < exact:
                raise ChipTimeoutError(
                    f"{self.resource}: {len(data)} of {exact} bytes within {self.timeout_s:g} s"
                )
            return data
        except (self._serial_module.SerialException, OSError) as error:
            raise ChipDisconnectedError(f"{self.resource}: {error}") from error

    def clear(self) -> None:
        try:
            self._port.reset_input_buffer()
        except (self._serial_module.SerialException, OSError):
            pass

    def close(self) -> None:
        try:
            self._port.close()
        except Exception:
            pass


def parse_emulator_options(resource: str) -> dict[str, str]:
    """Options of an ``emulator?key=value&…`` resource."""
    _name, _sep, query = resource.partition("?")
    return dict(parse_qsl(query, strict_parsing=bool(query)))


def open_transport(
    resource: str, timeout_s: float = 10.0, visa_library: str | None = None
) -> Transport:
    """Open the transport a resource string names.

    ``visa_library`` picks the VISA implementation for VISA resources (``"@py"`` for
    pyvisa-py, or the path of a vendor library). Left at None, ``TCPIP::host::port::SOCKET``
    resources use a plain socket — the same bytes as pyvisa-py's socket session, a third of
    its per-call overhead — and other VISA resources use pyvisa-py.
    """
    text = resource.strip()
    if text == "emulator" or text.startswith("emulator?"):
        from pcm_hil.emulator.wire import (
            WireInterface,  # only when asked for: drivers need no emulator
        )

        return InProcessTransport(
            text, WireInterface(make_emulated_chip(parse_emulator_options(text)))
        )
    address = SocketTransport.match(text) if visa_library is None else None
    if address is not None:  # pyvisa-py would only wrap a plain socket, slower
        return SocketTransport(text, *address, timeout_s)
    if _VISA.match(text):
        return VisaTransport(text, timeout_s, visa_library or "@py")
    if (
        text.startswith("serial:")
        or text.startswith("/dev/")
        or re.match(r"^COM\d+", text)
        or _SERIAL_URL.match(text)
    ):
        port, _sep, query = text.removeprefix("serial:").partition("?")
        options = dict(parse_qsl(query))
        try:
            baud = int(options.pop("baud", 115200))
        except ValueError as error:
            raise ResourceError(f"bad baud rate in {resource!r}") from error
        if options:
            raise ResourceError(f"unknown serial option(s) {sorted(options)} in {resource!r}")
        return SerialTransport(text, port, baud, timeout_s)
    raise ResourceError(
        f"cannot tell the transport of {resource!r}: use 'emulator', a VISA resource "
        "(TCPIP0::host::port::SOCKET, ASRL/dev/…::INSTR) or serial:/dev/…"
    )


def make_emulated_chip(options: dict[str, str]):
    """An in-process emulated chip from resource options: profile, seed, tiles, rows, columns,
    real_time."""
    from pcm_hil.emulator import make_chip
    from pcm_hil.emulator.chip import DEFAULT_PROFILE

    known = {"profile", "seed", "tiles", "rows", "columns", "real_time"}
    unknown = set(options) - known
    if unknown:
        raise ResourceError(
            f"unknown emulator option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    try:
        overrides = {
            key: int(options[key]) for key in ("tiles", "rows", "columns") if key in options
        }
        if "real_time" in options:
            overrides["real_time"] = options["real_time"].lower() in ("1", "true", "yes")
        return make_chip(
            options.get("profile", DEFAULT_PROFILE), int(options.get("seed", 0)), **overrides
        )
    except ValueError as error:
        raise ResourceError(f"bad emulator option: {error}") from error
