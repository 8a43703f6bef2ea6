"""The emulated chip on the wire: the chip's command table (``pcm_hil.protocols.chip``) served
by the SCPI core's ``ScpiDevice``, each row mapped onto the ``EmulatedChip``.

The configuration queries are answered from the chip's ``ChipInfo``, field by field as their
reply rows name them; the rest have a handler here, each checking its own preconditions
before touching the chip (the table has checked every argument before a handler runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from pcm_hil.emulator.chip import EmulatedChip
from pcm_hil.protocols.chip import (
    CHIP_BUSY,
    COMMANDS,
    CONFIGURATION,
    VIRTUAL_CLOCK_UNAVAILABLE,
    ChipInfo,
)
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.device import ScpiDevice
from pcm_hil.protocols.errors import (
    EXECUTION_ERROR,
    OUT_OF_MEMORY,
    ErrorEntry,
    ScpiError,
    entry,
)
from pcm_hil.protocols.limits import DEFAULT_LIMITS, ServingLimits
from pcm_hil.protocols.table import Command, CommandTable


class WireInterface(ScpiDevice):
    """The protocol side of an emulated chip. One client at a time (``exclusive``)."""

    exclusive = True

    def __init__(
        self,
        chip: EmulatedChip,
        table: CommandTable = COMMANDS,
        serving: ServingLimits = DEFAULT_LIMITS,
    ) -> None:
        self.chip = chip
        info = chip.info()  # the configuration is frozen
        # the batch a chip reports is one whose input block and reply fit the serving limits
        self.info: ChipInfo = replace(
            info, mvm_batch_max=min(info.mvm_batch_max or 1, _batch_that_fits(info, serving))
        )
        super().__init__(table, self.info.limits(), serving)

    def handler_for(self, command: Command) -> Callable[..., Any] | None:
        if command.handler in CONFIGURATION:
            return partial(self.info.answer, command.handler)
        return super().handler_for(command)

    @property
    def identity(self) -> Identity:
        return self.info.identity

    def busy_entry(self) -> ErrorEntry:
        return entry(self.table.errors, CHIP_BUSY, "another client controls this chip")

    def reset_settings(self) -> None:
        self.chip.reset_settings()

    def self_test(self) -> bool:
        g = self.chip.devices.g_prog
        shape = (self.chip.config.tiles, self.chip.config.devices_per_tile)
        return bool(np.isfinite(g).all()) and g.shape == shape

    # --- devices ----------------------------------------------------------------------------------

    def _do_pulse(
        self, tile: int, addresses: np.ndarray, amplitudes: np.ndarray, widths: np.ndarray
    ) -> None:
        self.chip.pulse(tile, addresses, amplitudes, widths)

    def _do_read_tile(self, tile: int) -> np.ndarray:
        self._check_reply(self.info.devices_per_tile)
        return self.chip.read_tile(tile)

    def _do_read_devices(self, tile: int, addresses: np.ndarray) -> np.ndarray:
        self._check_reply(addresses.size)
        return self.chip.read_devices(tile, addresses)

    def _check_reply(self, values: int) -> None:
        """Refuse, before it is made, a reply of ``values`` float32 beyond max_reply_bytes."""
        reply_bytes = values * 4
        if reply_bytes > self.serving.max_reply_bytes:
            raise ScpiError(
                OUT_OF_MEMORY,
                f"reply of {reply_bytes} bytes exceeds {self.serving.max_reply_bytes}",
            )

    def _do_mvm_forward(
        self, tile: int, row_start: int, row_count: int, column_start: int, column_count: int,
        inputs: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        return self._mvm(tile, (row_start, row_count, column_start, column_count), inputs, False)

    def _do_mvm_transposed(
        self, tile: int, row_start: int, row_count: int, column_start: int, column_count: int,
        inputs: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        return self._mvm(tile, (row_start, row_count, column_start, column_count), inputs, True)

    def _mvm(
        self, tile: int, window: tuple[int, int, int, int], inputs: np.ndarray, transposed: bool
    ) -> np.ndarray:
        """The window's product: inputs drive its rows (forward) or columns (transposed).
        A product whose reply would exceed ``max_reply_bytes`` is refused before it is made."""
        width, outputs = (window[3], window[1]) if transposed else (window[1], window[3])
        self._check_reply(inputs.size // width * outputs)
        return self.chip.mvm(tile, inputs.reshape(-1, width), transposed=transposed, window=window)

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


def _batch_that_fits(info: ChipInfo, serving: ServingLimits) -> int:
    """Most MVM input vectors whose input block fits one message and whose reply fits one
    reply, for the widest window of the chip (float32 both ways)."""
    widest = 4 * max(info.rows, info.columns)
    return max(1, min(serving.max_reply_bytes, serving.max_message_bytes - 64) // widest)
