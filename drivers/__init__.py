"""Drivers: the PCM test-chip driver over VISA, raw serial or the in-process emulator."""

from pcm_hil.drivers.chip import ChipConfiguration, Identity, PcmChip
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

__all__ = [
    "ChipBusyError",
    "ChipConfiguration",
    "ChipDisconnectedError",
    "ChipError",
    "ChipTimeoutError",
    "Identity",
    "PcmChip",
    "PcmHilError",
    "ProtocolVersionError",
    "PulseLimitError",
    "ResourceError",
    "TransportError",
]
