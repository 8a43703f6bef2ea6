"""The commands every instrument answers: IEEE 488.2 common commands and the SCPI system
subsystem's error queue and version. Each instrument's table starts with these rows.

Also ``Identity``, the four fields of ``*IDN?`` as the reply row names them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pcm_hil.protocols.table import Arg, Command, Reply

#: The SCPI version the command syntax follows (reply of SYSTem:VERSion?).
SCPI_VERSION = "1999.0"

COMMON_GROUP = "IEEE 488.2 common commands"
SYSTEM_GROUP = "System"

IDENTIFY = Command(
    "*IDN?",
    "identify",
    "Identity: manufacturer, model, serial number, firmware version.",
    reply=Reply(
        "text",
        "Four comma-separated fields: MANUFACTURER,MODEL,SERIAL,FIRMWARE.",
        fields=("manufacturer", "model", "serial", "firmware"),
    ),
    group=COMMON_GROUP,
)

ERROR_NEXT = Command(
    "SYSTem:ERRor[:NEXT]?",
    "error_next",
    'Remove and return the oldest error-queue entry; 0,"No error" when empty.',
    reply=Reply("error", 'An entry <code>,"<message>[;<detail>]".'),
    group=SYSTEM_GROUP,
)


def common_commands(reset_doc: str, self_test_doc: str) -> tuple[Command, ...]:
    """The IEEE 488.2 common commands and ``SYSTem:ERRor``/``VERSion``, with the instrument's
    own words for what ``*RST`` resets and what ``*TST?`` tests."""
    rows = (
        IDENTIFY,
        Command("*RST", "reset", reset_doc),
        Command("*CLS", "clear_status", "Clear the error queue and the event status register."),
        Command(
            "*OPC",
            "operation_complete",
            "Set the operation-complete bit (bit 0) of the event status register once all "
            "pending operations are done (commands execute in order, so at once).",
        ),
        Command(
            "*OPC?",
            "operation_complete_query",
            "Answer 1 once all pending operations are done.",
            reply=Reply("int", "Always 1."),
        ),
        Command(
            "*WAI",
            "wait_to_continue",
            "Wait until all pending operations are done (commands execute in order: no-op).",
        ),
        Command(
            "*ESR?",
            "event_status_query",
            "Read and clear the event status register: bit 0 operation complete, 2 query "
            "error, 3 device-specific error, 4 execution error, 5 command error.",
            reply=Reply("int", "Register value 0…255."),
        ),
        Command(
            "*ESE",
            "event_status_enable",
            "Set the event status enable mask (which ESR bits set the ESB bit of *STB?).",
            args=(Arg("mask", "int", "Enable mask.", minimum=0, maximum=255),),
        ),
        Command(
            "*ESE?",
            "event_status_enable_query",
            "The event status enable mask.",
            reply=Reply("int", "Mask 0…255."),
        ),
        Command(
            "*STB?",
            "status_byte_query",
            "Status byte: bit 2 (4) error queue not empty, bit 5 (32) event status summary "
            "(ESR AND ESE non-zero). Reading it clears nothing.",
            reply=Reply("int", "Status byte 0…255."),
        ),
        Command("*TST?", "self_test_query", self_test_doc, reply=Reply("int", "0 pass, 1 fail.")),
    )
    system = (
        ERROR_NEXT,
        Command(
            "SYSTem:ERRor:COUNt?",
            "error_count",
            "Number of entries in the error queue.",
            reply=Reply("int", "Entry count 0…32."),
        ),
        Command(
            "SYSTem:VERSion?",
            "scpi_version",
            "The SCPI version the syntax follows.",
            reply=Reply("text", "YYYY.V, e.g. 1999.0."),
        ),
    )
    return tuple(replace(row, group=COMMON_GROUP) for row in rows) + tuple(
        replace(row, group=SYSTEM_GROUP) for row in system
    )


@dataclass(frozen=True)
class Identity:
    """What ``*IDN?`` answers, field by field."""

    manufacturer: str
    model: str
    serial: str
    firmware: str

    @classmethod
    def parse(cls, reply: str) -> Identity:
        """The identity in a ``*IDN?`` reply; ValueError if it has not the four fields."""
        fields = [field.strip() for field in reply.strip().split(",")]
        if len(fields) != len(IDENTIFY.reply.fields):
            raise ValueError(
                f"*IDN? answered {reply[:80]!r}: not {len(IDENTIFY.reply.fields)} fields"
            )
        return cls(*fields)

    def reply(self) -> str:
        """The ``*IDN?`` reply text."""
        return ",".join(getattr(self, name) for name in IDENTIFY.reply.fields)
