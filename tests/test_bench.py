"""The emulated bench (SMU + pulse generator + switch, served over TCP) and the bench target
that drives it like a chip, through the instrument drivers over pyvisa-py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pcm_hil.drivers import ChipError, PcmChip, PulseLimitError
from pcm_hil.drivers.instrument import InstrumentError
from pcm_hil.drivers.pulse_generator import PulseGenerator
from pcm_hil.drivers.smu import SourceMeter
from pcm_hil.emulator.bench import EmulatedBench
from pcm_hil.emulator.chip import ChipConfig, EmulatedChip
from pcm_hil.procedures.characterize import programming_curve
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.targets.bench import BenchTarget
from pcm_hil.targets.clock import ChipClock
from pcm_hil.targets.protocol import Chip

DEVICES = 16
SEED = 1234
CLI = (sys.executable, "-m", "pcm_hil.cli")
PORTS = ("--smu-port", "0", "--pulse-port", "0")  # any free ports


@pytest.fixture
def bench():
    """An emulated bench of 16 devices served on 127.0.0.1 (any free ports)."""
    bench = EmulatedBench(DEVICES, seed=SEED)
    with bench.serve() as server:
        bench.server = server
        yield bench


@pytest.fixture
def target(bench):
    with BenchTarget.open(bench.server.bench_resource, timeout_s=5) as target:
        yield target


def _reference_chip(seed: int, devices: int = DEVICES) -> EmulatedChip:
    """An in-process chip holding the bench's devices: the same shape and seed."""
    return EmulatedChip(ChipConfig(tiles=1, rows=1, columns=devices), np.random.default_rng(seed))


# --- the instruments on the wire -------------------------------------------------------------


def test_instruments_speak_scpi(bench):
    with (
        SourceMeter(bench.server.smu.resource) as smu,
        PulseGenerator(bench.server.pulse.resource) as pulse,
    ):
        assert smu.identify().startswith("PCM-HIL,EMULATED-SMU-2400,")
        assert pulse.identify().startswith("PCM-HIL,EMULATED-PULSE-81110,")
        assert smu.read_error() == (0, "No error")
        smu.write(":NOT:A:COMMand")
        assert smu.read_error() == (-113, "Undefined header;:NOT:A:COMMand")
        smu.write(":SOUR:VOLT:LEV 5")  # beyond the bench's 1 V read protection
        code, message = smu.read_error()
        assert code == -222 and message.startswith("Data out of range")
        smu.write(":ROUT:CLOS (@17)")
        assert smu.read_error()[0] == -222
        smu.write(":ROUT:CLOS (@3)")
        assert smu.query(":ROUT:CLOS?") == "(@3)"
        smu.write(":OUTP OFF")
        smu.write(":READ?")  # refused: no reply, an entry in the queue
        assert smu.read_error() == (-221, "Settings conflict;output off: turn it on with :OUTP ON")
        smu.write("*CLS")
        smu.configure_current_read(0.2, 1e-4, 1)
        smu.output_enabled = True
        volts, amps = smu.measure()
        expected = bench.chip.devices.drifted(0, 2, 0.0) * 1e-6 * 0.2
        assert volts == pytest.approx(0.2) and 0 < amps < 3 * expected  # RESET: 1/f noise ≈ 70%
        smu.write("*RST")
        assert smu.output_enabled is False and smu.query(":ROUT:CLOS?") == "(@1)"
        # the pulse generator: one pulse per *TRG, armed MAN, output on
        pulse.arm_source = "MAN"
        pulse.output_enabled = True
        pulse.width_s = 50e-9
        pulse.high_level_V = 0.5  # 500 µA through 1 kΩ: a RESET
        before = bench.dut.pulses_applied
        pulse.trigger()
        assert bench.dut.pulses_applied == before + 1
        assert bench.chip.devices.g_prog[0, 0] < 1.0  # device 1 (channel 1) melt-quenched
        # the virtual clock, emulator-only commands on the SMU
        assert smu.query(":SYST:TIME:MODE?") == "VIRT"
        smu.write(":SYST:TIME:ADV 3600")
        assert float(smu.query(":SYST:TIME?")) == pytest.approx(3600.0)


