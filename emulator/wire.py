"""The chip's wire interface: program messages in, response messages out.

Maps every row of the command table onto a handler here (checked at construction: a row
without a handler is a startup error), keeps the IEEE 488.2 status registers and the SCPI
error queue, and guarantees that a rejected command changes nothing: all arguments are parsed
and checked by the table before a handler runs, and handlers check their own preconditions
before touching the chip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from pcm_hil.emulator.chip import EmulatedChip
from pcm_hil.protocols import COMMANDS, PROTOCOL_VERSION, SCPI_VERSION
from pcm_hil.protocols.codec import MessageFramer, format_reply, parse_message
from pcm_hil.protocols.errors import (
    ESR_OPERATION_COMPLETE,
    EXECUTION_ERROR,
    VIRTUAL_CLOCK_UNAVAILABLE,
    ErrorQueue,
    ScpiError,
    esr_bit,
)
from pcm_hil.protocols.table import CommandTable

STB_ERROR_AVAILABLE = 0x04
STB_EVENT_SUMMARY = 0x20


class WireInterface:
    """The protocol side of an emulated chip. Thread-safe: one message at a time."""

    def __init__(self, chip: EmulatedChip, table: CommandTable = COMMANDS) -> None:
        self.chip = chip
        self.table = table
        self.errors = ErrorQueue()
        self.esr = 0
        self.ese = 0
        self.lock = threading.RLock()
        self._limits = chip.limits()  # the configuration is frozen
        self._handlers: dict[str, Callable[..., Any]] = {}
        for command in table:
            handler = getattr(self, f"_do_{command.handler}", None)
            if handler is None:
                raise TypeError(f"no handler for {command.header} ({command.handler})")
            self._handlers[command.handler] = handler

    def new_framer(self) -> MessageFramer:
        """A framer for one connection's byte stream."""
        return MessageFramer()

    def feed(self, framer: MessageFramer, data: bytes) -> bytes:
        """Process the bytes a connection received; return what to send back (maybe b"")."""
        out = []
        for item in framer.feed(data):
            if isinstance(item, ScpiError):
                with self.lock:
                    self.push_error(item)
            else:
                reply = self.execute(item)
                if reply is not None:
                    out.append(reply)
        return b"".join(out)

    def execute(self, message: bytes) -> bytes | None:
        """Execute one program message; the response message (with LF) or None."""
        replies: list[bytes] = []
        with self.lock:
            try:
                for parsed in parse_message(message, self.table, self._limits):
                    result = self._handlers[parsed.command.handler](**parsed.values)
                    if parsed.command.is_query:
                        replies.append(format_reply(parsed.command.reply, result))
            except ScpiError as error:
                self.push_error(error)
            except Exception as error:  # a handler bug must not kill the connection
                self.push_error(
                    ScpiError(EXECUTION_ERROR, f"internal error: {type(error).__name__}")
                )
        if not replies:
            return None
        parts = [replies[0]]
        for reply in replies[1:]:
            parts += (b";", reply)
        parts.append(b"\n")
        return b"".join(parts)  # one copy of a block reply, not two

    def push_error(self, error: ScpiError) -> None:
        self.errors.push(error.code, error.detail)
        self.esr |= esr_bit(error.code)

    # --- IEEE 488.2 common commands ------------------------------------------------------------

    def _do_identify(self) -> str:
        return ",".join(self.chip.identity)

    def _do_reset(self) -> None:
        self.chip.reset_settings()
        self.ese = 0

    def _do_clear_status(self) -> None:
        self.errors.clear()
        self.esr = 0

    def _do_operation_complete(self) -> None:
        self.esr |= ESR_OPERATION_COMPLETE

    def _do_operation_complete_query(self) -> int:
        return 1

    def _do_wait_to_continue(self) -> None:
        return None

    def _do_event_status_query(self) -> int:
        value, self.esr = self.esr, 0
        return value

    def _do_event_status_enable(self, mask: int) -> None:
        self.ese = mask

    def _do_event_status_enable_query(self) -> int:
        return self.ese

    def _do_status_byte_query(self) -> int:
        status = STB_ERROR_AVAILABLE if len(self.errors) else 0
        if self.esr & self.ese:
            status |= STB_EVENT_SUMMARY
        return status

    def _do_self_test_query(self) -> int:
        g = self.chip.devices.g_prog
        return (
            0
            if np.isfinite(g).all()
            and g.shape == (self.chip.config.tiles, self.chip.config.devices_per_tile)
            else 1
        )

    # --- system -----------------------------------------------------------------------------------

    def _do_error_next(self):
        return self.errors.pop()

    def _do_error_count(self) -> int:
        return len(self.errors)

    def _do_scpi_version(self) -> str:
        return SCPI_VERSION

    def _do_protocol_version(self) -> str:
        return PROTOCOL_VERSION

    # --- configuration ------------------------------------------------------------------------------

    def _do_geometry(self) -> tuple[int, int, int]:
        c = self.chip.config
        return (c.tiles, c.rows, c.columns)

    def _do_g_max(self) -> float:
        return self.chip.config.model.g_max_uS

    def _do_pulse_limits(self) -> tuple[float, float, float]:
        c = self.chip.config
        return (c.pulse_amplitude_max_uA, c.pulse_width_min_ns, c.pulse_width_max_ns)

    def _do_temperature_limits(self) -> tuple[float, float]:
        return (self.chip.config.temperature_min_K, self.chip.config.temperature_max_K)

    def _do_read_voltage(self) -> float:
        return self.chip.config.read_voltage_V

    def _do_mvm_resolution(self) -> tuple[int, int]:
        return (self.chip.config.dac_bits, self.chip.config.adc_bits)

    def _do_mvm_range(self) -> tuple[float, float]:
        return (self.chip.converters.input_max_V, self.chip.converters.output_max_uA)

    # --- devices ----------------------------------------------------------------------------------------

    def _do_pulse(
        self, tile: int, addresses: np.ndarray, amplitudes: np.ndarray, widths: np.ndarray
    ) -> None:
        self.chip.pulse(tile, addresses, amplitudes, widths)

    def _do_read_tile(self, tile: int) -> np.ndarray:
        return self.chip.read_tile(tile)

    def _do_read_devices(self, tile: int, addresses: np.ndarray) -> np.ndarray:
        return self.chip.read_devices(tile, addresses)

    def _do_mvm_forward(self, tile, row_start, row_count, column_start, column_count, inputs):
        window = (row_start, row_count, column_start, column_count)
        return self.chip.mvm(tile, inputs.reshape(-1, row_count), window=window)

    def _do_mvm_transposed(self, tile, row_start, row_count, column_start, column_count, inputs):
        window = (row_start, row_count, column_start, column_count)
        return self.chip.mvm(tile, inputs.reshape(-1, column_count), transposed=True, window=window)

    def _do_temperature(self) -> float:
        return self.chip.temperature_K

    def _do_set_temperature(self, kelvin: float) -> None:
        self.chip.set_temperature(kelvin)

    def _do_clock_time(self) -> float:
        return self.chip.now()

    def _do_clock_mode(self) -> str:
        return self.chip.clock.mode

    def _do_clock_advance(self, seconds: float) -> None:
        if self.chip.config.real_time:
            raise ScpiError(VIRTUAL_CLOCK_UNAVAILABLE, "the chip runs on a real-time clock")
        try:
            self.chip.advance(seconds)
        except (ValueError, NotImplementedError) as error:
            raise ScpiError(EXECUTION_ERROR, str(error)) from error
