"""An emulated PCM test chip: tiles of devices, a clock, a temperature, analog MVM.

Plain Python in physical units — no command strings. ``wire.py`` maps the protocol onto the
methods here; the arguments reaching them have passed the command table's checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pcm_hil.emulator.calibration import DEFAULT_MODEL, K_B_EV_PER_K, PcmModel
from pcm_hil.emulator.clock import RealTimeClock, VirtualClock
from pcm_hil.emulator.crossbar import Converters, multiply
from pcm_hil.emulator.devices import PcmDevices, Window
from pcm_hil.protocols.chip import PROTOCOL_VERSION, ChipInfo
from pcm_hil.protocols.common import Identity

FIRMWARE_VERSION = "0.1.0"


@dataclass(frozen=True)
class ChipConfig:
    """Geometry, safe limits and converters of a chip, plus the device model it carries."""

    tiles: int = 4
    rows: int = 64
    columns: int = 64
    read_voltage_V: float = 0.2
    """Read voltage, also the MVM input full scale [choice: ≈0.2 V plausible IBM value]."""
    pulse_amplitude_max_uA: float = 600.0
    """Safe-operating limit on pulse current [choice: above the ≈450–500 µA RESET]."""
    pulse_width_min_ns: float = 10.0
    pulse_width_max_ns: float = 1000.0
    dac_bits: int = 8
    """MVM input resolution [choice: HERMES uses 8-bit inputs]."""
    adc_bits: int = 8
    """MVM output resolution [choice]."""
    mvm_batch_max: int = 16384
    """Most input vectors one MVM command takes [choice: a reply of 16 MiB at 256 columns,
    the ``max_reply_bytes`` a server allows]."""
    adc_full_scale_fraction: float = 0.03
    """ADC full scale as a fraction of rows·g_max·read_voltage, the current of a fully
    driven, fully SET column [choice]."""
    ambient_K: float = 300.0
    temperature_min_K: float = 233.0
    temperature_max_K: float = 400.0
    serial: str = "EMU-0001"
    real_time: bool = False
    """Wall-clock time instead of a virtual clock."""
    model: PcmModel = field(default=DEFAULT_MODEL)

    def __post_init__(self) -> None:
        for name in ("tiles", "rows", "columns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.mvm_batch_max < 1:
            raise ValueError("mvm_batch_max must be at least 1")
        if not 2 <= self.dac_bits <= 16 or not 2 <= self.adc_bits <= 16:
            raise ValueError("DAC and ADC bits must be 2…16")
        if not self.temperature_min_K <= self.ambient_K <= self.temperature_max_K:
            raise ValueError("ambient temperature outside the temperature limits")

    @property
    def devices_per_tile(self) -> int:
        return self.rows * self.columns

    @property
    def mvm_output_max_uA(self) -> float:
        return self.adc_full_scale_fraction * self.rows * self.model.g_max_uS * self.read_voltage_V

    def with_overrides(self, **overrides: Any) -> ChipConfig:
        """A copy with fields changed; unknown names are refused."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown chip setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


#: Named chip shapes. "default" (4 tiles of 256×256) is what the resource ``emulator`` opens;
#: "tiny" and "small" keep tests fast; "hermes" is shaped like IBM's 64-core chip (Le Gallo
#: et al., Nature Electronics 2023: 64 cores of 256×256).
PROFILES: dict[str, ChipConfig] = {
    "tiny": ChipConfig(tiles=2, rows=16, columns=16),
    "small": ChipConfig(tiles=4, rows=64, columns=64),
    "default": ChipConfig(tiles=4, rows=256, columns=256),
    "hermes": ChipConfig(tiles=64, rows=256, columns=256, serial="EMU-HERMES"),
}
DEFAULT_PROFILE = "default"

#: Bytes an emulated chip allocates per device: the device arrays (``PcmDevices``: nine
#: arrays, 41 B) and the temporaries of drawing them (32 B) [measured with tracemalloc].
BYTES_PER_DEVICE = 73
#: Bytes per device of one tile, for the temporaries of reading or pulsing all of it [measured].
BYTES_PER_TILE_DEVICE = 80
#: The share of the host's physical memory one emulated chip may take, and a fixed ceiling
#: that holds on any host: 64 GiB, about 900 million devices (so a tile also stays below the
#: 2³² devices that 32-bit addresses reach).
MEMORY_FRACTION = 0.5
MEMORY_CEILING = 64 * 2**30


