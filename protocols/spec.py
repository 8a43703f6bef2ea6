"""Render the written specifications from the command tables: ``protocols/SPEC.md`` (the
PCM chip) and ``protocols/BENCH.md`` (the source-measure unit and the pulse generator as the
emulated bench serves them).

``python -m pcm_hil.protocols.spec`` prints them; ``python -m pcm_hil.protocols.spec --write``
rewrites both files; a test fails when a file and its table disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pcm_hil.protocols.blocks import MAX_BLOCK_BYTES
from pcm_hil.protocols.chip import COMMANDS, PROTOCOL_VERSION
from pcm_hil.protocols.common import SCPI_VERSION
from pcm_hil.protocols.limits import DEFAULT_LIMITS
from pcm_hil.protocols.pulse_generator import PULSE_GENERATOR_COMMANDS
from pcm_hil.protocols.smu import SMU_COMMANDS
from pcm_hil.protocols.table import Arg, Bound, Command, CommandTable

SPEC_PATH = Path(__file__).with_name("SPEC.md")
BENCH_PATH = Path(__file__).with_name("BENCH.md")

L = DEFAULT_LIMITS

PREAMBLE = f"""\
# PCM test-chip protocol, version {PROTOCOL_VERSION}

This file is generated from `protocols/chip.py` by `python -m pcm_hil.protocols.spec --write`;
edit the table, not this file. It is the contract between the driver and a chip: the
emulator in `emulator/` implements it, and a firmware engineer can implement it on a board.

## 1. Transport and framing
- Byte stream over TCP (a VISA `TCPIP0::<host>::<port>::SOCKET` resource, default port 5025)
  or a serial line (8N1, 115200 baud unless configured otherwise, no flow control).
- A *program message* (host → chip) and a *response message* (chip → host) each end with one
  LF (0x0A). A CR (0x0D) immediately before the LF is ignored. An LF inside a definite-length
  binary block is data, not a terminator.
- A message holds one or more *units* separated by `;`. Every unit is interpreted from the
  root of the command tree (the SCPI "implied path" is not used): `CHIP:GEOM?;CHIP:GMAX?`.
- The responses of the query units of one message are joined by `;` into one response
  message. A message without queries gets no response.
- Units execute in order, each completely before the next is parsed. At the first unit in
  error, the error is queued and the rest of the message is discarded; units already executed
  stay executed. A message executes only once its LF has arrived: a connection that drops
  mid-message leaves no partial command applied.
- A `#` followed by a digit starts a block only where a block may be: at the start of an
  argument (after the header and a space, or after `,`, or right after another block) of a
  unit whose header has a block argument. Anywhere else `#` is text, so a malformed line
  costs that line and nothing after it: `FOO #15` is one message (error -113), the next
  line is read as a message of its own.
- One client at a time. On TCP, a connection made while another is open waits up to 1 s for
  it to close (so that a client reconnecting at once is served); if the other is still open
  then, it receives a single line `105,"Chip busy;another client controls this chip"` and is
  closed. The first client is not disturbed.
- On a serial line, a client closing the port hangs the line up: the chip drops a partial
  message and any response not yet read, so the next session starts clean. A client that
  reopens the port within a few milliseconds may leave no hang-up to see; its predecessor's
  partial message is then dropped after the partial-message timeout (section 1.1).

### 1.1 Limits of one connection
What one connection may cost the chip is bounded, so that no sequence of bytes a client
sends raises the chip's memory by more than a fixed amount. The values are the defaults of
`pcm_hil.protocols.limits.ServingLimits`; `pcm-hil emulator serve` sets the timeouts
(`--partial-timeout`, `--idle-timeout`, `--stall-timeout`).

