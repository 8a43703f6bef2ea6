"""The embedded emulator as a transport: the same bytes as on a wire, with no wire.

The emulator registers it with the drivers under the resource ``emulator`` (entry point
``pcm_hil.transports``: ``open_emulator``), so ``PcmChip.open("emulator?seed=3")`` reaches a
fresh in-process chip while the drivers import nothing of the emulator.
"""

from __future__ import annotations

from collections import deque

from pcm_hil.emulator.faults import FaultEvent, FaultPlan
from pcm_hil.emulator.resource import EmulatorOptions
from pcm_hil.emulator.wire import WireInterface
from pcm_hil.protocols.transport import ChipDisconnectedError, ChipTimeoutError, CopyInto


def open_emulator(resource: str, timeout_s: float = 10.0) -> InProcessTransport:
    """The transport of an ``emulator?…`` resource: a fresh emulated chip, in process.
    ``timeout_s`` is unused: nothing here waits."""
    options = EmulatorOptions.parse(resource)
    return InProcessTransport(resource.strip(), WireInterface(options.make_chip()))


class InProcessTransport(CopyInto):
    """The embedded emulator: the same bytes as on a wire, with no wire.

    With a fault plan (``pcm_hil.emulator.faults.FaultPlan``) the transport is one faulty
    connection: its device faults are applied to the chip now, and its connection faults as
    on TCP, except that nothing waits. A delayed reply is held back: the read that would get
    it raises ``ChipTimeoutError``, after which the reply is there for the next read, as a late
    reply would be. After a drop (``drop_after``, ``drop_mid_block``, ``reset_after``) the
    replies sent before it can still be read; then reads, and every write, raise
    ``ChipDisconnectedError``.
    """

    def __init__(self, resource: str, wire: WireInterface, faults: FaultPlan | None = None) -> None:
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

    def reopen(self) -> InProcessTransport:
        """A new connection to the same emulated chip (its fault plan counts anew)."""
        return InProcessTransport(self.resource, self.wire, self.faults)

    @property
    def fault_events(self) -> list[FaultEvent]:
        """The faults that fired on this connection, in order."""
        return [] if self._session is None else list(self._session.events)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ChipDisconnectedError("in-process transport is closed")
        if self._dropped:
            raise ChipDisconnectedError(f"{self.resource}: the chip closed the connection")
        if self._session is None:
            for piece in self.wire.replies(self._framer, data):  # no joined copy of them
                self._pending += piece
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
