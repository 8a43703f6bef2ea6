"""How a run store fails: ``StoreError``, one line naming the file and what is wrong; the
checks made on a store's file before SQLite opens it (so a failed open leaves no side files
and the file as it was); SQLite's own messages in the lab's words."""

from __future__ import annotations

import functools
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from pcm_hil.protocols.transport import PcmHilError


class StoreError(PcmHilError, RuntimeError):
    """The run store cannot be opened, read or written: the message is one line that names
    the file and what is wrong with it."""


class UnknownRunError(StoreError, KeyError):
    """No run of that id in the store."""

    def __str__(self) -> str:  # as given, not quoted as a KeyError's key is
        return str(self.args[0]) if self.args else ""


#: What SQLite's own messages mean for a run store (the message itself follows in brackets).
_SQLITE_MEANINGS = {
    "file is not a database": "not a pcm-hil run store",
    "database disk image is malformed": "the run store is damaged",
    "attempt to write a readonly database": "the run store is read-only",
    "database or disk is full": "no room left to write the run store",
    "unable to open database file": "cannot open the run store",
    "database is locked": "the run store is locked by another process",
    "disk I/O error": "cannot read or write the run store",
}


def store_error(path: Path, error: BaseException) -> StoreError:
    """``error`` (an ``sqlite3.Error`` or ``OSError`` met opening or using the store at
    ``path``) as a one-line ``StoreError`` naming the file."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, OSError):
        return StoreError(f"{path}: {(error.strerror or str(error)).lower()}")
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    meaning = next((m for key, m in _SQLITE_MEANINGS.items() if text.startswith(key)), None)
    return StoreError(f"{path}: {meaning or 'run store error'} ({text})")


_Method = TypeVar("_Method", bound=Callable[..., Any])


def guarded(method: _Method) -> _Method:
    """A ``RunStore`` method whose SQLite and OS errors come out as ``StoreError``."""

    @functools.wraps(method)
    def guarded_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as error:
            raise store_error(self.path, error) from error

    return cast(_Method, guarded_method)


#: The first bytes of every SQLite database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_file(path: Path, readonly: bool, default: Path) -> bool:
    """Whether a store file is at ``path``; refuses what cannot be one — a folder, a device,
    a file that is not an SQLite database, a store cut short — before SQLite opens it (and
    makes its side files beside it), and a missing folder but the one of the ``default``
    store (made here to write in it). An empty file is an empty store."""
    try:
        status = path.stat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            if path.absolute() != default.absolute():
                raise StoreError(f"{path}: the directory {path.parent} does not exist") from None
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
        return False
    if stat.S_ISDIR(status.st_mode):
        raise StoreError(f"{path}: is a directory, not a run store file")
    if not stat.S_ISREG(status.st_mode):
        raise StoreError(f"{path}: not a regular file, so not a run store")
    with open(path, "rb") as f:
        header = f.read(100)
    if not header:
        return True
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path}: not a pcm-hil run store (file is not a database)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise StoreError(f"{path}: the run store is damaged (page size {page_size} in its header)")
    # the size the header records is valid when its change counter matches (SQLite 3.7+);
    # with a write-ahead log beside it the file may legitimately lag behind
    pages = int.from_bytes(header[28:32], "big")
    wal = Path(f"{path}-wal")
    if pages and header[24:28] == header[92:96] and not (wal.exists() and wal.stat().st_size):
        if status.st_size < pages * page_size:
            raise StoreError(
                f"{path}: the run store is truncated ({status.st_size} of its "
                f"{pages * page_size} bytes)"
            )
    return True
