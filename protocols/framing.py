"""Message framing: a byte stream into program (or response) messages, skipping block data.

A message ends at LF (``\\n``; a CR just before it is ignored) that is not inside a
definite-length block (IEEE 488.2 §7.7.6) and not inside a quoted string. Used by every
instrument this package serves and by the chip driver to frame replies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from pcm_hil.protocols.blocks import MAX_BLOCK_BYTES, IncompleteBlock, parse_header
from pcm_hil.protocols.errors import INPUT_BUFFER_OVERRUN, TOO_MUCH_DATA, ScpiError

#: Longest run of non-block bytes accepted in one message (headers, numbers, separators).
MAX_TEXT_BYTES = 4096

_SPECIAL = re.compile(rb"[\n;#\"']")


class MessageFramer:
    """Splits a byte stream into messages, skipping over block data.

    ``feed`` returns (``messages`` yields, lazily), in order, each complete message (without
    its terminator) and each framing error (a ``ScpiError``: oversized text -363, bad block
    header -161, blocks beyond ``max_block`` -223), after which the rest of that message is
    discarded up to the next LF — a block it announced is skipped first, unstored.

    ``block_header(header)``, when given, says whether the message unit whose header is
    ``header`` (bytes as written) may carry a block: ``#<digit>`` starts a block only at the
    start of an argument of such a unit. Elsewhere ``#`` is text, so a malformed line costs
    that line and nothing after it. Without it (framing replies) a block may start anywhere.
    """

    def __init__(
        self,
        max_text: int = MAX_TEXT_BYTES,
        max_block: int = MAX_BLOCK_BYTES,
        block_header: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.max_text = max_text
        self.max_block = max_block
        """Block bytes (headers included) of one message, all its blocks together."""
        self.block_header = block_header
        self.reset()

    def reset(self) -> None:
        """Forget any partial message (a new connection, or a device clear)."""
        self._buf = bytearray()
        self._scan = 0
        self._block_end: int | None = None
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False
        self._skip = 0  # bytes of an oversized block still to drop
        self._indefinite: int | None = None  # where the data of a '#0' block begins
        self._unit_start = 0
        self._unit_blocks: bool | None = None  # may this unit carry blocks (None: not asked)

    @property
    def pending(self) -> bool:
        """True while part of a message is buffered (or being skipped)."""
        return bool(self._buf) or self._skip > 0 or self._discarding

    def bytes_needed(self) -> int | None:
        """Bytes still missing from the block being received, or None outside a block."""
        if self._block_end is None:
            return None
        return max(self._block_end - len(self._buf), 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | ScpiError]:
        """Every message and error that ``data`` completes, as a list."""
        return list(self.messages(data))

    def messages(self, data: bytes | bytearray | memoryview) -> Iterator[bytes | ScpiError]:
        """Take ``data``; yield each message and error it completes, one at a time (a caller
        can answer each before the next is cut out; finish iterating before feeding more)."""
        self._buf += data
        buf = self._buf
        while True:
            if self._skip:
                dropped = min(self._skip, len(buf))
                del buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return
            if self._discarding:
                newline = buf.find(b"\n", self._scan)
                if newline < 0:
                    buf.clear()
                    self._scan = 0
                    return
                self._start_next(newline + 1)
                continue
            if self._block_end is not None:
                if len(buf) < self._block_end:
                    return
                self._scan = self._last_block_end = self._block_end
                self._block_end = None
            if self._indefinite is not None:  # inside '#0' data: only an LF ends it
                newline = buf.find(b"\n", self._scan)
                end = len(buf) if newline < 0 else newline
                if self._block_bytes + end - self._indefinite > self.max_block:
                    self._indefinite, self._scan, self._discarding = None, end, True
                    yield ScpiError(
                        TOO_MUCH_DATA, f"indefinite block exceeds {self.max_block} bytes"
                    )
                    continue
                if newline < 0:
                    self._scan = end
                    return
                message = _copy_out(buf, newline)
                self._start_next(newline + 1)
                yield message
                continue
            match = _SPECIAL.search(buf, self._scan)
            if match is None:
                self._scan = len(buf)
                if self._scan - self._block_bytes > self.max_text:
                    yield self._overrun()
                    continue
                return
            pos = match.start()
            match = None  # a live match pins the bytearray and blocks resizing it
            if pos - self._block_bytes > self.max_text:
                yield self._overrun()
                continue
            char = buf[pos]
            if char == 0x0A:  # LF ends the message
                end = pos
                if end > self._last_block_end and end > 0 and buf[end - 1] == 0x0D:
                    end -= 1
                message = _copy_out(buf, end)
                self._start_next(pos + 1)
                yield message
            elif char == 0x3B:  # ';' ends a message unit
                self._unit_start = self._scan = pos + 1
                self._unit_blocks = None
            elif char == 0x23:  # '#': a block if a digit follows where a block may be
                if pos + 1 >= len(buf):
                    self._scan = pos
                    return
                if not 0x30 <= buf[pos + 1] <= 0x39 or not self._block_allowed(pos):
                    self._scan = pos + 1
                    continue
                try:
                    data_start, length = parse_header(buf, pos)
                except IncompleteBlock:
                    self._scan = pos
                    return
                except ScpiError as error:
                    self._discarding = True
                    self._scan = pos
                    yield error
                    continue
                if length < 0:  # '#0': the data runs to the next LF, whatever it holds
                    self._indefinite = self._scan = data_start
                    continue
                elif self._block_bytes + data_start + length - pos > self.max_block:
                    del buf[:data_start]  # the message is lost; its block is skipped unstored
                    self._skip, self._scan, self._discarding = length, 0, True
                    yield ScpiError(
                        TOO_MUCH_DATA,
                        f"a block of {length} bytes: the blocks of one message may hold "
                        f"{self.max_block}",
                    )
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
                    yield self._overrun()
                else:
                    self._scan = pos
                    return

    def _block_allowed(self, pos: int) -> bool:
        """Whether the ``#`` at ``pos`` may start a block: at the start of an argument of a
        unit whose header takes one, or right after a block of it (always, without
        ``block_header``)."""
        if self.block_header is None:
            return True
        if pos == self._last_block_end and self._unit_blocks:
            return True  # right after a block of this unit: malformed, but the same line
        buf = self._buf
        before = pos - 1
        while before >= self._unit_start and buf[before] in b" \t\r":
            before -= 1
        if before < self._unit_start:
            return False  # '#' where the header should be
        if buf[before] != 0x2C:  # not after ',': the first argument, right after the header?
            if before == pos - 1 or len(bytes(buf[self._unit_start : before + 1]).split()) != 1:
                return False
        if self._unit_blocks is None:
            words = bytes(buf[self._unit_start : pos]).split(None, 1)
            self._unit_blocks = bool(words) and self.block_header(words[0])
        return self._unit_blocks

    def _overrun(self) -> ScpiError:
        self._discarding = True
        return ScpiError(INPUT_BUFFER_OVERRUN, f"message text longer than {self.max_text} bytes")

    def _start_next(self, consumed: int) -> None:
        del self._buf[:consumed]
        self._scan = 0
        self._block_bytes = 0
        self._last_block_end = 0
        self._discarding = False
        self._unit_start = 0
        self._unit_blocks = None
        self._indefinite = None


def _copy_out(buf: bytearray, end: int) -> bytes:
    """``bytes(buf[:end])`` in one copy: the slice would be a second, short-lived buffer as
    large as the message, and for block replies that churns fresh pages on every read."""
    with memoryview(buf) as view:
        return bytes(view[:end])
