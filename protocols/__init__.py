"""The PCM test chip's command protocol: command table, codec, IEEE 488.2 blocks, error codes.

Imports nothing else of pcm-hil; both the emulator (chip side) and the drivers use it.
"""

from pcm_hil.protocols.commands import COMMANDS, PROTOCOL_VERSION, SCPI_VERSION
from pcm_hil.protocols.errors import ERRORS, ErrorEntry, ErrorQueue, ScpiError

__all__ = [
    "COMMANDS",
    "ERRORS",
    "PROTOCOL_VERSION",
    "SCPI_VERSION",
    "ErrorEntry",
    "ErrorQueue",
    "ScpiError",
]