def memory_estimate(config: ChipConfig) -> int:
    """Bytes an emulated chip of ``config`` allocates at its peak, about: its device arrays,
    the temporaries of drawing them and those of a whole-tile read."""
    per_tile = config.devices_per_tile
    return BYTES_PER_DEVICE * config.tiles * per_tile + BYTES_PER_TILE_DEVICE * per_tile


def memory_limit() -> int:
    """Bytes an emulated chip may take: ``MEMORY_FRACTION`` of the host's physical memory, at
    most ``MEMORY_CEILING`` (the ceiling alone where the host does not tell its memory)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX host
        return MEMORY_CEILING
    return min(int(MEMORY_FRACTION * physical), MEMORY_CEILING)


def check_memory(config: ChipConfig) -> None:
    """ValueError, before anything is allocated, for a geometry whose arrays would not fit:
    ``memory_estimate`` above ``memory_limit()``."""
    needed, limit = memory_estimate(config), memory_limit()
    if needed > limit:
        raise ValueError(
            f"a chip of {config.tiles}×{config.rows}×{config.columns} devices needs about "
            f"{needed / 2**30:.1f} GiB of memory, more than the {limit / 2**30:.1f} GiB an "
            f"emulated chip may take ({MEMORY_FRACTION:.0%} of this host's memory, at most "
            f"{MEMORY_CEILING // 2**30} GiB)"
        )


class EmulatedChip:
    """A PCM test chip in software. ``rng`` (a seeded numpy Generator) drives every random
    draw: the same seed and the same calls give the same results. A geometry whose arrays
    would not fit in memory is refused (ValueError, ``check_memory``) before any is made."""

    def __init__(
        self, config: ChipConfig | None = None, rng: np.random.Generator | None = None
    ) -> None:
        self.config = config or PROFILES[DEFAULT_PROFILE]
        check_memory(self.config)  # before the device arrays are allocated
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.clock = RealTimeClock() if self.config.real_time else VirtualClock()
        self.devices = PcmDevices(
            self.config.tiles, self.config.devices_per_tile, self.config.model, self.rng
        )
        self.converters = Converters(
            self.config.dac_bits,
            self.config.adc_bits,
            self.config.read_voltage_V,
            self.config.mvm_output_max_uA,
        )
        self.device_faults: tuple[float, float, int] | None = None
        """(stuck fraction, drift factor, seed) of the device faults applied, if any
        (``faults.FaultPlan.apply_to_chip``)."""
        self._temperature_K = self.config.ambient_K
        self._equivalent_s = 0.0
        self._synced_at = self.clock.now()

    # --- identity and configuration --------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return Identity("PCM-HIL", "PCM-EMULATOR", self.config.serial, FIRMWARE_VERSION)

    def info(self) -> ChipInfo:
        """What the chip reports of itself over the protocol (``CHIP:…?`` and the rest)."""
        c = self.config
        return ChipInfo(
            identity=self.identity,
            protocol_version=PROTOCOL_VERSION,
            tiles=c.tiles,
            rows=c.rows,
            columns=c.columns,
            g_max_uS=c.model.g_max_uS,
            pulse_amplitude_max_uA=c.pulse_amplitude_max_uA,
            pulse_width_min_ns=c.pulse_width_min_ns,
            pulse_width_max_ns=c.pulse_width_max_ns,
            temperature_min_K=c.temperature_min_K,
            temperature_max_K=c.temperature_max_K,
            read_voltage_V=c.read_voltage_V,
            dac_bits=c.dac_bits,
            adc_bits=c.adc_bits,
            mvm_input_max_V=self.converters.input_max_V,
            mvm_output_max_uA=self.converters.output_max_uA,
            mvm_batch_max=c.mvm_batch_max,
        )

    # --- time and temperature -------------------------------------------------------------------

    def now(self) -> float:
        """Seconds on the chip's clock."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Advance a virtual clock (NotImplementedError on a real-time one)."""
        self._sync()
        self.clock.advance(seconds)
        self._sync()

    def equivalent_time(self) -> float:
        """Seconds of drift at the reference temperature since the clock started."""
        self._sync()
        return self._equivalent_s

    def _sync(self) -> None:
        now = self.clock.now()
        self._equivalent_s += (now - self._synced_at) * self.drift_acceleration(self._temperature_K)
        self._synced_at = now

    def drift_acceleration(self, temperature_K: float) -> float:
        """How many times faster than at the reference temperature devices drift [choice]."""
        m = self.config.model
        return float(
            np.exp(m.drift_activation_eV / K_B_EV_PER_K * (1 / m.t_reference_K - 1 / temperature_K))
        )

    @property
    def temperature_K(self) -> float:
        return self._temperature_K

    def set_temperature(self, kelvin: float) -> None:
        self._sync()
        self._temperature_K = float(kelvin)

    def reset_settings(self) -> None:
        """*RST: settings to power-on defaults; device states are non-volatile."""
        self.set_temperature(self.config.ambient_K)

    # --- device faults ------------------------------------------------------------------------

    def scale_drift(self, factor: float) -> None:
        """Fast-drifting devices: every ν, and the model's ν distribution, times ``factor``."""
        self.devices.scale_drift(factor)
        self.config = replace(self.config, model=self.devices.model)

    def make_stuck(self, fraction: float, rng: np.random.Generator) -> None:
        """Each device not yet stuck becomes stuck with probability ``fraction`` (draws from
        ``rng``), stuck-SET or stuck-RESET in the model's proportion."""
        self.devices.make_stuck(fraction, rng, self.equivalent_time())

    # --- programming, reading, MVM -----------------------------------------------------------------

    def pulse(
        self, tile: int, addresses: ArrayLike, amplitudes_uA: ArrayLike, widths_ns: ArrayLike
    ) -> None:
        """One pulse per addressed device (amplitude µA, width ns; length 1 broadcasts)."""
        self.devices.pulse(
            tile,
            np.asarray(addresses, dtype=np.intp),
            amplitudes_uA,
            widths_ns,
            self.equivalent_time(),
        )

    def read_tile(self, tile: int) -> np.ndarray:
        """Every device of a tile, (rows, columns) µS."""
        values = self.devices.read(tile, slice(None), self.equivalent_time(), self._temperature_K)
        return values.reshape(self.config.rows, self.config.columns)

    def read_devices(self, tile: int, addresses: np.ndarray) -> np.ndarray:
        """The addressed devices of a tile, µS, in order."""
        return self.devices.read(
            tile, np.asarray(addresses, dtype=np.intp), self.equivalent_time(), self._temperature_K
        )

    def mvm(
        self,
        tile: int,
        inputs_V: np.ndarray,
        transposed: bool = False,
        window: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Batched analog MVM on a window (row_start, row_count, column_start, column_count)
        of a tile (default: all of it). Inputs (n, row_count) forward or (n, column_count)
        transposed, V; returns µA, (n, column_count) or (n, row_count). Only the window's
        devices are read (the other rows or columns are held at 0 V)."""
        c = self.config
        row, rows, column, columns = window if window is not None else (0, c.rows, 0, c.columns)
        if not (0 <= row and 0 < rows and row + rows <= c.rows):
            raise ValueError(f"rows {row}…{row + rows - 1} outside the tile's 0…{c.rows - 1}")
        if not (0 <= column and 0 < columns and column + columns <= c.columns):
            raise ValueError(
                f"columns {column}…{column + columns - 1} outside the tile's 0…{c.columns - 1}"
            )
        rectangle = Window(c.columns, slice(row, row + rows), slice(column, column + columns))
        conductance = self.devices.read(
            tile, rectangle, self.equivalent_time(), self._temperature_K
        )
        return multiply(
            conductance,
            inputs_V,
            self.converters,
            c.model.mvm_output_noise_uA,
            self.rng,
            transposed,
        )


def make_chip(profile: str = DEFAULT_PROFILE, seed: int = 0, **overrides: Any) -> EmulatedChip:
    """An emulated chip of a named profile, seeded; ``overrides`` change ChipConfig fields
    (ValueError for an unknown profile or field)."""
    try:
        config = PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown chip profile {profile!r}; known: {', '.join(PROFILES)}"
        ) from None
    return EmulatedChip(config.with_overrides(**overrides), np.random.default_rng(seed))
