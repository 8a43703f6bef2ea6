"""A PCM test chip in software, and the reference implementation of the chip protocol.

Layers: ``calibration`` (constants with sources) → ``devices`` (vectorized physics) →
``crossbar`` (MVM) → ``chip`` (tiles, clock, temperature) → ``wire`` (the protocol) →
``tcp`` / ``pty`` servers (and the driver's in-process transport).
"""

from __future__ import annotations

import numpy as np

from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.chip import DEFAULT_PROFILE, PROFILES, ChipConfig, EmulatedChip
from pcm_hil.emulator.wire import WireInterface


def make_chip(profile: str = DEFAULT_PROFILE, seed: int = 0, **overrides) -> EmulatedChip:
    """An emulated chip of a named profile, seeded; ``overrides`` change ChipConfig fields."""
    try:
        config = PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown chip profile {profile!r}; known: {', '.join(PROFILES)}"
        ) from None
    return EmulatedChip(config.with_overrides(**overrides), np.random.default_rng(seed))


__all__ = [
    "DEFAULT_MODEL",
    "PROFILES",
    "ChipConfig",
    "EmulatedChip",
    "PcmModel",
    "WireInterface",
    "make_chip",
]
