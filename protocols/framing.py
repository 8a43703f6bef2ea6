"""Message framing: a byte stream into program (or response) messages, skipping block data.

A message ends at LF (``\\n``; a CR just before it is ignored) that is not inside a
definite-length block (IEEE 488.2 §7.7.6) and not inside a quoted string. Used by every
instrument this package serves and by the chip driver to frame replies.
"""

from __future__ import annotations

import re

from pcm_hil.protocols.blocks import MAX_BLOCK_BYTES, IncompleteBlock, parse_header
from pcm_hil.protocols.errors import INPUT_BUFFER_OVERRUN, TOO_MUCH_DATA, ScpiError

#: Longest run of non-block bytes accepted in one message (headers, numbers, separators).
MAX_TEXT_BYTES = 4096

_SPECIAL = re.compile(rb"[\n#\"']")


class MessageFramer:
    """Splits a byte stream into messages, skipping over block data.

    ``feed`` returns, in order, each complete message (without its terminator) and each
    framing error (a ``ScpiError``: oversized text -363, bad block header -161, oversized
    block -223), after which the rest of that message is discarded up to the next LF.
    """

    def __init__(self, max_text: int = MAX_TEXT_BYTES, max_block: int = MAX_BLOCK_BYTES) -> None:
        self.max_text = max_text
        self.max_block = max_block
        self.reset()

    def reset(self) -> None:
        """Forget any partial message (a new connection, or a device clear)."""
        self._buf = bytearray()
        self._scan = 0
        self._block_end: int | None = None
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False

    @property
    def pending(self) -> bool:
        """True while part of a message is buffered."""
        return bool(self._buf)

    def bytes_needed(self) -> int | None:
        """Bytes still missing from the block being received, or None outside a block."""
        if self._block_end is None:
            return None
        return max(self._block_end - len(self._buf), 0)

    def feed(self, data: bytes) -> list[bytes | ScpiError]:
        self._buf += data
        out: list[bytes | ScpiError] = []
        buf = self._buf
        while True:
            if self._discarding:
                newline = buf.find(b"\n", self._scan)
                if newline < 0:
                    buf.clear()
                    self._scan = 0
                    return out
                self._start_next(newline + 1)
                continue
            if self._block_end is not None:
                if len(buf) < self._block_end:
                    return out
                self._scan = self._last_block_end = self._block_end
                self._block_end = None
            match = _SPECIAL.search(buf, self._scan)
            if match is None:
                self._scan = len(buf)
                if self._scan - self._block_bytes > self.max_text:
                    out.append(self._overrun())
                    continue
                return out
            pos = match.start()
            match = None  # a live match pins the bytearray and blocks resizing it
            if pos - self._block_bytes > self.max_text:
                out.append(self._overrun())
                continue
            char = buf[pos]
            if char == 0x0A:  # LF ends the message
                end = pos
                if end > self._last_block_end and end > 0 and buf[end - 1] == 0x0D:
                    end -= 1
                out.append(_copy_out(buf, end))
                self._start_next(pos + 1)
            elif char == 0x23:  # '#': a block if a digit follows
                if pos + 1 >= len(buf):
                    self._scan = pos
                    return out
                if not 0x30 <= buf[pos + 1] <= 0x39:
                    self._scan = pos + 1
                    continue
                try:
                    data_start, length = self._header(pos)
                except IncompleteBlock:
                    self._scan = pos
                    return out
                except ScpiError as error:
                    out.append(error)
                    self._discarding = True
                    self._scan = pos
                    continue
                if length < 0:  # '#0': the data runs to the next LF
                    self._scan = data_start
                    newline = buf.find(b"\n", data_start)
                    if (len(buf) if newline < 0 else newline) - data_start > self.max_block:
                        out.append(
                            ScpiError(TOO_MUCH_DATA, f"indefinite block exceeds {self.max_block}")
                        )
                        self._discarding = True
                        continue
                    if newline < 0:
                        return out
                    out.append(_copy_out(buf, newline))
                    self._start_next(newline + 1)
                else:
                    self._block_end = data_start + length
                    self._block_bytes += data_start + length - pos
            else:  # a quote: skip the string, which cannot span an LF
                close = buf.find(bytes([char]), pos + 1)
                newline = buf.find(b"\n", pos + 1)
                if close >= 0 and (newline < 0 or close < newline):
                    self._scan = close + 1
                elif newline >= 0:
                    self._scan = newline
                elif len(buf) - self._block_bytes > self.max_text:
                    out.append(self._overrun())
                else:
                    self._scan = pos
                    return out

    def _header(self, pos: int) -> tuple[int, int]:
        return _parse_header_limited(self._buf, pos, self.max_block)

    def _overrun(self) -> ScpiError:
        self._discarding = True
        return ScpiError(INPUT_BUFFER_OVERRUN, f"message text longer than {self.max_text} bytes")

    def _start_next(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._scan = 0
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False


def _copy_out(buf: bytearray, end: int) -> bytes:
    """``bytes(buf[:end])`` in one copy: the slice would be a second, short-lived buffer as
    large as the message, and for block replies that churns fresh pages on every read."""
    with memoryview(buf) as view:
        return bytes(view[:end])


def _parse_header_limited(buf: bytes | bytearray, pos: int, max_block: int) -> tuple[int, int]:
    data_start, length = parse_header(buf, pos)
    if length > max_block:
        raise ScpiError(TOO_MUCH_DATA, f"block of {length} bytes exceeds {max_block}")
    return data_start, length
