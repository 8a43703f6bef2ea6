"""The PCM test chip (and a probe-station bench) in software, serving the same protocol.

Layers: ``calibration`` (constants with sources) → ``devices`` (vectorized physics) →
``crossbar`` (MVM) → ``chip`` (tiles, clock, temperature) → ``wire`` (the chip's command
table on the SCPI core) → ``servers`` (TCP, pty, in process). ``resource`` parses the
``emulator?…`` resource; ``faults`` misbehaves on purpose; ``bench`` is an SMU, a pulse
generator and a switch wired to the same device physics.
"""

from __future__ import annotations

from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.chip import PROFILES, ChipConfig, EmulatedChip, make_chip
from pcm_hil.emulator.resource import EmulatorOptions
from pcm_hil.emulator.wire import WireInterface

__all__ = [
    "DEFAULT_MODEL",
    "PROFILES",
    "ChipConfig",
    "EmulatedChip",
    "EmulatorOptions",
    "PcmModel",
    "WireInterface",
    "make_chip",
]
