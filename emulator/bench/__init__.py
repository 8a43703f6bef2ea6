"""An emulated probe-station bench: a source-measure unit, a pulse generator and a switch
matrix wired to N discrete PCM devices, each instrument served as a SCPI socket (TCP).

What is wired to what::

    pulse generator ──R_series──┐
                                ├── switch matrix (1 of N closed) ── device k ── ground
    source-measure unit ────────┘

- The devices are one tile of an ``EmulatedChip`` (``tiles=1, rows=1, columns=N``): the same
  physics (``devices.PcmDevices``), the same seeded generator and the same clock and
  equivalent time as the chip emulator. Device ``k`` of the bench is address ``k − 1`` of
  that tile, so a bench and an ``EmulatedChip`` of the same shape and seed hold the very same
  devices.
- A pulse from the generator (``:ARM:SOUR MAN``, ``:OUTP1 ON``, then ``*TRG``) of high level
  V and width w drives I = V / R_series through the routed device and programs it exactly as
  the chip's pulse of that current and width (``SERIES_RESISTANCE_OHM``).
- ``:READ?`` on the source-measure unit, output on, sourcing voltage V, returns
  ``"<V>,<I>"`` with I = G·V, G the device's read (drift, 1/f read noise) — clipped at the
  current compliance. There is no instrument noise: the devices' read noise is orders of
  magnitude above a 2400-class SMU's on these currents.

The switch matrix lives on the SMU (a route command, as on an SMU mainframe with a switch
card): ``:ROUTe:CLOSe (@k)`` connects device k (1…N) to both instruments and disconnects the
one connected before (a 1-of-N multiplexer); ``:ROUTe:OPEN:ALL`` disconnects every device;
``:ROUTe:CLOSe?`` returns the closed channel as ``(@k)`` or ``(@)``. Power-on and ``*RST``
close channel 1, so a one-device bench needs no routing. With no channel closed a pulse
reaches nothing and ``:READ?`` measures an open circuit (0 A).

Time: a virtual clock by default (moves only when told); commands of the SMU, emulator-only
(no real instrument has them): ``:SYSTem:TIME:ADVance <s>`` advances the bench's virtual
clock; ``:SYSTem:TIME:MODE?`` answers ``VIRT`` or ``REAL``; ``:SYSTem:TIME?`` is the clock in
seconds (on a 2400 it is the time stamp since power-on); ``:ROUTe:COUNt?`` is N. With
``real_time=True`` the clock is the wall clock and ``:SYST:TIME:ADV`` is refused (-221).

Each instrument is its command table (``pcm_hil.protocols.smu``,
``pcm_hil.protocols.pulse_generator``) on the one SCPI core (``pcm_hil.protocols.device``),
served by the one TCP server (``pcm_hil.emulator.servers.tcp``): the same framing, error
queue, status registers and error codes as the chip (``protocols/BENCH.md`` lists the rows).
Unknown headers give -113, a channel suffix other than 1 gives -114, values outside a range
-222, settings that conflict (an output that is off, a trigger that is not armed) -221. A
rejected command changes nothing. A query that fails sends no reply (IEEE 488.2): the
client times out or, better, reads the error queue.

Modules: ``devices`` (the devices, the switch, the series resistor), ``smu``,
``pulse_generator``; here the bench that wires them together and its servers.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from pcm_hil.emulator.bench.devices import (
    LOW_LEVEL_MAX_V,
    SERIES_RESISTANCE_OHM,
    SOURCE_VOLTAGE_MAX_V,
    BenchDevices,
)
from pcm_hil.emulator.bench.pulse_generator import PulseGeneratorEmulator
from pcm_hil.emulator.bench.smu import SourceMeterEmulator
from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.chip import EmulatedChip
from pcm_hil.emulator.servers.tcp import Network, TcpServer

__all__ = [
    "LOW_LEVEL_MAX_V",
    "SERIES_RESISTANCE_OHM",
    "SOURCE_VOLTAGE_MAX_V",
    "BenchDevices",
    "BenchServer",
    "EmulatedBench",
    "PulseGeneratorEmulator",
    "SourceMeterEmulator",
    "serve_forever",
]


class EmulatedBench:
    """N devices, an SMU with the switch matrix and a pulse generator, all wired together.
    ``options`` go to ``BenchDevices`` (``real_time``, ``model``, ``series_resistance_ohm``)."""

    def __init__(self, devices: int = 16, seed: int = 0, **options: Any) -> None:
        self.seed = seed
        self.dut = BenchDevices(devices, seed, **options)
        self.smu = SourceMeterEmulator(self.dut)
        self.pulse_generator = PulseGeneratorEmulator(self.dut)

    @property
    def chip(self) -> EmulatedChip:
        """The emulated chip holding the bench's devices (tile 0, address = channel − 1)."""
        return self.dut.chip

    def serve(
        self,
        host: str = "127.0.0.1",
        smu_port: int = 0,
        pulse_port: int = 0,
        allow: Iterable[str | Network] = (),
    ) -> BenchServer:
        """Both instruments on TCP sockets (not started: use as a context manager or start());
        ``allow``: the networks served besides this machine (needed beyond loopback)."""
        return BenchServer(self, host, smu_port, pulse_port, allow)


class BenchServer:
    """The SMU and the pulse generator of a bench, each a ``TCPIP0::host::port::SOCKET``."""

    def __init__(
        self,
        bench: EmulatedBench,
        host: str,
        smu_port: int,
        pulse_port: int,
        allow: Iterable[str | Network] = (),
    ) -> None:
        self.bench = bench
        allow = tuple(allow)
        self.smu = TcpServer(bench.smu, host=host, port=smu_port, allow=allow)
        try:
            self.pulse = TcpServer(bench.pulse_generator, host=host, port=pulse_port, allow=allow)
        except BaseException:
            self.smu.stop()
            raise

    @property
    def resources(self) -> dict[str, str]:
        return {"SMU": self.smu.resource, "PULSE": self.pulse.resource}

    @property
    def bench_resource(self) -> str:
        """``SMU_RESOURCE,PULSE_RESOURCE``: what ``--bench`` and ``BenchTarget.open`` take."""
        return f"{self.smu.resource},{self.pulse.resource}"

    def start(self) -> BenchServer:
        self.smu.start()
        self.pulse.start()
        return self

    def stop(self) -> None:
        self.smu.stop()
        self.pulse.stop()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(
    devices: int = 16,
    seed: int = 0,
    host: str = "127.0.0.1",
    smu_port: int = 5100,
    pulse_port: int = 5101,
    *,
    allow: Iterable[str | Network] = (),
    real_time: bool = False,
    model: PcmModel = DEFAULT_MODEL,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """``pcm-hil emulator bench``: serve a bench until Ctrl-C or SIGTERM. Prints one line per
    instrument on ``out``: ``SMU <resource>`` then ``PULSE <resource>``."""
    out = out or sys.stdout
    err = err or sys.stderr
    bench = EmulatedBench(devices, seed, real_time=real_time, model=model)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with bench.serve(host, smu_port, pulse_port, allow) as server:
        for name, resource in server.resources.items():
            print(f"{name} {resource}", file=out, flush=True)
        print(
            f"serving an emulated bench ({devices} devices on a 1-of-{devices} switch, seed "
            f"{seed}, {SERIES_RESISTANCE_OHM:g} Ω series resistor, "
            f"{'real-time' if real_time else 'virtual'} clock); Ctrl-C stops",
            file=err,
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
