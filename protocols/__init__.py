"""The SCPI core and every instrument's command table.

One implementation of the generic machinery — the command tree with short and long forms
and numeric suffixes (``table``), arguments and IEEE 488.2 blocks (``codec``, ``blocks``),
framing (``framing``), the error table and queue and the status registers (``errors``,
``device``), the common commands (``common``) — and one declarative table per instrument on
it: the PCM chip (``chip``), a 2400-class source-measure unit (``smu``), an 81110A-class pulse
generator (``pulse_generator``). The written specifications (``SPEC.md``, ``BENCH.md``) are
rendered from the tables (``spec``).

Imports nothing else of pcm-hil: the emulator (the instrument side) and the drivers (the
host side) both stand on it.
"""

from pcm_hil.protocols.chip import COMMANDS, PROTOCOL_VERSION, ChipInfo
from pcm_hil.protocols.common import SCPI_VERSION, Identity
from pcm_hil.protocols.errors import ErrorEntry, ErrorQueue, ScpiError
from pcm_hil.protocols.pulse_generator import PULSE_GENERATOR_COMMANDS
from pcm_hil.protocols.smu import SMU_COMMANDS

__all__ = [
    "COMMANDS",
    "PROTOCOL_VERSION",
    "PULSE_GENERATOR_COMMANDS",
    "SCPI_VERSION",
    "SMU_COMMANDS",
    "ChipInfo",
    "ErrorEntry",
    "ErrorQueue",
    "Identity",
    "ScpiError",
]