| limit | default | when exceeded |
|---|---|---|
| non-block text of one message | {L.max_text_bytes} bytes | -363; the message is discarded up to its LF |
| one block's announced length | {MAX_BLOCK_BYTES} bytes | -223 at the header; the message is discarded up to the next LF |
| all blocks of one message | {L.max_message_bytes} bytes | -223; the block's announced bytes are skipped unstored, then the message up to its LF |
| one query's reply (block header not counted) | {L.max_reply_bytes} bytes | -225 "Out of memory"; the query is refused before its reply is made where it can tell (MVM), else its reply is dropped; nothing is sent |
| input vectors of one MVM | the chip's `MVM:BATCh?`: at most 16384, and no more than fit one message and one reply at the chip's widest window (16384 at 256 columns, 8192 at 512) | 106 "Batch too large" |
| connections open at once (served, or waiting for the chip) | {L.max_connections} | the connection gets the busy line (105) and is closed |
| a partial message (a line without its LF, a block not complete) with nothing more | {L.partial_timeout_s:g} s | the connection is closed and the partial message discarded: the chip is free for the next client |
| a partial message arriving slower than {L.partial_min_rate_Bps:g} B/s on average (held longer than {L.partial_timeout_s:g} s + its bytes / that rate) | | the same: a trickle cannot hold the chip |
| a connection idle between messages | {"none" if L.idle_timeout_s is None else f"{L.idle_timeout_s:g} s"} | the connection is closed |
| a client reading nothing of a response | {L.send_stall_timeout_s:g} s | the connection is closed |

- Responses are sent as each query runs: the response of one unit is on its way before the
  next unit executes, and the next message is read only once the last response is sent. A
  client that sends queries without reading their responses is therefore no longer read
  (TCP flow control holds it back) until it reads; a client that reads, however slowly,
  gets every byte of every response.
- Clients are expected to read every response they asked for before sending further
  queries.
- On TCP the emulator listens on loopback (127.0.0.1) unless told otherwise; bound to any
  other (IPv4) address it serves only the networks it is given (`--allow CIDR[,CIDR…]`) and
  this machine (loopback and its own addresses): a connection from anywhere else is closed
  at once, unanswered, and logged. TCP keep-alive probes find a client whose machine vanished
  without closing its connection after about two minutes, and free the chip.

## 2. Syntax of a unit
- Header: SCPI mnemonics separated by `:`, each in its short form (the capitals in this
  specification) or its long form, in any case; a leading `:` is allowed; nodes in `[ ]` may
  be omitted. Queries end with `?`. IEEE 488.2 common commands start with `*`.
- Arguments follow the header after one or more spaces, separated by `,`.
  - *int*: decimal integer, optional sign (`12`, `+3`). Else -104.
  - *float*: decimal number, optional sign and exponent (`0.2`, `1e-3`, `-5.`). No NaN, INF or
    suffixes. Else -104.
  - *enum*: one of the listed mnemonics, short or long form, any case. Else -224.
  - *block*: IEEE 488.2 definite-length arbitrary block `#<n><length><data>`: `n` one digit
    1–9, then `n` decimal digits giving the byte count, then the bytes. The indefinite form
    `#0<data>` is accepted as the last argument of a message: its data runs to the LF and so
    cannot contain 0x0A. Array elements are little-endian, of the dtype given per argument
    (`<u4` unsigned 32-bit integer, `<f4` IEEE 754 binary32). A block whose length is not a
    whole number of elements: -160. A malformed header: -161. A block where a number is
    expected: -168; a number where a block is expected: -104.
- Too many arguments: -108. Too few: -109. Unknown header: -113. Bad characters: -101/-102.
- Ranges are checked after parsing: a value outside its range gives -222 unless the row says
  otherwise (pulse amplitudes and widths give 101). A block argument is checked element by
  element (NaN and infinities are out of range) and its element count against the rule given.
  Bounds in *italics* are the chip's configuration values (section 5).
- A command that reports an error has changed nothing.

