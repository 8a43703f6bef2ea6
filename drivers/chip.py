"""The PCM test-chip driver: numpy in, numpy out, over any transport.

Conductance in µS, current in µA, pulse width in ns, time in s, voltage in V, temperature K.
Every command is encoded from the protocol's command table, after the table's own range and
length checks against the limits the chip reported — so an out-of-limit pulse raises
``PulseLimitError`` and never reaches the wire. After any command that can fail the driver
reads the error queue in the same round trip and raises ``ChipError`` with the chip's code.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pcm_hil.drivers.errors import (
    ChipBusyError,
    ChipError,
    ChipTimeoutError,
    ProtocolVersionError,
    TransportError,
    chip_error,
)
from pcm_hil.drivers.raw import RawAccess
from pcm_hil.drivers.transports import Transport, open_transport
from pcm_hil.drivers.transports.recording import RecordingTransport
from pcm_hil.protocols.chip import (
    ADDED_IN,
    COMMANDS,
    CONFIGURATION,
    PROTOCOL_VERSION,
    ChipInfo,
)
from pcm_hil.protocols.codec import encode_command, is_error_entry, parse_reply, split_units
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.errors import ErrorEntry, ScpiError
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.table import Command

_ERROR_QUERY = COMMANDS.by_handler("error_next").short_form.encode()


def _recording_reopen(
    recording: RecordingTransport, reopen: Callable[[], Transport]
) -> Callable[[], Transport]:
    """A reconnect that goes on recording into the same cassette."""
    return lambda: recording.resume_on(reopen())


class PcmChip(RawAccess):
    """A PCM test chip (or its emulator) behind a transport. Use ``PcmChip.open(resource)``.
    Besides its methods, raw SCPI: ``write``, ``query``, ``query_block`` (``drivers.raw``)."""

    def __init__(self, transport: Transport, *, check_version: bool = True) -> None:
        self.transport = transport
        self.resource = transport.resource
        self._framer = MessageFramer(max_text=1 << 20)
        self._messages: deque[bytes] = deque()
        self._closed = False
        self._reopen: Callable[[], Transport] | None = None
        self.config = self._handshake(check_version)
        self._limits = self.config.limits()

    @classmethod
    def open(
        cls,
        resource: str = "emulator",
        *,
        timeout_s: float = 10.0,
        visa_library: str | None = None,
        check_version: bool = True,
        record: str | os.PathLike[str] | None = None,
    ) -> PcmChip:
        """Open a chip by resource string: ``emulator`` (in-process), a VISA resource, a
        serial port, or ``replay:PATH`` (a recorded session played back); ``visa_library`` as
        in ``drivers.transports.open_transport``. ``record``: a new cassette file to record
        every byte exchanged into (``drivers.transports.recording``; FileExistsError if it
        exists). Raises ``ProtocolVersionError`` for an incompatible chip."""
        transport = open_transport(resource, timeout_s, visa_library)
        # a transport that can open itself again (the in-process emulator: the same chip,
        # not a new one) says how; any other is opened anew from its resource
        reopen = getattr(transport, "reopen", None) or (
            lambda: open_transport(resource, timeout_s, visa_library)
        )
        if record is not None:
            try:
                recording = RecordingTransport.start(transport, record)
            except BaseException:
                transport.close()
                raise
            transport = recording
            reopen = _recording_reopen(recording, reopen)
        try:
            chip = cls(transport, check_version=check_version)
        except BaseException:
            transport.close()
            raise
        chip._reopen = reopen
        return chip

    def reconnect(self) -> None:
        """Open the connection again and resynchronize: forget any partial reply, clear the
        chip's status (*CLS) and check that it is the same chip (serial number and geometry)
        as before. Raises the transport's error if it cannot be reached, ``ChipError`` if a
        different chip answers."""
        if self._reopen is None:
            raise TransportError("this driver was not opened from a resource: cannot reconnect")
        try:
            self.transport.close()
        except Exception:  # the old connection is gone anyway
            pass
        self.transport = self._reopen()
        self._framer.reset()
        self._messages.clear()
        self._closed = False
        before = self.config
        self.config = self._handshake(check_version=True)
        if (
            self.config.identity.serial,
            self.config.tiles,
            self.config.rows,
            self.config.columns,
        ) != (
            before.identity.serial,
            before.tiles,
            before.rows,
            before.columns,
        ):
            raise TransportError(
                f"{self.resource}: a different chip answered after reconnecting ({self.config.identity.serial})"
            )
        self._limits = self.config.limits()

    def _handshake(self, check_version: bool) -> ChipInfo:
        """Identify the chip, clear its status and read what it reports of itself: every
        configuration query, matched to ``ChipInfo`` by its reply row's field names."""
        identity = self._identify()
        self._call("clear_status")
        version = self._call("protocol_version")
        if check_version and version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            raise ProtocolVersionError(
                f"{self.resource} speaks protocol {version}; this driver speaks {PROTOCOL_VERSION} "
                "(major versions must match): update pcm-hil or the chip firmware"
            )
        spoken = _version_tuple(version)
        replies = {
            handler: version if handler == "protocol_version" else self._call(handler)
            for handler in CONFIGURATION
            if spoken >= ADDED_IN.get(handler, (1, 0))
        }
        return ChipInfo.from_replies(identity, replies)

    def _identify(self) -> Identity:
        """*IDN?, read by hand: a busy TCP server answers any first query with error 105."""
        self.transport.write(COMMANDS.by_handler("identify").short_form.encode() + b"\n")
        message = self._read_message()
        entry = is_error_entry(message)
        if entry is not None:
            raise chip_error(entry.code, entry.detail, command="*IDN?")
        try:
            return Identity.parse(message.decode("ascii", "replace"))
        except ValueError:
            raise TransportError(
                f"{self.resource} answered *IDN? with {message[:80]!r}: not a PCM test chip"
            ) from None

    # --- the one path every command takes -----------------------------------------------------------

    def _call(self, handler: str, **values: Any) -> Any:
        """Encode, send, read the reply and the error queue, raise on any error."""
        if self._closed:
            raise TransportError("the driver is closed")
        command = COMMANDS.by_handler(handler)
        limits = getattr(self, "_limits", {})
        can_fail = bool(command.args) or not command.is_query
        try:
            message = encode_command(
                command,
                values,
                limits,
                terminator=b"\n" + _ERROR_QUERY + b"\n" if can_fail else b"\n",
            )
        except ScpiError as error:
            raise chip_error(
                error.code, error.detail, command=command.short_form, sent=False
            ) from None
        self.transport.write(message)
        result = None
        if command.reply.kind == "block" and not self._messages and not self._framer.pending:
            result = self._read_block(command)
        elif command.is_query:
            message = self._read_message()
            if command.reply.kind != "error":
                entry = is_error_entry(message)
                if entry is not None and can_fail:
                    self._raise(entry, command.short_form)
            units = split_units(message)
            result = parse_reply(command.reply, units[0])
        if can_fail:
            entry = parse_reply(COMMANDS.by_handler("error_next").reply, self._read_message())
            if entry.code != 0:
                self._raise(entry, command.short_form)
        return result

    def _raise(self, entry: ErrorEntry, command: str) -> None:
        """Drain the rest of the queue (so the next command starts clean) and raise."""
        others = self.errors()
        error = chip_error(entry.code, entry.detail, command=command)
        error.further = others
        raise error

    def _read_block(self, command: Command) -> np.ndarray:
        """A block reply read straight into its array: header, then the data by exact count
        into the array's own memory, then the LF. If the chip answers with an error entry
        instead (the query failed), raise it."""
        head = self.transport.read(2)
        if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
            line = head if head.endswith(b"\n") else head + self.transport.read(None)
            entry = is_error_entry(line.rstrip(b"\r\n"))
            if entry is None:
                raise TransportError(f"{self.resource}: expected a block, got {line[:60]!r}")
            self._raise(entry, command.short_form)
        length = int(self.transport.read(int(head[1:2])))
        dtype = np.dtype(command.reply.dtype)
        if length % dtype.itemsize:
            raise TransportError(f"{self.resource}: a {length}-byte block of {dtype.name}")
        array = np.empty(length // dtype.itemsize, dtype=dtype)
        self.transport.read_into(array.data.cast("B"))
        if self.transport.read(1) != b"\n":
            raise TransportError(f"{self.resource}: block reply not terminated by LF")
        return array

    def _read_message(self) -> bytes:
        while not self._messages:
            chunk = self.transport.read(self._framer.bytes_needed())
            for item in self._framer.feed(chunk):
                if isinstance(item, ScpiError):
                    raise TransportError(f"{self.resource}: malformed reply ({item})")
                self._messages.append(item)
        return self._messages.popleft()

    # --- identity, status, errors ---------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.config.identity

    def errors(self) -> list[ErrorEntry]:
        """Read and empty the chip's error queue."""
        entries = []
        for _ in range(64):
            entry = self._call("error_next")
            if entry.code == 0:
                break
            entries.append(entry)
        return entries

    def error_count(self) -> int:
        return self._call("error_count")

    def reset(self) -> None:
        """*RST: settings to defaults (device conductances are non-volatile)."""
        self._call("reset")

    def clear_status(self) -> None:
        """*CLS: empty the error queue and the event status register."""
        self._call("clear_status")

    def event_status(self) -> int:
        """*ESR?: read and clear the event status register."""
        return self._call("event_status_query")

    def set_event_status_enable(self, mask: int) -> None:
        self._call("event_status_enable", mask=mask)

    def event_status_enable(self) -> int:
        return self._call("event_status_enable_query")

    def status_byte(self) -> int:
        return self._call("status_byte_query")

    def operation_complete(self) -> bool:
        """*OPC?: True once all pending operations are done."""
        return self._call("operation_complete_query") == 1

    def set_operation_complete(self) -> None:
        """*OPC: set the operation-complete bit of the event status register."""
        self._call("operation_complete")

    def wait_to_continue(self) -> None:
        self._call("wait_to_continue")

    def self_test(self) -> bool:
        """*TST?: True when the chip passes."""
        return self._call("self_test_query") == 0

    def scpi_version(self) -> str:
        return self._call("scpi_version")

    # --- programming and reading --------------------------------------------------------------------

    def pulse(
        self, tile: int, addresses: ArrayLike, amplitude_uA: ArrayLike, width_ns: ArrayLike
    ) -> None:
        """Apply one pulse per device in one command. ``amplitude_uA`` and ``width_ns`` are
        arrays like ``addresses`` or scalars applied to all. Refused before sending if any
        pulse breaks the chip's safe limits (``PulseLimitError``)."""
        addresses = np.asarray(addresses)
        amplitude = np.atleast_1d(np.asarray(amplitude_uA, dtype=np.float32))
        width = np.atleast_1d(np.asarray(width_ns, dtype=np.float32))
        self._call(
            "pulse",
            tile=tile,
            addresses=addresses.ravel(),
            amplitudes=amplitude.ravel(),
            widths=width.ravel(),
        )

    def read_tile(self, tile: int) -> np.ndarray:
        """Conductances of a whole tile, (rows, columns) float32 µS."""
        values = self._call("read_tile", tile=tile)
        return values.reshape(self.config.rows, self.config.columns)

    def read(self, tile: int, addresses: ArrayLike) -> np.ndarray:
        """Conductances of the listed devices of a tile, float32 µS, in order."""
        return self._call("read_devices", tile=tile, addresses=np.asarray(addresses).ravel())

    def mvm(
        self,
        tile: int,
        inputs_V: ArrayLike,
        *,
        transposed: bool = False,
        row: int = 0,
        column: int = 0,
        rows: int | None = None,
        columns: int | None = None,
    ) -> np.ndarray:
        """Analog matrix-vector multiply on the window of ``rows`` × ``columns`` devices at
        (``row``, ``column``) of a tile (default: the rest of the tile from there).
        ``inputs_V``: (rows,) or (n, rows) forward, (columns,) or (n, columns) transposed.
        Returns µA: (columns,) / (n, columns) forward, (rows,) / (n, rows) transposed.
        A batch larger than the chip takes in one command (``MVM:BATCh?``) is sent as several,
        in order."""
        rows = self.config.rows - row if rows is None else rows
        columns = self.config.columns - column if columns is None else columns
        inputs = np.asarray(inputs_V, dtype=np.float32)
        width, outputs = (columns, rows) if transposed else (rows, columns)
        if inputs.shape[-1] != width:
            raise ValueError(f"inputs must have {width} values per vector, not {inputs.shape[-1]}")
        vectors = inputs.reshape(-1, width)
        batch = self.config.mvm_batch_max or len(vectors)  # the chip's most per command
        out = np.concatenate(
            [
                self._call(
                    "mvm_transposed" if transposed else "mvm_forward",
                    tile=tile,
                    row_start=row,
                    row_count=rows,
                    column_start=column,
                    column_count=columns,
                    inputs=vectors[first : first + batch].reshape(-1),
                )
                for first in range(0, max(len(vectors), 1), batch)
            ]
        )
        return out.reshape(outputs) if inputs.ndim == 1 else out.reshape(-1, outputs)

    # --- temperature and clock ---------------------------------------------------------------------

    def temperature(self) -> float:
        """Chip temperature, K."""
        return self._call("temperature")

    def set_temperature(self, kelvin: float) -> None:
        """Set the temperature setpoint, K (within the chip's limits)."""
        self._call("set_temperature", kelvin=kelvin)

    def time(self) -> float:
        """Seconds on the chip's clock."""
        return self._call("clock_time")

    def clock_mode(self) -> str:
        """``VIRT`` (emulator: time moves only by ``advance``) or ``REAL``."""
        return self._call("clock_mode")

    def advance(self, seconds: float) -> None:
        """Advance a virtual clock by ``seconds`` (error 104 on a real-time chip)."""
        self._call("clock_advance", seconds=seconds)

    # --- life cycle -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the transport; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self.transport.close()

    def __enter__(self) -> PcmChip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return f"<PcmChip {self.resource} {c.identity.model} {c.tiles}×{c.rows}×{c.columns}>"


__all__ = [
    "ChipBusyError",
    "ChipError",
    "ChipInfo",
    "ChipTimeoutError",
    "Identity",
    "PcmChip",
]


def _version_tuple(version: str) -> tuple[int, ...]:
    """(major, minor) of a protocol version as the chip reports it ("1.1"); (0,) if unreadable."""
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return (0,)
