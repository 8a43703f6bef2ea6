"""pcm-hil: drive phase-change-memory test chips and bench instruments, and emulate them.

What a lab script needs is importable from here:

    from pcm_hil import PcmChip, ChipClock, program_and_verify, measure_drift, record, load_run

Names are re-exported lazily (PEP 562): ``import pcm_hil.protocols`` loads the protocol and
nothing of the procedures, and ``from pcm_hil import PcmChip`` loads the driver alone. The
subpackages, one concept each:

- ``pcm_hil.protocols``: the SCPI core and every instrument's command table (chip, SMU,
  pulse generator); ``SPEC.md``.
- ``pcm_hil.emulator``: the chip (and a bench) in software, its servers (TCP, pty, in-process).
- ``pcm_hil.drivers``: the chip driver and the bench-instrument drivers, over any transport.
- ``pcm_hil.targets``: what procedures need of a chip (``typing.Protocol`` classes), the chip
  clock, the bench target.
- ``pcm_hil.documents``: the typed documents every procedure emits.
- ``pcm_hil.procedures``: program-and-verify and its strategies, drift, characterization.
- ``pcm_hil.analog``: weights on the chip, chip-in-the-loop inference and training.
- ``pcm_hil.nn``: the numpy networks. ``pcm_hil.records``: the run store, its metadata,
  ``record`` (a script's own run), resume.
- ``pcm_hil.data``: recorded runs as xarray Datasets (``load_run``) and exported files.
- ``pcm_hil.ui``: progress bar and dashboard. ``pcm_hil.cli``: ``pcm-hil``.
  ``pcm_hil.testing``: the pytest plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # drivers
    "PcmChip": "pcm_hil.drivers.chip",
    "ChipInfo": "pcm_hil.protocols.chip",
    "Identity": "pcm_hil.protocols.chip",
    "PcmHilError": "pcm_hil.drivers.errors",
    "ChipError": "pcm_hil.drivers.errors",
    "PulseLimitError": "pcm_hil.drivers.errors",
    "ChipBusyError": "pcm_hil.drivers.errors",
    "TransportError": "pcm_hil.drivers.errors",
    "ChipTimeoutError": "pcm_hil.drivers.errors",
    "ChipDisconnectedError": "pcm_hil.drivers.errors",
    "ProtocolVersionError": "pcm_hil.drivers.errors",
    "ResourceError": "pcm_hil.drivers.errors",
    "SourceMeter": "pcm_hil.drivers.smu",
    "PulseGenerator": "pcm_hil.drivers.pulse_generator",
    "InstrumentError": "pcm_hil.drivers.instrument",
    # targets
    "Chip": "pcm_hil.targets.protocol",
    "ChipClock": "pcm_hil.targets.clock",
    "BenchTarget": "pcm_hil.targets.bench",
    # procedures
    "program_and_verify": "pcm_hil.procedures.program",
    "ProgramResult": "pcm_hil.procedures.program",
    "level_targets": "pcm_hil.procedures.program",
    "AmplitudeSearch": "pcm_hil.procedures.strategies",
    "PartialSetSteps": "pcm_hil.procedures.strategies",
    "measure_drift": "pcm_hil.procedures.drift",
    "DriftResult": "pcm_hil.procedures.drift",
    "fit_drift": "pcm_hil.procedures.drift",
    "drift_fit": "pcm_hil.procedures.drift",
    "DriftFit": "pcm_hil.procedures.drift",
    "log_times": "pcm_hil.procedures.drift",
    "programming_curve": "pcm_hil.procedures.characterize",
    "accumulation_curve": "pcm_hil.procedures.characterize",
    "read_noise": "pcm_hil.procedures.characterize",
    # analog networks
    "AnalogNetwork": "pcm_hil.analog.network",
    "drift_experiment": "pcm_hil.analog.inference",
    "train_on_chip": "pcm_hil.analog.insitu",
    # records and data
    "RunStore": "pcm_hil.records.store",
    "Recorder": "pcm_hil.records.store",
    "record": "pcm_hil.records.session",
    "RecordedRun": "pcm_hil.records.session",
    "load_run": "pcm_hil.data.load",
    "run_tables": "pcm_hil.data.load",
    "export_run": "pcm_hil.data.export",
    # emulator
    "make_chip": "pcm_hil.emulator",
    "EmulatedChip": "pcm_hil.emulator.chip",
    "FaultPlan": "pcm_hil.emulator.faults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pcm_hil' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from pcm_hil.analog.inference import drift_experiment
    from pcm_hil.analog.insitu import train_on_chip
    from pcm_hil.analog.network import AnalogNetwork
    from pcm_hil.data.export import export_run
    from pcm_hil.data.load import load_run, run_tables
    from pcm_hil.drivers.chip import PcmChip
    from pcm_hil.drivers.errors import (
        ChipBusyError,
        ChipDisconnectedError,
        ChipError,
        ChipTimeoutError,
        PcmHilError,
        ProtocolVersionError,
        PulseLimitError,
        ResourceError,
        TransportError,
    )
    from pcm_hil.drivers.instrument import InstrumentError
    from pcm_hil.drivers.pulse_generator import PulseGenerator
    from pcm_hil.drivers.smu import SourceMeter
    from pcm_hil.emulator import make_chip
    from pcm_hil.emulator.chip import EmulatedChip
    from pcm_hil.emulator.faults import FaultPlan
    from pcm_hil.procedures.characterize import accumulation_curve, programming_curve, read_noise
    from pcm_hil.procedures.drift import (
        DriftFit,
        DriftResult,
        drift_fit,
        fit_drift,
        log_times,
        measure_drift,
    )
    from pcm_hil.procedures.program import ProgramResult, level_targets, program_and_verify
    from pcm_hil.procedures.strategies import AmplitudeSearch, PartialSetSteps
    from pcm_hil.protocols.chip import ChipInfo, Identity
    from pcm_hil.records.session import RecordedRun, record
    from pcm_hil.records.store import Recorder, RunStore
    from pcm_hil.targets.bench import BenchTarget
    from pcm_hil.targets.clock import ChipClock
    from pcm_hil.targets.protocol import Chip
