"""The devices behind the emulated bench's switch matrix: N PCM devices (one tile of an
``EmulatedChip``, the same physics and clock), a 1-of-N switch, and the series resistor that
turns the pulse generator's volts into the chip's microamperes."""

from __future__ import annotations

import threading

import numpy as np

from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.chip import ChipConfig, EmulatedChip

#: Resistor in series with the pulse generator's output, Ω [choice: 1 kΩ turns volts into
#: milliamps, 1 V → 1000 µA, so the chip's 600 µA safe current is a 0.6 V high level; the
#: device's threshold-switched ON resistance during a programming pulse is neglected
#: against it, so I = V_high / R_series].
SERIES_RESISTANCE_OHM = 1000.0

#: Largest |low level| of the generator, V [choice: at 1 kΩ, 20 µA — half the crystallization
#: threshold, so the level between pulses never disturbs a device; benches use 0 V].
LOW_LEVEL_MAX_V = 0.02

#: Largest |source voltage| of the SMU, V [choice: bench protection — at 1 V a fully
#: crystalline (≈30 µS) device carries ≈30 µA, below the 40 µA crystallization threshold,
#: so no read can disturb a device].
SOURCE_VOLTAGE_MAX_V = 1.0


class BenchDevices:
    """N PCM devices on a 1-of-N switch matrix, shared by the instruments (thread-safe).

    The physics and the clock are an ``EmulatedChip`` of one tile of ``1 × N`` devices.
    Channel k (1…N) is the chip's address k − 1; ``channel`` is the closed one (None: open).
    """

    def __init__(
        self,
        devices: int = 16,
        seed: int = 0,
        *,
        real_time: bool = False,
        model: PcmModel = DEFAULT_MODEL,
        series_resistance_ohm: float = SERIES_RESISTANCE_OHM,
        rng: np.random.Generator | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError("a bench needs at least one device")
        config = ChipConfig(
            tiles=1, rows=1, columns=devices, real_time=real_time, model=model, serial="EMU-BENCH"
        )
        self.chip = EmulatedChip(config, rng if rng is not None else np.random.default_rng(seed))
        self.count = devices
        self.series_resistance_ohm = float(series_resistance_ohm)
        self.lock = threading.RLock()
        self.channel: int | None = 1
        self.pulses_applied = 0

    # the device limits the bench protects, from the chip's configuration
    @property
    def current_max_uA(self) -> float:
        return self.chip.config.pulse_amplitude_max_uA

    @property
    def width_limits_ns(self) -> tuple[float, float]:
        c = self.chip.config
        return c.pulse_width_min_ns, c.pulse_width_max_ns

    @property
    def high_level_max_V(self) -> float:
        """The generator's high-level limit that keeps the current within the safe limit."""
        return self.current_max_uA * 1e-6 * self.series_resistance_ohm

    def current_uA(self, level_V: float) -> float:
        """Current through a device at generator level ``level_V``, µA."""
        return abs(level_V) / self.series_resistance_ohm * 1e6

    def route(self, channel: int | None) -> None:
        with self.lock:
            self.channel = channel

    def pulse(self, level_V: float, width_s: float) -> None:
        """One programming pulse into the routed device (none routed: it goes nowhere)."""
        with self.lock:
            if self.channel is None:
                return
            address = np.array([self.channel - 1])
            self.chip.pulse(0, address, self.current_uA(level_V), width_s * 1e9)
            self.pulses_applied += 1

    def conductance_uS(self) -> float:
        """One read of the routed device, µS (0 with the switch open)."""
        with self.lock:
            if self.channel is None:
                return 0.0
            return float(self.chip.read_devices(0, np.array([self.channel - 1]))[0])

    def now(self) -> float:
        with self.lock:
            return self.chip.now()

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.chip.advance(seconds)

    @property
    def clock_mode(self) -> str:
        return "VIRT" if self.chip.clock.mode.upper().startswith("VIRT") else "REAL"
