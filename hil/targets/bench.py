"""The bench target: discrete PCM devices on a probe station, driven like a chip.

A source-measure unit reads a device, a pulse generator programs it through a series
resistor, and a 1-of-N switch matrix picks the device. ``BenchTarget`` gives procedures the
same interface as the chip driver (``hil.chip_protocol.Chip``: ``pulse``, ``read``,
``read_tile``, ``time``, ``clock_mode``, ``advance``, and a ``config`` with the fields they
use): the bench is one tile (tile 0) of ``1 × N`` devices, address k being switch channel
k + 1. A bench handles one device at a time, so each batched call loops over its devices
here, inside the target:

- ``pulse``: for each device, close its switch channel, set the generator's high level
  V = I·R_series and its width (only when they change), ``*TRG``;
- ``read``: for each device, close its channel, ``:READ?``, G = I/V in µS.

Every pulse is checked against the safe limits (tile, addresses, current, width) before
anything is sent: one bad pulse refuses the whole call with ``PulseLimitError`` (``sent``
False) and nothing reaches the wire. Instrument errors raise the drivers' typed
``InstrumentError`` with the instrument's code and message.

Time: on the emulated bench (``pcm-hil emulator bench``, recognised by its ``*IDN?``) the
clock is the bench's, virtual unless it was started in real time, read and advanced through
its SMU's emulator-only ``:SYST:TIME`` commands. On real instruments the clock is the host's
monotonic clock from when the target was opened (``REAL``: procedures wait in wall time),
and the switch channel count must be given (``devices``; 1 means no switch, no routing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from pcm_hil.drivers.chip import Identity
from pcm_hil.drivers.errors import ChipError, PulseLimitError
from pcm_hil.drivers.instrument import InstrumentTimeoutError
from pcm_hil.drivers.pulse_generator import PulseGenerator
from pcm_hil.drivers.smu import SourceMeter
from pcm_hil.emulator.bench import SERIES_RESISTANCE_OHM
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.chip import ChipConfig

#: The PCM technology's defaults, the same as the chip's (``emulator.chip.ChipConfig``).
_CHIP = ChipConfig()

#: Protocol version recorded for a run on a bench (the instruments speak SCPI-1999).
BENCH_PROTOCOL = "bench-scpi-1999"

#: Code of an address or tile outside the bench (SCPI "Data out of range").
_OUT_OF_RANGE = -222


@dataclass(frozen=True)
class BenchConfiguration:
    """What procedures read of ``target.config``: one tile of ``1 × devices`` devices, the
    technology's g_max, the safe pulse limits and the read set-up."""

    identity: Identity
    protocol_version: str
    devices: int
    g_max_uS: float = DEFAULT_MODEL.g_max_uS
    pulse_amplitude_max_uA: float = _CHIP.pulse_amplitude_max_uA
    pulse_width_min_ns: float = _CHIP.pulse_width_min_ns
    pulse_width_max_ns: float = _CHIP.pulse_width_max_ns
    read_voltage_V: float = _CHIP.read_voltage_V
    compliance_A: float = 1e-4
    """SMU current compliance during reads: 100 µA, far above any read current (≈6 µA at
    30 µS and 0.2 V) and far below a disturbing one."""
    nplc: float = 1.0
    series_resistance_ohm: float = SERIES_RESISTANCE_OHM
    pulse_period_s: float = 10e-6
    """Generator period: above the longest allowed width (1 µs)."""
    edge_s: float = 2e-9
    """Leading and trailing edge of the programming pulses [choice: fast enough to quench]."""

    tiles: int = 1
    rows: int = 1

    @property
    def columns(self) -> int:
        return self.devices

    @property
    def devices_per_tile(self) -> int:
        return self.devices

    def limits(self) -> dict[str, float]:
        return {
            "tiles": self.tiles,
            "rows": self.rows,
            "columns": self.columns,
            "devices_per_tile": self.devices_per_tile,
            "pulse_amplitude_max_uA": self.pulse_amplitude_max_uA,
            "pulse_width_min_ns": self.pulse_width_min_ns,
            "pulse_width_max_ns": self.pulse_width_max_ns,
        }


class Switch(Protocol):
    """Connects switch channel ``channel`` (1…N) to the instruments, disconnecting the rest."""

    def close(self, channel: int) -> None: ...


class SmuSwitch:
    """The switch matrix on the SMU, as the emulated bench has it: ``:ROUT:CLOS (@k)``."""

    def __init__(self, smu: SourceMeter) -> None:
        self.smu = smu

    def close(self, channel: int) -> None:
        command = f":ROUT:CLOS (@{channel})"
        with self.smu.lock:
            self.smu.write(command)
            self.smu.check_errors(command=command)


def _is_emulated(idn: str) -> bool:
    return idn.startswith("PCM-HIL,EMULATED")