def test_pulse_physics_is_the_chips(target, bench):
    """Bench pulses and reads, device by device, do exactly what the same calls on a chip
    of the same seed do: the same devices, the same draws, the same conductances."""
    assert isinstance(target, Chip)
    reference = _reference_chip(SEED)
    rng = np.random.default_rng(7)
    reads, expected = [], []
    for _ in range(3):
        addresses = rng.permutation(DEVICES)[:10]
        currents = rng.uniform(60.0, 560.0, addresses.size).round(1)
        widths = rng.choice([50.0, 100.0, 400.0], addresses.size)
        target.pulse(0, addresses, currents, widths)
        for address, current, width in zip(addresses, currents, widths, strict=True):
            reference.pulse(0, np.array([address]), current, width)
        reads.append(target.read(0, addresses))
        expected.append(np.concatenate([reference.read_devices(0, [a]) for a in addresses]))
        target.advance(100.0)
        reference.advance(100.0)
    np.testing.assert_allclose(bench.chip.devices.g_prog, reference.devices.g_prog, rtol=1e-6)
    np.testing.assert_allclose(bench.chip.devices.nu, reference.devices.nu, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(reads), np.concatenate(expected), rtol=1e-5)
    assert target.time() == pytest.approx(300.0) and target.clock_mode() == "VIRT"


# --- procedures on the bench ----------------------------------------------------------------------


def test_program_and_verify_matches_the_chip():
    """16 devices to 8 levels through the switch, for 3 seeds: the bench reaches the precision
    the emulated chip reaches on the same devices (same seeds)."""
    targets = level_targets(8, 25.0)[np.arange(DEVICES) % 8]
    bench_runs, chip_runs = [], []
    for seed in (0, 1, 2):
        bench = EmulatedBench(DEVICES, seed=seed)
        with bench.serve() as server, BenchTarget.open(server.bench_resource) as target:
            bench_runs.append(program_and_verify(target, 0, np.arange(DEVICES), targets))
            assert target.pulses_sent >= DEVICES
        with PcmChip.open(f"emulator?seed={seed}&tiles=1&rows=1&columns={DEVICES}") as chip:
            chip_runs.append(program_and_verify(chip, 0, np.arange(DEVICES), targets))

    def pooled(runs):
        converged = np.concatenate([r.converged for r in runs])
        error = np.concatenate([r.error_uS for r in runs])
        return converged.mean(), float(error[converged].std())

    (bench_converged, bench_std), (chip_converged, chip_std) = pooled(bench_runs), pooled(chip_runs)
    assert bench_converged >= 0.9 and chip_converged >= 0.9
    assert abs(bench_converged - chip_converged) <= 0.1
    assert abs(bench_std - chip_std) <= 0.3  # µS; both near the published σ_prog (≈1 µS)
    assert 0.4 < bench_std < 1.3


def test_drift_recovers_nu(target, bench):
    targets = level_targets(4, 25.0)[np.arange(DEVICES) % 4]
    result = measure_drift(
        target,
        ChipClock(target),
        0,
        np.arange(DEVICES),
        targets,
        log_times(1.0, 1e6, 10),
        reads_per_point=4,
    )
    assert result.status == "completed"
    assert result.good.sum() >= 12
    true_nu = bench.chip.devices.nu[0, result.address]
    error = np.abs(result.nu - true_nu)[result.good]
    assert np.median(error) < 0.006
    assert abs(result.nu[result.good].mean() - true_nu[result.good].mean()) < 0.005
    assert target.time() >= 1e6  # the schedule ran on the bench's virtual clock


def test_programming_curve_matches_the_chip(target):
    currents = np.linspace(220.0, 540.0, 9)
    curve = programming_curve(target, 0, np.arange(DEVICES), currents)
    assert curve.status == "completed" and curve.devices == DEVICES
    assert curve.mean_uS[0] > 20.0 and curve.mean_uS[-1] < 0.5
    assert curve.mean_uS[0] > curve.mean_uS[4] > curve.mean_uS[-1]
    with PcmChip.open(f"emulator?seed={SEED}&tiles=1&rows=1&columns={DEVICES}") as chip:
        reference = programming_curve(chip, 0, np.arange(DEVICES), currents)
    np.testing.assert_allclose(curve.mean_uS, reference.mean_uS, atol=2.5)


