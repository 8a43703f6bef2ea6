"""A raw TCP socket for ``TCPIP[n]::host::port::SOCKET`` resources."""

from __future__ import annotations

import re

from pcm_hil.protocols.transport import (
    ChipDisconnectedError,
    ChipTimeoutError,
    ResourceError,
)


def parse_port(text: str, resource: str) -> int:
    """The TCP port ``text`` names in ``resource``: a number 1…65535, else ResourceError."""
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
        raise ResourceError(f"the port of {resource!r} must be a number 1…65535, not {text!r}")
    return int(text)


class SocketTransport:
    """A raw TCP socket, for ``TCPIP[n]::host::port::SOCKET`` resources: the same bytes as
    pyvisa-py sends, without its per-call overhead (attribute look-ups, a select before every
    recv, 4 KiB receives). Exact-count reads land straight in one buffer (``recv_into``)."""

    _SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>[^:]*)::SOCKET$", re.IGNORECASE)

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
        """(host, port) of a ``TCPIP[n]::host::port::SOCKET`` resource, None for any other;
        ResourceError when its port is not a number 1…65535."""
        found = cls._SOCKET.match(resource)
        return (found["host"], parse_port(found["port"], resource)) if found else None

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
