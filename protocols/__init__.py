"""The PCM test chip's command protocol: command table, codec, IEEE 488.2 blocks, error codes.

Imports nothing else of pcm-hil; both the emulator (chip side) and the drivers use it.
"""

from .commands import COMMANDS, PROTOCOL_VERSION, SCPI_VERSION
from .errors import ERRORS, ErrorEntry, ErrorQueue, ScpiError

__all__ = [
    "COMMANDS",
    "ERRORS",
    "PROTOCOL_VERSION",
    "SCPI_VERSION",
    "ErrorEntry",
    "ErrorQueue",
    "ScpiError",
]