class BenchTarget:
    """Discrete devices on a bench (SMU + pulse generator + switch), driven like a chip.

    Use ``BenchTarget.open("SMU_RESOURCE,PULSE_RESOURCE")``; or construct it on open
    instruments. ``devices`` is the switch's channel count (None: ask the emulated bench,
    else 1); ``switch`` routes channels (default: the SMU's route command); ``overrides``
    change ``BenchConfiguration`` fields (limits, read voltage, series resistor …).
    """

    def __init__(
        self,
        smu: SourceMeter,
        pulse_generator: PulseGenerator,
        *,
        devices: int | None = None,
        switch: Switch | None = None,
        clock: Callable[[], float] = time.monotonic,
        **overrides,
    ) -> None:
        self.smu = smu
        self.pulse_generator = pulse_generator
        self.resource = f"{smu.resource},{pulse_generator.resource}"
        smu_idn, pulse_idn = smu.identify(), pulse_generator.identify()
        self.emulated = _is_emulated(smu_idn) and _is_emulated(pulse_idn)
        if devices is None:
            devices = int(smu.query(":ROUT:COUN?")) if self.emulated else 1
        if devices < 1:
            raise ValueError("a bench has at least one device")
        smu_fields = [f.strip() for f in smu_idn.split(",")] + ["", "", "", ""]
        pulse_fields = [f.strip() for f in pulse_idn.split(",")] + ["", "", "", ""]
        same_maker = smu_fields[0] == pulse_fields[0]
        identity = Identity(
            manufacturer=smu_fields[0] if same_maker else f"{smu_fields[0]} + {pulse_fields[0]}",
            model=f"bench: {smu_fields[1]} + {pulse_fields[1]}",
            serial=f"{smu_fields[2]}+{pulse_fields[2]}",
            firmware=f"{smu_fields[3]}+{pulse_fields[3]}",
        )
        self.config = BenchConfiguration(identity, BENCH_PROTOCOL, devices, **overrides)
        self.switch = switch if switch is not None else (SmuSwitch(smu) if devices > 1 else None)
        self._host_clock = clock
        self._opened_at = clock()
        self._virtual = self.emulated and smu.query(":SYST:TIME:MODE?").strip().upper().startswith(
            "VIRT"
        )
        self._channel: int | None = None
        self._level_V: float | None = None
        self._width_s: float | None = None
        self.pulses_sent = 0
        self.reads_taken = 0
        self._set_up()

    @classmethod
    def open(
        cls,
        resources: str,
        *,
        timeout_s: float = 10.0,
        visa_library: str | None = None,
        **options,
    ) -> BenchTarget:
        """Open ``"SMU_RESOURCE,PULSE_RESOURCE"`` (VISA resource strings, e.g. the two lines
        ``pcm-hil emulator bench`` prints) and set both instruments up."""
        parts = [p.strip() for p in resources.split(",")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"a bench is 'SMU_RESOURCE,PULSE_RESOURCE', not {resources!r}")
        smu = SourceMeter(parts[0], visa_library=visa_library, timeout_s=timeout_s)
        try:
            pulse = PulseGenerator(parts[1], visa_library=visa_library, timeout_s=timeout_s)
        except BaseException:
            smu.close()
            raise
        try:
            return cls(smu, pulse, **options)
        except BaseException:
            smu.close()
            pulse.close()
            raise

    def _set_up(self) -> None:
        """Both instruments to a known state: SMU sourcing the read voltage with its output
        on; generator at 0 V low level, the period and edges, armed for *TRG, output on."""
        c = self.config
        smu, pulse = self.smu, self.pulse_generator
        smu.reset()
        smu.configure_current_read(c.read_voltage_V, c.compliance_A, c.nplc)
        smu.output_enabled = True
        pulse.reset()
        pulse.output_enabled = False
        pulse.arm_source = "MAN"
        pulse.set_levels(max(pulse.high_level_V, 1e-3), 0.0)
        pulse.period_s = c.pulse_period_s
        pulse.leading_edge_s = c.edge_s
        pulse.trailing_edge_s = c.edge_s
        pulse.output_enabled = True
        self._level_V = pulse.high_level_V
        self._width_s = pulse.width_s
        self._channel = None

    # --- identity and life cycle -----------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.config.identity

    def close(self) -> None:
        """Outputs off (best effort), then close both instruments."""
        for instrument in (self.pulse_generator, self.smu):
            if instrument.closed:
                continue
            try:
                instrument.output_enabled = False
            except Exception:
                pass
            instrument.close()

    def __enter__(self) -> BenchTarget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BenchTarget {self.resource} {self.config.devices} devices>"

    # --- checks ------------------------------------------------------------------------------

    def _addresses(self, tile: int, addresses) -> np.ndarray:
        if tile != 0:
            raise ChipError(_OUT_OF_RANGE, f"tile {tile}: a bench is tile 0", sent=False)
        addresses = np.asarray(addresses, dtype=np.int64).ravel()
        bad = addresses[(addresses < 0) | (addresses >= self.config.devices)]
        if bad.size:
            raise ChipError(
                _OUT_OF_RANGE,
                f"address {int(bad[0])} outside 0...{self.config.devices - 1}",
                sent=False,
            )
        return addresses

    def _check_pulses(self, tile, addresses, amplitude_uA, width_ns):
        """(addresses, amplitudes µA, widths ns), one each, after every safe-limit check."""
        c = self.config
        addresses = self._addresses(tile, addresses)
        try:
            amplitude = np.broadcast_to(
                np.asarray(amplitude_uA, dtype=np.float64).ravel(), addresses.shape
            )
            width = np.broadcast_to(np.asarray(width_ns, dtype=np.float64).ravel(), addresses.shape)
        except ValueError:
            raise ChipError(
                102, "amplitudes and widths must match the addresses", sent=False
            ) from None
        if np.unique(addresses).size != addresses.size:
            raise ChipError(103, "an address appears twice in one pulse", sent=False)
        bad = ~np.isfinite(amplitude) | (amplitude < 0) | (amplitude > c.pulse_amplitude_max_uA)
        if bad.any():
            raise PulseLimitError(
                101,
                f"amplitude {float(amplitude[bad][0]):g} uA outside 0...{c.pulse_amplitude_max_uA:g} uA",
                sent=False,
            )
        bad = ~np.isfinite(width) | (width < c.pulse_width_min_ns) | (width > c.pulse_width_max_ns)
        if bad.any():
            raise PulseLimitError(
                101,
                f"width {float(width[bad][0]):g} ns outside "
                f"{c.pulse_width_min_ns:g}...{c.pulse_width_max_ns:g} ns",
                sent=False,
            )
        return addresses, amplitude, width

    # --- the chip interface ----------------------------------------------------------------

    def _route(self, address: int) -> None:
        channel = int(address) + 1
        if self.switch is not None and channel != self._channel:
            self.switch.close(channel)
        self._channel = channel

    def pulse(self, tile: int, addresses, amplitude_uA, width_ns) -> None:
        """One pulse per device (µA, ns; scalars broadcast), one device after another. All
        are checked before the first is sent. A 0 µA pulse sends nothing (it does nothing)."""
        addresses, amplitude, width = self._check_pulses(tile, addresses, amplitude_uA, width_ns)
        pulse = self.pulse_generator
        resistance = self.config.series_resistance_ohm
        for address, current, nanoseconds in zip(addresses, amplitude, width, strict=True):
            if current <= 0:
                continue
            self._route(address)
            level = round(float(current) * 1e-6 * resistance, 12)
            if level != self._level_V:
                pulse.high_level_V = level
                self._level_V = level
            seconds = round(float(nanoseconds) * 1e-9, 15)
            if seconds != self._width_s:
                pulse.width_s = seconds
                self._width_s = seconds
            pulse.trigger()
            self.pulses_sent += 1

    def read(self, tile: int, addresses) -> np.ndarray:
        """Conductance of each device, µS (float32), in order: G = I/V of one SMU reading."""
        addresses = self._addresses(tile, addresses)
        out = np.empty(addresses.size, dtype=np.float32)
        for index, address in enumerate(addresses):
            self._route(address)
            volts, amps = self._measure()
            out[index] = amps / volts * 1e6 if volts else np.nan
            self.reads_taken += 1
        return out

    def _measure(self) -> tuple[float, float]:
        """One SMU reading. A query the instrument refuses gets no reply (IEEE 488.2): on a
        timeout, the instrument's error queue says why (``InstrumentError``, its code and
        message), and the timeout is raised only when the queue is empty."""
        try:
            return self.smu.measure()
        except InstrumentTimeoutError:
            self.smu.check_errors(command=":READ?")
            raise

    def read_tile(self, tile: int) -> np.ndarray:
        """Every device, (1, N) µS."""
        return self.read(tile, np.arange(self.config.devices)).reshape(1, -1)

    def time(self) -> float:
        """Seconds on the bench's clock (the emulated bench's, else the host's since open)."""
        if self.emulated:
            return float(self.smu.query(":SYST:TIME?"))
        return self._host_clock() - self._opened_at

    def clock_mode(self) -> str:
        return "VIRT" if self._virtual else "REAL"

    def advance(self, seconds: float) -> None:
        """Advance the emulated bench's virtual clock (NotImplementedError in real time)."""
        if not self._virtual:
            raise NotImplementedError("the bench runs in real time: its clock cannot be advanced")
        command = f":SYST:TIME:ADV {float(seconds):.12g}"
        with self.smu.lock:
            self.smu.write(command)
            self.smu.check_errors(command=command)

    def describe(self) -> dict:
        """Identity and configuration as plain data (for ``info``-style output)."""
        values = asdict(self.config)
        values["resource"] = self.resource
        values["clock_mode"] = self.clock_mode()
        return values
