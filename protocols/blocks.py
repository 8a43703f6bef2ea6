"""IEEE 488.2 arbitrary block data (§7.7.6 and §8.7.9): pure encode and decode functions.

Definite form: ``#`` + one digit ``n`` (1…9) + ``n`` decimal digits giving the byte count +
the bytes. Indefinite form: ``#0`` + bytes up to the message terminator. Arrays travel
little-endian; the dtype of each argument and reply is given by the command table.
"""

from __future__ import annotations

import numpy as np

from pcm_hil.protocols.errors import BLOCK_DATA_ERROR, INVALID_BLOCK_DATA, TOO_MUCH_DATA, ScpiError

#: Largest block the chip accepts or sends, in bytes (a whole 64×256×256 chip of float32 is
#: 16 MiB; addresses and amplitudes for it are no larger).
MAX_BLOCK_BYTES = 64 * 1024 * 1024


def block_header(length: int) -> bytes:
    """The header of a definite-length block of ``length`` bytes: ``#``, n, n digits."""
    size = str(length)
    if len(size) > 9:
        raise ValueError("block too large for a definite-length header")
    return b"#" + str(len(size)).encode() + size.encode()


def encode_block(data: bytes | bytearray | memoryview) -> bytes:
    """The definite-length block carrying ``data``."""
    return b"".join((block_header(memoryview(data).nbytes), data))


def encode_array(array: np.ndarray, dtype: str) -> bytes:
    """The block carrying ``array`` flattened, converted to the little-endian ``dtype``."""
    contiguous = np.ascontiguousarray(array, dtype=np.dtype(dtype)).reshape(-1)
    return encode_block(contiguous.view(np.uint8).data)  # one copy, into the block itself


def parse_header(buffer: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Parse the block header that begins at ``buffer[start]`` (which must be ``#``).

    Returns ``(data_start, length)``; ``length`` is -1 for the indefinite ``#0`` form.
    Raises ``IncompleteBlock`` when the buffer ends inside the header and ``ScpiError``
    (-161, -223) when the header is malformed or announces more than MAX_BLOCK_BYTES.
    """
    view = buffer  # indexed directly: a memoryview here would pin a caller's bytearray
    if start >= len(view):
        raise IncompleteBlock(start + 2)
    if view[start] != ord("#"):
        raise ScpiError(INVALID_BLOCK_DATA, "block does not start with '#'")
    if start + 1 >= len(view):
        raise IncompleteBlock(start + 2)
    digit = view[start + 1]
    if not (ord("0") <= digit <= ord("9")):
        raise ScpiError(INVALID_BLOCK_DATA, "block header digit is not 0-9")
    ndigits = digit - ord("0")
    if ndigits == 0:
        return start + 2, -1
    end = start + 2 + ndigits
    if end > len(view):
        received = bytes(view[start + 2 :])
        if received and not received.isdigit():  # reject at once: do not wait for more
            raise ScpiError(INVALID_BLOCK_DATA, f"block length {received!r} is not decimal")
        raise IncompleteBlock(end)
    digits = bytes(view[start + 2 : end])
    if not digits.isdigit():
        raise ScpiError(INVALID_BLOCK_DATA, f"block length {digits!r} is not decimal")
    length = int(digits)
    if length > MAX_BLOCK_BYTES:
        raise ScpiError(TOO_MUCH_DATA, f"block of {length} bytes exceeds {MAX_BLOCK_BYTES}")
    return end, length


class IncompleteBlock(Exception):
    """The buffer ends before the block does; ``needed`` is the total length required."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"incomplete block: {needed} bytes needed")
        self.needed = needed


def decode_block(buffer: bytes | bytearray, start: int = 0) -> tuple[bytes, int]:
    """Decode the block at ``buffer[start]``; returns ``(data, end)``.

    For the indefinite ``#0`` form the data runs to the end of ``buffer`` less one trailing
    newline, if there is one.
    """
    data_start, length = parse_header(buffer, start)
    view = buffer
    if length < 0:
        stop = len(view)
        if stop > data_start and view[stop - 1] == ord("\n"):
            stop -= 1
        return bytes(view[data_start:stop]), len(view)
    end = data_start + length
    if end > len(view):
        raise IncompleteBlock(end)
    return bytes(view[data_start:end]), end


def decode_array(data: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """The 1-D array of little-endian ``dtype`` carried in a block's ``data``."""
    dt = np.dtype(dtype)
    if len(data) % dt.itemsize:
        raise ScpiError(
            BLOCK_DATA_ERROR,
            f"block of {len(data)} bytes is not a whole number of {dt.itemsize}-byte {dt.name}",
        )
    return np.frombuffer(data, dtype=dt)
