"""A transport that records: every byte written and read through another transport goes to a
cassette (``pcm_hil.protocols.cassette``) as it passes — ``PcmChip.open(resource,
record="session.cassette")``, ``--record FILE`` on the command line.

Each write, each read (a line, an exact count, a binary block read straight into its array)
and each clear of the input is one record, written before the call returns: a script killed
at any point leaves a cassette that replays up to its last whole exchange.
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
        self.cassette.add("W", data)  # first: what was sent, even if sending then fails
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
        self.cassette.add("R", data)
        return data

    def read_into(self, buffer: memoryview) -> None:
        try:
            self.inner.read_into(buffer)
        except TransportError as error:
            self._failed("read", error)
            raise
        self.cassette.add("R", buffer)

    def _failed(self, operation: str, error: TransportError) -> None:
        """A failed read or write, as the replay will raise it again."""
        text = f"{operation} {type(error).__name__} {error}"
        self.cassette.add("E", text.encode("utf-8", "replace"))

    def clear(self) -> None:
        self.inner.clear()
        self.cassette.add("C", b"")

    def resume_on(self, transport: Transport) -> RecordingTransport:
        """The same recording over a new connection (a reconnect), marked in the cassette."""
        self.cassette.add("O", b"")
        return RecordingTransport(transport, self.cassette)

    def close(self) -> None:
        """Close the connection and the cassette's file (a reconnect opens it again)."""
        try:
            self.inner.close()
        finally:
            self.cassette.close()