# --- limits and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amplitude_uA", "width_ns"),
    [([300.0, 700.0], 50.0), (300.0, [50.0, 5.0]), (300.0, 2000.0), (-10.0, 50.0)],
)
def test_out_of_range_pulse_never_reaches_the_wire(target, bench, amplitude_uA, width_ns):
    messages = (bench.smu.messages, bench.pulse_generator.messages)
    state = bench.chip.devices.snapshot()
    with pytest.raises(PulseLimitError) as refused:
        target.pulse(0, [0, 1], amplitude_uA, width_ns)
    assert refused.value.code == 101 and refused.value.sent is False
    assert (bench.smu.messages, bench.pulse_generator.messages) == messages
    for name, values in bench.chip.devices.snapshot().items():
        np.testing.assert_array_equal(values, state[name])


@pytest.mark.parametrize("address", [2**32 + 1, -1, 16])
def test_an_address_off_the_bench_is_refused_not_wrapped(target, bench, address):
    """2**32 + 1 must not reach channel 2 (a cast to 32 bits would wrap it there)."""
    messages = (bench.smu.messages, bench.pulse_generator.messages)
    with pytest.raises(ChipError) as refused:
        target.pulse(0, [address], 300.0, 100.0)
    assert refused.value.code == -222 and refused.value.sent is False
    with pytest.raises(ChipError):
        target.read(0, [address])
    assert (bench.smu.messages, bench.pulse_generator.messages) == messages


def test_pulse_levels_and_widths_are_sent_as_given(target, bench):
    """The checks use the chip's float32 rows; the values sent are the float64 ones given."""
    target.pulse(0, [3], 123.4, 33.3)
    assert bench.pulse_generator.settings["high_level"] == 0.1234
    assert bench.pulse_generator.settings["width"] == 3.33e-08
    assert target.read(0, []).shape == (0,)  # nothing asked, nothing read
    target.pulse(0, [], 300.0, 50.0)  # nothing to pulse: nothing sent, no error


def test_instrument_error_is_typed(bench):
    """A target that believes the device takes 800 µA: the generator's protection refuses
    the 0.7 V level, and the driver raises its error with the instrument's code and message."""
    state = bench.chip.devices.snapshot()
    with BenchTarget.open(
        bench.server.bench_resource, timeout_s=0.5, pulse_amplitude_max_uA=800.0
    ) as target:
        with pytest.raises(InstrumentError) as refused:
            target.pulse(0, [2], 700.0, 50.0)
        assert refused.value.code == -222
        assert refused.value.message == "Data out of range;volts=0.7 V outside [-0.6, 0.6] V"
        assert "81110A" in str(refused.value)
        np.testing.assert_array_equal(bench.chip.devices.g_prog, state["g_prog"])
        # a query the SMU refuses gets no reply: the target reads the queue after the timeout
        target.smu.output_enabled = False
        with pytest.raises(InstrumentError) as refused:
            target.read(0, [0])
        assert refused.value.code == -221 and "output off" in refused.value.message


# --- the command line ----------------------------------------------------------------------------


def test_cli_bench_serves_and_programs(tmp_path):
    env = {**os.environ, "PCM_HIL_RUNS": str(tmp_path / "runs.sqlite")}
    server = subprocess.Popen(
        [*CLI, "emulator", "bench", *("--devices", "8", "--seed", "3"), *PORTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 2 and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line.split())
        assert [line[0] for line in lines] == ["SMU", "PULSE"]
        assert all(line[1].startswith("TCPIP0::127.0.0.1::") for line in lines)
        assert all(line[1].endswith("::SOCKET") and len(line) == 2 for line in lines)
        resources = f"{lines[0][1]},{lines[1][1]}"
        run = subprocess.run(
            [*CLI, "program", "--bench", resources, "--json", "--levels", "4"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert summary["status"] == "completed" and summary["devices"] == 8
        assert summary["converged_fraction"] >= 0.75
        assert summary["resource"] == f"bench:{resources}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()
