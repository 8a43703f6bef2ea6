"""The chip as a QCoDeS instrument (the ``qcodes`` extra): ``PcmChipInstrument`` goes into a
lab's ``Station`` and ``Measurement`` like any other, so pcm-hil's measurements land in its
QCoDeS database.

Parameters (units as QCoDeS shows them):

- ``temperature`` (K, settable within the chip's limits) and ``time`` (s, the chip's clock);
- ``tile`` (which tile ``conductance`` reads; settable), with ``row`` and ``column`` its
  setpoints, and ``conductance`` (µS): every device of that tile, rows × columns, one read;
- ``device`` and ``programmed_conductance`` (µS): the devices the last ``program_and_verify``
  programmed, one read of them, for a drift measurement as a QCoDeS dataset;
- ``after_programming`` (s): the chip's time since that programming ended.

Methods: ``program_and_verify`` and ``measure_drift`` are pcm-hil's procedures on the chip
(their results as pcm-hil returns them), ``wait(s)`` lets time pass on the chip's clock (at
once on a virtual clock), ``record_drift(times_s, experiment)`` runs a drift measurement as a
QCoDeS ``Measurement`` and returns its dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from qcodes.instrument import Instrument
from qcodes.parameters import ParameterWithSetpoints
from qcodes.validators import Arrays, Ints, Numbers

from pcm_hil.drivers import PcmChip
from pcm_hil.procedures.drift import DriftResult, measure_drift
from pcm_hil.procedures.program import ProgramResult, program_and_verify
from pcm_hil.targets.clock import ChipClock


class PcmChipInstrument(Instrument):
    """A PCM test chip (or its emulator) as a QCoDeS instrument: ``resource`` as for
    ``PcmChip.open`` (``record``: a cassette to record the session into), or an open ``chip``
    to wrap (closed with the instrument)."""

    def __init__(
        self,
        name: str,
        resource: str = "emulator",
        *,
        timeout_s: float = 10.0,
        record: str | None = None,
        chip: PcmChip | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        self.chip = (
            chip if chip is not None else PcmChip.open(resource, timeout_s=timeout_s, record=record)
        )
        self.clock = ChipClock(self.chip)
        config = self.chip.config
        self._programmed: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0, int))
        self._programmed_at: float | None = None
        self.add_parameter(
            "temperature",
            label="Chip temperature",
            unit="K",
            get_cmd=self.chip.temperature,
            set_cmd=self.chip.set_temperature,
            vals=Numbers(
                config.temperature_min_K if config.temperature_min_K is not None else 0.0,
                config.temperature_max_K if config.temperature_max_K is not None else 1000.0,
            ),
        )
        self.add_parameter(
            "time", label="Chip clock", unit="s", get_cmd=self.chip.time, set_cmd=False
        )
        self.add_parameter(
            "tile",
            label="Tile read by conductance",
            initial_value=0,
            get_cmd=None,
            set_cmd=None,
            vals=Ints(0, config.tiles - 1),
        )
        self.add_parameter(
            "row",
            label="Row",
            get_cmd=lambda: np.arange(config.rows),
            vals=Arrays(shape=(config.rows,)),
        )
        self.add_parameter(
            "column",
            label="Column",
            get_cmd=lambda: np.arange(config.columns),
            vals=Arrays(shape=(config.columns,)),
        )
        self.add_parameter(
            "conductance",
            label="Conductance",
            unit="µS",
            parameter_class=ParameterWithSetpoints,
            setpoints=(self.row, self.column),
            get_cmd=lambda: self.chip.read_tile(self.tile()).astype(np.float64),
            vals=Arrays(shape=(config.rows, config.columns)),
        )
        self.add_parameter(
            "device",
            label="Programmed device",
            get_cmd=lambda: np.arange(self._programmed[1].size),
            vals=Arrays(shape=(self._programmed_count,)),
        )
        self.add_parameter(
            "programmed_conductance",
            label="Conductance of the programmed devices",
            unit="µS",
            parameter_class=ParameterWithSetpoints,
            setpoints=(self.device,),
            get_cmd=self._read_programmed,
            vals=Arrays(shape=(self._programmed_count,)),
        )
        self.add_parameter(
            "after_programming",
            label="Time after programming",
            unit="s",
            get_cmd=self._after_programming,
            set_cmd=False,
        )
        self.connect_message()

    def get_idn(self) -> dict[str, str | None]:
        identity = self.chip.identity
        return {
            "vendor": identity.manufacturer,
            "model": identity.model,
            "serial": identity.serial,
            "firmware": identity.firmware,
        }

    # --- pcm-hil's procedures -------------------------------------------------------------------

    def program_and_verify(
        self,
        addresses: np.ndarray,
        targets_uS: np.ndarray,
        tile: int | np.ndarray = 0,
        **options: Any,
    ) -> ProgramResult:
        """Program-and-verify the devices (``pcm_hil.program_and_verify``, its ``options``);
        they become the devices of ``programmed_conductance``."""
        result = program_and_verify(self.chip, tile, addresses, targets_uS, **options)
        self._programmed = (result.tile.copy(), result.address.copy())
        self._programmed_at = self.chip.time()
        return result

    def measure_drift(
        self,
        addresses: np.ndarray,
        targets_uS: np.ndarray,
        times_s: Iterable[float],
        tile: int = 0,
        **options: Any,
    ) -> DriftResult:
        """pcm-hil's drift measurement (``pcm_hil.measure_drift``: program, read at ``times_s``
        after programming, fit ν per device)."""
        return measure_drift(self.chip, self.clock, tile, addresses, targets_uS, times_s, **options)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the chip's clock (at once on a virtual clock)."""
        self.clock.wait(seconds)

    def record_drift(self, times_s: Iterable[float], experiment: Any = None, name: str = "drift"):
        """A drift measurement of the programmed devices as a QCoDeS ``Measurement``: at each
        of ``times_s`` after programming (waiting on the chip's clock), ``after_programming``
        and ``programmed_conductance``, one result each. Returns the dataset."""
        from qcodes.dataset import Measurement

        if self._programmed_at is None:
            raise RuntimeError("program devices first (program_and_verify): nothing to follow")
        measurement = Measurement(exp=experiment, name=name)
        measurement.register_parameter(self.after_programming)
        measurement.register_parameter(
            self.programmed_conductance, setpoints=(self.after_programming,)
        )
        with measurement.run() as saver:
            for t in times_s:
                self.clock.wait_until(self._programmed_at + float(t))
                saver.add_result(
                    (self.after_programming, self.after_programming()),
                    (self.device, self.device()),
                    (self.programmed_conductance, self.programmed_conductance()),
                )
            return saver.dataset

    # --- internals --------------------------------------------------------------------------------

    def _programmed_count(self) -> int:
        return int(self._programmed[1].size)

    def _read_programmed(self) -> np.ndarray:
        tiles, addresses = self._programmed
        values = np.empty(addresses.size)
        for tile in np.unique(tiles):
            mine = tiles == tile
            values[mine] = self.chip.read(int(tile), addresses[mine])
        return values

    def _after_programming(self) -> float:
        if self._programmed_at is None:
            return float("nan")
        return self.chip.time() - self._programmed_at

    def close(self) -> None:
        """Close the chip and the instrument (again: nothing; qcodes strips a closed one)."""
        chip = getattr(self, "chip", None)
        try:
            if chip is not None:
                chip.close()
        finally:
            super().close()
