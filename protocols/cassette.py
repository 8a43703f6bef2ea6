"""Cassettes: what a host and an instrument exchanged, byte for byte, as a file — written while
a session runs (``pcm_hil.drivers.transports.recording``), played back as the instrument
(``pcm_hil.drivers.transports.replay``).

The format (version 1), all integers little-endian:

- the magic line ``PCMHIL-CASSETTE 1\\n`` (18 bytes);
- then records, each::

      kind      1 byte   b"M" metadata (JSON, UTF-8: resource, start time, pcm-hil version)
                         b"W" bytes the host wrote        b"R" bytes the host read
                         b"C" the host cleared its input  b"O" the host opened it again
                         b"E" a read or write failed: "read" or "write", the error's class
                              name and its message, space-separated (UTF-8) — a timeout
                              replays as a timeout
      t_s       8 bytes  float64: seconds since the recording began (monotonic clock)
      length    4 bytes  uint32: bytes of payload
      payload   length bytes, as they went over the wire (binary blocks as they are)
      crc32     4 bytes  uint32: zlib.crc32 of kind, t_s, length and payload

A record is written with one ``write`` (``writev``) system call to a file opened for appending, so a process
killed at any moment leaves whole records and at most one torn one at the end; a reader stops
at the first record that is short or whose CRC does not match, and says so (``complete``).
Nothing is text-expanded: a cassette is the wire traffic plus 17 bytes a record.

``describe(message)`` prints a message for people: its text, and each binary block as
``#<N bytes of dtype?>`` rather than its bytes.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"PCMHIL-CASSETTE 1\n"
KINDS = (b"M", b"W", b"R", b"C", b"O", b"E")
_HEAD = struct.Struct("<cdI")  # kind, t_s, length
_CRC = struct.Struct("<I")
#: Bytes a record adds to its payload.
OVERHEAD = _HEAD.size + _CRC.size


class CassetteError(ValueError):
    """Not a cassette, or one this pcm-hil cannot read."""


@dataclass(frozen=True)
class Record:
    """One record: ``kind`` (``"M"``, ``"W"``, ``"R"``, ``"C"``, ``"O"`` or ``"E"``), its time ``t_s``
    (s since the recording began) and its ``data``."""

    kind: str
    t_s: float
    data: bytes


@dataclass
class Cassette:
    """A cassette read back: its metadata, its records after it, and whether it ends cleanly
    (``complete``: False when its last record is torn — the recording process was killed —
    ``valid_bytes`` then says where the whole records end)."""

    meta: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    complete: bool = True
    valid_bytes: int = 0

    @property
    def wire_bytes(self) -> int:
        """Bytes written and read over the wire, all records together."""
        return sum(len(r.data) for r in self.records if r.kind in ("W", "R"))


class CassetteWriter:
    """Appends records to a cassette file (created; an existing file is refused unless
    ``append``), each with one system call. ``meta`` is its first record."""

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any], *, append: bool = False):
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not append:
            raise FileExistsError(f"{self.path} exists: record to a new file")
        self._fd = os.open(self.path, flags, 0o644)
        self._started = time.monotonic()
        self.records = 0
        self.bytes = 0
        if not exists:
            self._write(MAGIC)
        self.add("M", json.dumps(meta, sort_keys=True).encode("utf-8"))

    def now(self) -> float:
        """Seconds since the recording began (the records' clock)."""
        return time.monotonic() - self._started

    def add(
        self, kind: str, data: bytes | bytearray | memoryview, t_s: float | None = None
    ) -> None:
        """Append one record of ``kind`` holding ``data``, stamped ``t_s`` (default: now)."""
        self.add_many([(kind, self.now() if t_s is None else t_s, data)])

    def add_many(self, records: list[tuple[str, float, bytes | bytearray | memoryview]]) -> None:
        """Append records ``(kind, t_s, data)`` in order, with one system call (a closed
        writer opens its file again: a reconnect goes on recording into the same cassette)."""
        if not records:
            return
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
        parts: list[bytes | bytearray | memoryview] = []
        total = 0
        for kind, t_s, data in records:
            size = len(data)
            head = _HEAD.pack(kind.encode("ascii"), t_s, size)
            if size <= 4096:  # a command, a line: one piece, one CRC call
                record = head + bytes(data)
                parts.append(record + _CRC.pack(zlib.crc32(record)))
            else:  # a block: its bytes as they are, not copied
                parts += head, data, _CRC.pack(zlib.crc32(data, zlib.crc32(head)))
            total += _HEAD.size + size + _CRC.size
        written = 0
        if hasattr(os, "writev") and len(parts) <= 1020:  # payloads not copied into records
            written = os.writev(self._fd, parts)
            self.bytes += written
        if written < total:  # no writev, or a short write (not on a regular file): the rest
            self._write(b"".join(bytes(part) for part in parts)[written:])
        self.records += len(records)

    def _write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:  # a regular file takes it all at once; a short write is continued
            written = os.write(self._fd, view)
            view = view[written:]
        self.bytes += len(chunk)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def iter_records(data: bytes) -> Iterator[tuple[Record, int]]:
    """Each whole record of a cassette's bytes with the offset just after it; stops at the end
    or at the first torn or corrupt record (CassetteError if the magic line is wrong)."""
    if not data.startswith(MAGIC):
        raise CassetteError("not a pcm-hil cassette (no 'PCMHIL-CASSETTE 1' line)")
    pos = len(MAGIC)
    while pos + _HEAD.size <= len(data):
        kind, t_s, length = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length + _CRC.size
        if kind not in KINDS or end > len(data):
            return
        payload = data[pos + _HEAD.size : end - _CRC.size]
        (crc,) = _CRC.unpack_from(data, end - _CRC.size)
        if zlib.crc32(payload, zlib.crc32(data[pos : pos + _HEAD.size])) != crc:
            return
        yield Record(kind.decode("ascii"), t_s, payload), end
        pos = end


def read_cassette(path: str | os.PathLike[str]) -> Cassette:
    """The cassette at ``path``: metadata, records, and whether it ends cleanly."""
    data = Path(path).read_bytes()
    meta: dict[str, Any] = {}
    records: list[Record] = []
    valid = len(MAGIC)
    for record, end in iter_records(data):
        valid = end
        if record.kind == "M" and not meta:
            meta = json.loads(record.data.decode("utf-8"))
        else:
            records.append(record)
    if not meta and valid == len(MAGIC) and len(data) > len(MAGIC):
        raise CassetteError(f"{path}: its first record is torn: nothing to replay")
    return Cassette(meta, records, complete=valid == len(data), valid_bytes=valid)


_BLOCK = re.compile(rb"#([1-9])")


def describe(message: bytes, limit: int = 160) -> str:
    """``message`` as text for people: binary blocks as ``#<N bytes>``, control characters
    escaped, cut at ``limit`` characters."""
    parts, pos = [], 0
    while pos < len(message):
        match = _BLOCK.search(message, pos)
        if match is None:
            parts.append(message[pos:].decode("ascii", "backslashreplace"))
            break
        digits = int(match.group(1))
        size = message[match.end() : match.end() + digits]
        if not size.isdigit():
            parts.append(message[pos : match.end()].decode("ascii", "backslashreplace"))
            pos = match.end()
            continue
        parts.append(message[pos : match.start()].decode("ascii", "backslashreplace"))
        parts.append(f"#<{int(size)} bytes>")
        pos = match.end() + digits + int(size)
    text = "".join(parts).replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 1] + "…"
