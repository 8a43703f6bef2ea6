"""Drivers: the PCM test-chip driver and the bench-instrument drivers, over any transport
(VISA, raw socket, pyserial, or one a package registers, such as the in-process emulator)."""

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
from pcm_hil.protocols.chip import ChipInfo
from pcm_hil.protocols.common import Identity

__all__ = [
    "ChipBusyError",
    "ChipDisconnectedError",
    "ChipError",
    "ChipInfo",
    "ChipTimeoutError",
    "Identity",
    "PcmChip",
    "PcmHilError",
    "ProtocolVersionError",
    "PulseLimitError",
    "ResourceError",
    "TransportError",
]