## 3. Responses
- *int*: decimal integer. *float*: decimal in the shortest form that reads back to the same
  IEEE 754 binary64 value (`0.2`, `1e-05`). *ints*/*floats*: comma-separated. *text*:
  ASCII, unquoted. *enum*: the short form of the mnemonic. *block*: a definite-length block,
  always `#` and a non-zero digit, little-endian elements of the dtype given per query.
- Error-queue entries: `<code>,"<message>[;<detail>]"`; a `"` inside the text is doubled.

## 4. Status and errors
- The error queue holds up to 32 entries, first in first out. When it is full, the newest
  entry is replaced by -350 and further errors are dropped until an entry is read.
  `SYST:ERR?` on an empty queue answers `0,"No error"`.
- Event status register (`*ESR?`, read-and-clear): bit 0 (1) operation complete (`*OPC`),
  bit 2 (4) query error (-4xx), bit 3 (8) device-specific error (-3xx and positive codes),
  bit 4 (16) execution error (-2xx), bit 5 (32) command error (-1xx).
- Status byte (`*STB?`): bit 2 (4) error queue not empty; bit 5 (32) ESR AND ESE non-zero.
- Recommended host practice (what the pcm-hil driver does): send a command, then
  `SYST:ERR?` in the same write, and read the entry; for a query that takes arguments, send
  `<query>\\n` + `SYST:ERR?\\n` and read the reply — if the query failed, the only response is
  the error entry.

## 5. Configuration values
The bounds written in *italics* below are the chip's own values, which it reports:
*tiles*, *rows*, *columns* (`CHIP:GEOM?`), *devices_per_tile* = rows × columns,
*pulse_amplitude_max_uA*, *pulse_width_min_ns*, *pulse_width_max_ns* (`CHIP:LIM?`),
*temperature_min_K*, *temperature_max_K* (`CHIP:TEMP:LIM?`). A host must read them before
sending pulses and must refuse out-of-limit pulses itself; the chip refuses them too.
`name-1` means one less than that value. Addresses are flat indices within a tile:
`row × columns + column`.

## 6. Versioning
`SYST:PROT?` answers `MAJOR.MINOR` (now `{PROTOCOL_VERSION}`). A change that alters or removes a
command raises MAJOR; adding commands raises MINOR. Hosts refuse a chip whose MAJOR differs
from theirs. `SYST:VERS?` answers the SCPI version followed ({SCPI_VERSION}).
"""


BENCH_PREAMBLE = """\
# The emulated bench: source-measure unit and pulse generator

This file is generated from `protocols/smu.py` and `protocols/pulse_generator.py` by
`python -m pcm_hil.protocols.spec --write`; edit the tables, not this file. It is what
`pcm-hil emulator bench` serves — a subset of the SCPI of a 2400-class SMU and of an
81110A-class pulse generator, plus a few emulator-only rows — and what the drivers
`pcm_hil.drivers.smu` and `pcm_hil.drivers.pulse_generator` send, derived from the same rows.

## 1. Wire and syntax
- Each instrument is its own TCP socket (`TCPIP0::<host>::<port>::SOCKET`); several clients
  may connect, their messages run one at a time. Framing, units, the error queue and the
  status registers are those of the chip protocol (`SPEC.md`, sections 1, 2 and 4): one SCPI
  core serves all three instruments.
- Headers may carry a numeric suffix where a node is written `#` (a channel: `:VOLT1:HIGH`;
  1 when absent). A suffix outside 1…(the row's maximum) gives -114; a suffix on a node that
  takes none, -113.
- Numbers may be written `MIN`/`MAX` where a row says so (the bounds). Booleans `ON`, `OFF`,
  `1`, `0`. Strings are quoted (`'CURR'` or `"CURR"`). A channel list is `(@k)`, `(@1,3)`
  or `(@1:4)`.
- Replies: numbers in NR3 (`+1.050000E-04`), booleans `1`/`0`, mnemonics in their short form.
- Bounds in *italics* are the instrument's own values: on the emulated bench
  *source_voltage_max_V* is 1 V, *high_level_max_V* the level of the devices' safe current
  through the series resistor (0.6 V at 600 µA and 1 kΩ), *low_level_max_V* 0.02 V,
  *channels* 1 (pulse generator) and the switch's channel count (SMU). The drivers use the
  real instruments' values (210 V, 10 V, 10 V, 2 channels).
"""


def _bound(value: Bound) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return f"*{value}*"
    return f"{value:g}"


def _arg_row(arg: Arg) -> str:
    kind = f"block `{arg.dtype}`" if arg.kind == "block" else arg.kind
    if arg.choices:
        kind += " (" + " \\| ".join(arg.choices) + ")"
    low, high = _bound(arg.minimum), _bound(arg.maximum)
    bounds = f"{low or '−∞'} … {high or '+∞'}" if (low or high) else "any"
    extra = []
    if arg.length is not None:
        extra.append("length: " + arg.length.describe())
    if arg.unique:
        extra.append("no value twice (else 103)")
    if arg.range_error != -222:
        extra.append(f"out of range: {arg.range_error}")
    if arg.keywords:
        extra.append("MIN and MAX name the bounds")
    if arg.repeat:
        extra.append("one or more, comma-separated")
    notes = arg.doc + (" " + "; ".join(extra).capitalize() + "." if extra else "")
    return f"| `{arg.name}` | {kind} | {arg.unit or '—'} | {bounds} | {notes} |"


def _command_section(command: Command, table: CommandTable) -> list[str]:
    lines = [f"#### `{command.header}`", ""]
    forms = f"Short form `{command.short_form}`, long form `{command.long_form}`"
    if command.spelling:
        forms += f"; the drivers send `{command.send_form('<n>' if command.has_suffix else None)}`"
    lines.append(forms + ".")
    if command.has_suffix:
        lines.append(f"Numeric suffix `#`: 1 … {_bound(command.suffix_max)}, 1 when absent.")
    lines += ["", command.doc, ""]
    if command.args:
        lines += ["| argument | type | unit | range | notes |", "|---|---|---|---|---|"]
        lines += [_arg_row(arg) for arg in command.args]
        lines.append("")
        example = ",".join(
            "#<n><len><data>" if a.kind == "block" else f"<{a.name}>" for a in command.args
        )
        lines += [f"Syntax: `{command.short_form} {example}`", ""]
    else:
        lines += [f"Syntax: `{command.short_form}`", ""]
    reply = command.reply
    if reply.kind != "none":
        kind = f"block `{reply.dtype}`" if reply.kind == "block" else reply.kind
        unit = f", {reply.unit}" if reply.unit else ""
        fields = f" Fields: {', '.join(f'`{f}`' for f in reply.fields)}." if reply.fields else ""
        lines += [f"Reply ({kind}{unit}): {reply.doc}{fields}", ""]
    else:
        lines += ["Reply: none.", ""]
    if command.errors:
        codes = ", ".join(f"{code} ({table.errors[code]})" for code in command.errors)
        lines += [f"Errors: {codes}.", ""]
    return lines


def _sections(table: CommandTable, first: int, label: str = "") -> list[str]:
    """The error table (section ``first``) and the commands (``first + 1``, a subsection per
    group) of ``table``; ``label`` names the instrument in the headings."""
    head = f"{label}: " if label else ""
    lines = [f"## {first}. {head}Error codes", "", "| code | message |", "|---|---|"]
    lines += [f"| {code} | {message} |" for code, message in table.reported_errors().items()]
    lines += ["", f"## {first + 1}. {head}Commands", ""]
    groups = list(dict.fromkeys(command.group for command in table))
    group = None
    for command in table:
        if command.group != group:
            group = command.group
            lines += [f"### {first + 1}.{groups.index(group) + 1} {group}", ""]
        lines += _command_section(command, table)
    return lines


def render() -> str:
    """SPEC.md: the chip protocol."""
    lines = [PREAMBLE, *_sections(COMMANDS, 7)]
    return "\n".join(lines).rstrip() + "\n"


def render_bench() -> str:
    """BENCH.md: the source-measure unit and the pulse generator."""
    lines = [
        BENCH_PREAMBLE,
        *_sections(SMU_COMMANDS, 2, SMU_COMMANDS.name),
        *_sections(PULSE_GENERATOR_COMMANDS, 4, PULSE_GENERATOR_COMMANDS.name),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    documents = {SPEC_PATH: render(), BENCH_PATH: render_bench()}
    if "--write" in args:
        for path, text in documents.items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    else:
        sys.stdout.write("\n".join(documents.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
