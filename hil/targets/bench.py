"""The bench target: discrete PCM devices on a probe station, driven like a chip.

A source-measure unit reads a device, a pulse generator programs it through a series
resistor, and a 1-of-N switch matrix picks the device. ``BenchTarget`` gives procedures the
same interface as the chip driver (``pcm_hil.targets.protocol.Chip``: ``pulse``, ``read``,
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

from pcm_hil.drivers.errors import chip_error
from pcm_hil.drivers.instrument import InstrumentTimeoutError
from pcm_hil.drivers.pulse_generator import PulseGenerator
from pcm_hil.drivers.smu import SourceMeter
from pcm_hil.protocols.chip import COMMANDS, ChipInfo
from pcm_hil.protocols.codec import prepare_values
from pcm_hil.protocols.common import Identity
from pcm_hil.protocols.errors import ScpiError

#: Protocol version recorded for a run on a bench (the instruments speak SCPI-1999).
BENCH_PROTOCOL = "bench-scpi-1999"


@dataclass(frozen=True)
class BenchSetup:
    """How the bench is wired and driven, and the PCM technology's limits it protects.

    The technology defaults are the emulated chip's (``pcm_hil.emulator.chip.ChipConfig``
    and ``calibration.DEFAULT_MODEL``; a test keeps them equal): set them for your devices.
    """

    g_max_uS: float = 25.0
    """Top of the weight range, µS [the emulator's g_max, from the aihwkit PCM model]."""
    pulse_amplitude_max_uA: float = 600.0
    """Safe-operating limit on pulse current, µA [choice: above the ≈450–500 µA RESET]."""
    pulse_width_min_ns: float = 10.0
    pulse_width_max_ns: float = 1000.0
    read_voltage_V: float = 0.2
    """Read voltage [choice: ≈0.2 V plausible IBM value]."""
    compliance_A: float = 1e-4
    """SMU current compliance during reads: 100 µA, far above any read current (≈6 µA at
    30 µS and 0.2 V) and far below a disturbing one."""
    nplc: float = 1.0
    series_resistance_ohm: float = 1000.0
    """Resistor in series with the generator [the emulated bench's: 1 V → 1000 µA]."""
    pulse_period_s: float = 10e-6
    """Generator period: above the longest allowed width (1 µs)."""
    edge_s: float = 2e-9
    """Leading and trailing edge of the programming pulses [choice: fast enough to quench]."""

    def info(self, identity: Identity, devices: int) -> ChipInfo:
        """What procedures read of ``target.config``: one tile of ``1 × devices`` devices,
        no MVM, no temperature stage."""
        return ChipInfo(
            identity=identity,
            protocol_version=BENCH_PROTOCOL,
            tiles=1,
            rows=1,
            columns=devices,
            g_max_uS=self.g_max_uS,
            pulse_amplitude_max_uA=self.pulse_amplitude_max_uA,
            pulse_width_min_ns=self.pulse_width_min_ns,
            pulse_width_max_ns=self.pulse_width_max_ns,
            read_voltage_V=self.read_voltage_V,
        )


class Switch(Protocol):
    """Connects switch channel ``channel`` (1…N) to the instruments, disconnecting the rest."""

    def close(self, channel: int) -> None: ...


class SmuSwitch:
    """The switch matrix on the SMU, as the emulated bench has it: ``:ROUT:CLOS (@k)``."""

    def __init__(self, smu: SourceMeter) -> None:
        self.smu = smu

    def close(self, channel: int) -> None:
        self.smu.route(channel)


def _is_emulated(identity: Identity) -> bool:
    return identity.manufacturer == "PCM-HIL" and identity.model.startswith("EMULATED")


def _identity(instrument: SourceMeter | PulseGenerator) -> Identity:
    """The instrument's ``*IDN?``, field by field (missing fields empty)."""
    reply = instrument.identify()
    fields = [f.strip() for f in reply.split(",")][:4]
    return Identity(*fields, *[""] * (4 - len(fields)))


class BenchTarget:
    """Discrete devices on a bench (SMU + pulse generator + switch), driven like a chip.

    Use ``BenchTarget.open("SMU_RESOURCE,PULSE_RESOURCE")``; or construct it on open
    instruments. ``devices`` is the switch's channel count (None: ask the emulated bench,
    else 1); ``switch`` routes channels (default: the SMU's route command); ``overrides``
    change ``BenchSetup`` fields (limits, read voltage, series resistor …). ``config`` is the
    bench as procedures see it, a ``ChipInfo`` of one tile of ``1 × devices``.
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
        smu_id, pulse_id = _identity(smu), _identity(pulse_generator)
        self.emulated = _is_emulated(smu_id) and _is_emulated(pulse_id)
        if devices is None:
            devices = int(smu.ask("route_count")) if self.emulated else 1
        if devices < 1:
            raise ValueError("a bench has at least one device")
        smu.switch_channels = devices
        same_maker = smu_id.manufacturer == pulse_id.manufacturer
        identity = Identity(
            manufacturer=smu_id.manufacturer
            if same_maker
            else f"{smu_id.manufacturer} + {pulse_id.manufacturer}",
            model=f"bench: {smu_id.model} + {pulse_id.model}",
            serial=f"{smu_id.serial}+{pulse_id.serial}",
            firmware=f"{smu_id.firmware}+{pulse_id.firmware}",
        )
        self.setup = BenchSetup(**overrides)
        self.config = self.setup.info(identity, devices)
        self.switch = switch if switch is not None else (SmuSwitch(smu) if devices > 1 else None)
        self._host_clock = clock
        self._opened_at = clock()
        self._virtual = self.emulated and smu.ask("time_mode") == "VIRT"
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
        c = self.setup
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
        return f"<BenchTarget {self.resource} {self.config.columns} devices>"

    # --- checks ------------------------------------------------------------------------------

    def _check(self, handler: str, **values) -> dict:
        """The values as the chip's own row ``handler`` checks them (tile, addresses, safe
        pulse limits against ``config``): the same refusals, codes and messages as the chip
        driver's, raised with ``sent`` False."""
        try:
            return prepare_values(COMMANDS.by_handler(handler), values, self.config.limits())
        except ScpiError as error:
            raise chip_error(error.code, error.detail, command=handler, sent=False) from None

    def _check_pulses(self, tile, addresses, amplitude_uA, width_ns):
        """(addresses, amplitudes µA, widths ns), one each, after every safe-limit check. The
        values sent are the ones given (float64), not the float32 copies the chip's row
        checks."""
        checked = self._check(
            "pulse",
            tile=tile,
            addresses=np.asarray(addresses).ravel(),
            amplitudes=np.atleast_1d(np.asarray(amplitude_uA, dtype=np.float32)).ravel(),
            widths=np.atleast_1d(np.asarray(width_ns, dtype=np.float32)).ravel(),
        )
        addresses = checked["addresses"].astype(np.int64)
        amplitude = np.broadcast_to(np.asarray(amplitude_uA, dtype=np.float64).ravel(), addresses.shape)  # fmt: skip
        width = np.broadcast_to(np.asarray(width_ns, dtype=np.float64).ravel(), addresses.shape)
        return addresses, amplitude, width

    def _addresses(self, tile: int, addresses) -> np.ndarray:
        checked = self._check("read_devices", tile=tile, addresses=np.asarray(addresses).ravel())
        return checked["addresses"].astype(np.int64)

    # --- the chip interface ----------------------------------------------------------------

    def _route(self, address: int) -> None:
        channel = int(address) + 1
        if self.switch is not None and channel != self._channel:
            self.switch.close(channel)
        self._channel = channel

    def pulse(self, tile: int, addresses, amplitude_uA, width_ns) -> None:
        """One pulse per device (µA, ns; scalars broadcast), one device after another. All
        are checked before the first is sent. A 0 µA pulse sends nothing (it does nothing), nor
        does an empty list of addresses."""
        if np.size(addresses) == 0:
            self._check("read_tile", tile=tile)
            return
        addresses, amplitude, width = self._check_pulses(tile, addresses, amplitude_uA, width_ns)
        pulse = self.pulse_generator
        resistance = self.setup.series_resistance_ohm
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
        if np.size(addresses) == 0:
            self._check("read_tile", tile=tile)
            return np.empty(0, dtype=np.float32)
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
        return self.read(tile, np.arange(self.config.columns)).reshape(1, -1)

    def time(self) -> float:
        """Seconds on the bench's clock (the emulated bench's, else the host's since open)."""
        if self.emulated:
            return float(self.smu.ask("time"))
        return self._host_clock() - self._opened_at

    def clock_mode(self) -> str:
        return "VIRT" if self._virtual else "REAL"

    def advance(self, seconds: float) -> None:
        """Advance the emulated bench's virtual clock (NotImplementedError in real time)."""
        if not self._virtual:
            raise NotImplementedError("the bench runs in real time: its clock cannot be advanced")
        self.smu.send("advance", seconds=float(seconds))

    def describe(self) -> dict:
        """Identity and configuration as plain data (for ``info``-style output)."""
        values = {**asdict(self.config), **asdict(self.setup)}
        values["resource"] = self.resource
        values["clock_mode"] = self.clock_mode()
        return values
