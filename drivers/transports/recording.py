"""A transport that records: every byte written and read through another transport goes to a
cassette (``pcm_hil.protocols.cassette``) as it passes — ``PcmChip.open(resource,
record="session.cassette")``, ``--record FILE`` on the command line.

Each write, each read (a line, an exact count, a binary block read straight into its array)
and each clear of the input is one record. A command's records and its reply's go to the file
together, with one system call, as soon as a response message ends (a read that ends in LF;
a failure, a clear or a close too): a script killed at any point leaves a cassette that
replays up to its last whole exchange. The exchange under way when it was killed is not on
file, though its command may have reached the chip (a pulse sent, its reply never read).
"""

from __future__ import annotations

import datetime
import os

from pcm_hil.protocols.cassette import CassetteWriter
from pcm_hil.protocols.transport import Transport, TransportError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pcm-hil")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


class RecordingTransport:
    """``transport``, with everything that passes through it appended to ``cassette``."""

    def __init__(self, transport: Transport, cassette: CassetteWriter) -> None:
        self.inner = transport
        self.cassette = cassette
        self.resource = transport.resource
        self._held: list[tuple[str, float, bytes | bytearray | memoryview]] = []

    @classmethod
    def start(cls, transport: Transport, path: str | os.PathLike[str]) -> RecordingTransport:
        """Record ``transport`` to a new cassette at ``path`` (FileExistsError if it exists)."""
        meta = {
            "format": 1,
            "resource": transport.resource,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "pcm_hil": _version(),
        }
        return cls(transport, CassetteWriter(path, meta))

    def write(self, data: bytes) -> None:
        self._hold("W", data)
        try:
            self.inner.write(data)
        except TransportError as error:
            self._failed("write", error)
            raise

    def read(self, exact: int | None) -> bytes:
        try:
            data = self.inner.read(exact)
        except TransportError as error:
            self._failed("read", error)
            raise
        self._hold("R", data)
        if data.endswith(b"\n"):  # a response message ends: its exchange is on file
            self._flush()
        return data

    def read_into(self, buffer: memoryview) -> None:
        try:
            self.inner.read_into(buffer)
        except TransportError as error:
            self._failed("read", error)
            raise
        self._hold("R", buffer)

    def clear(self) -> None:
        self.inner.clear()
        self._hold("C", b"")
        self._flush()

    def _hold(self, kind: str, data: bytes | bytearray | memoryview) -> None:
        self._held.append((kind, self.cassette.now(), data))

    def _flush(self) -> None:
        """Write what is held: a command and its reply go to the file together, once the
        reply's message has ended — one system call an exchange, whole exchanges on file."""
        held, self._held = self._held, []
        self.cassette.add_many(held)

    def _failed(self, operation: str, error: TransportError) -> None:
        """A failed read or write, as the replay will raise it again."""
        text = f"{operation} {type(error).__name__} {error}"
        self._hold("E", text.encode("utf-8", "replace"))
        self._flush()

    def resume_on(self, transport: Transport) -> RecordingTransport:
        """The same recording over a new connection (a reconnect), marked in the cassette."""
        self._flush()
        self.cassette.add("O", b"")
        return RecordingTransport(transport, self.cassette)

    def close(self) -> None:
        """Close the connection and the cassette's file (a reconnect opens it again)."""
        try:
            self._flush()
            self.inner.close()
        finally:
            self.cassette.close()
