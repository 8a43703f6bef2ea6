"""Property tests of the protocol codec: commands and blocks round-trip; framing survives
arbitrary chunking; the indefinite #0 form and malformed headers are handled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pcm_hil.protocols import COMMANDS
from pcm_hil.protocols.blocks import (
    MAX_BLOCK_BYTES,
    IncompleteBlock,
    decode_array,
    decode_block,
    encode_array,
    encode_block,
    parse_header,
)
from pcm_hil.protocols.codec import (
    encode_command,
    format_reply,
    parse_message,
    parse_reply,
    split_units,
)
from pcm_hil.protocols.errors import ErrorEntry, ErrorQueue, ScpiError, parse_error_entry
from pcm_hil.protocols.framing import MessageFramer
from pcm_hil.protocols.table import resolve

LIMITS = {
    "tiles": 4,
    "rows": 8,
    "columns": 6,
    "devices_per_tile": 48,
    "pulse_amplitude_max_uA": 600.0,
    "pulse_width_min_ns": 10.0,
    "pulse_width_max_ns": 1000.0,
    "temperature_min_K": 233.0,
    "temperature_max_K": 400.0,
    "mvm_batch_max": 100_000,
}

settings.register_profile("ci", derandomize=True, max_examples=150, deadline=None)
settings.load_profile("ci")


@given(st.binary(max_size=3000))
def test_block_round_trip(data):
    block = encode_block(data)
    decoded, end = decode_block(block)
    assert decoded == data and end == len(block)
    start, length = parse_header(block)
    assert length == len(data) and block[start:] == data


@given(st.binary(max_size=200).filter(lambda d: b"\n" not in d))
def test_indefinite_block(data):
    decoded, end = decode_block(b"#0" + data + b"\n")
    assert decoded == data and end == len(data) + 3
    decoded, _ = decode_block(b"#0" + data)
    assert decoded == data


@given(hnp.arrays(np.float32, st.integers(0, 300), elements=st.floats(-1e6, 1e6, width=32)))
def test_float_array_round_trip(array):
    block = encode_array(array, "<f4")
    data, _ = decode_block(block)
    np.testing.assert_array_equal(decode_array(data, "<f4"), array)


@given(hnp.arrays(np.uint32, st.integers(0, 300)))
def test_address_array_round_trip_is_little_endian(array):
    block = encode_array(array, "<u4")
    data, _ = decode_block(block)
    assert data == array.astype("<u4").tobytes()
    np.testing.assert_array_equal(decode_array(data, "<u4"), array)


@pytest.mark.parametrize(
    "header, code",
    [(b"#A12", -161), (b"#2x1", -161), (b"#9999999999", -223), (b"x12", -161)],
)
def test_malformed_block_headers(header, code):
    with pytest.raises(ScpiError) as info:
        parse_header(header)
    assert info.value.code == code


def test_oversized_limit_and_incomplete_header():
    with pytest.raises(ScpiError) as info:
        parse_header(f"#9{MAX_BLOCK_BYTES + 1:09d}".encode())
    assert info.value.code == -223
    for partial in (b"#", b"#3", b"#31"):
        with pytest.raises(IncompleteBlock):
            parse_header(partial)
    with pytest.raises(IncompleteBlock):
        decode_block(b"#15abc")
    with pytest.raises(ScpiError) as info:
        decode_array(b"abc", "<f4")
    assert info.value.code == -160


# --- commands ---------------------------------------------------------------------------------


def _values(draw, command):
    values = {}
    for arg in command.args:
        if arg.kind == "int":
            scope = {**LIMITS, **values}
            low, high = int(resolve(arg.minimum, scope)), int(resolve(arg.maximum, scope))
            values[arg.name] = draw(st.integers(low, high))
        elif arg.kind == "float":
            low = LIMITS[arg.minimum] if isinstance(arg.minimum, str) else arg.minimum
            high = LIMITS[arg.maximum] if isinstance(arg.maximum, str) else arg.maximum
            values[arg.name] = draw(st.floats(low, high, allow_nan=False))
        elif arg.kind == "block":
            values[arg.name] = None
    if command.handler == "pulse":
        n = draw(st.integers(1, 48))
        values["addresses"] = np.asarray(draw(st.permutations(range(48)))[:n], dtype=np.uint32)
        values["amplitudes"] = np.asarray(
            draw(st.lists(st.floats(0, 600, width=32), min_size=n, max_size=n)), np.float32
        )
        values["widths"] = np.asarray(
            draw(st.lists(st.floats(10, 1000, width=32), min_size=1, max_size=1)), np.float32
        )
    elif command.handler == "read_devices":
        values["addresses"] = np.asarray(
            draw(st.lists(st.integers(0, 47), min_size=1, max_size=60)), np.uint32
        )
    elif command.handler in ("mvm_forward", "mvm_transposed"):
        width = values["row_count" if command.handler == "mvm_forward" else "column_count"]
        n = draw(st.integers(1, 5))
        values["inputs"] = np.asarray(
            draw(st.lists(st.floats(-1, 1, width=32), min_size=n * width, max_size=n * width)),
            np.float32,
        )
    return values


@st.composite
def commands_with_values(draw):
    command = draw(st.sampled_from(list(COMMANDS)))
    return command, _values(draw, command)


@given(st.lists(commands_with_values(), min_size=1, max_size=4))
def test_commands_round_trip_through_the_parser(units):
    """encode_command → one message of ';'-joined units → framer → parse_message."""
    message = b";".join(encode_command(c, v, LIMITS) for c, v in units) + b"\n"
    framed = MessageFramer().feed(message)
    assert len(framed) == 1
    parsed = list(parse_message(framed[0], COMMANDS, LIMITS))
    assert [p.command for p in parsed] == [c for c, _ in units]
    for p, (_c, values) in zip(parsed, units, strict=True):
        for name, value in values.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(p.values[name], value)
            else:
                assert p.values[name] == value


@given(commands_with_values(), st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_framing_is_independent_of_chunking(item, cuts):
    command, values = item
    stream = (encode_command(command, values, LIMITS) + b"\n") * 3
    framer = MessageFramer()
    messages, pos = [], 0
    for cut in cuts * 100:
        if pos >= len(stream):
            break
        messages += framer.feed(stream[pos : pos + cut])
        pos += cut
    messages += framer.feed(stream[pos:])
    whole = MessageFramer().feed(stream)
    assert messages == whole and len(whole) == 3
    assert not framer.pending


@pytest.mark.parametrize(
    "header",
    ["SYST:ERR?", "system:error?", "SYSTEM:ERROR:NEXT?", ":Syst:Err:Next?", "syst:error:next?"],
)
def test_short_long_and_optional_forms(header):
    [parsed] = parse_message(header.encode(), COMMANDS, LIMITS)
    assert parsed.command.handler == "error_next"


def test_header_table_has_no_overlaps():
    from pcm_hil.protocols.table import CommandTable, spellings

    seen = {}
    for command in COMMANDS:
        for spelling in spellings(command):
            assert spelling not in seen, (command.header, seen.get(spelling))
            seen[spelling] = command.header
    from dataclasses import replace

    temperature = COMMANDS.by_handler("temperature")
    clash = replace(temperature, header="TEMPerature?", handler="other")
    with pytest.raises(ValueError, match="both match"):
        CommandTable((temperature, clash))
    with pytest.raises(ValueError, match="used twice"):
        CommandTable((temperature, temperature))


@pytest.mark.parametrize(
    "message, code",
    [
        (b"NOPE?", -113),
        (b"READ:TILE? 1.5", -104),
        (b"READ:TILE?", -109),
        (b"READ:TILE? 1,2", -108),
        (b"READ:TILE? 4", -222),
        (b"READ:TILE? #14abcd", -168),
        (b"READ:DEV? 0,17", -104),
        (b"READ:DEV? 0,#13abc", -160),
        (b"READ:DEV? 0,#14\x30\x00\x00\x00", -222),
        (b"TEMP nan", -104),
        (b"TEMP 1e9", -222),
        (b"CLOC:ADV -1", -222),
        (b"PULS:APPL 0,#14\x00\x00\x00\x00,#14\x00\x00\x48\x44,#14\x00\x00\x48\x42", 101),
        (
            b"PULS:APPL 0,#18\x00\x00\x00\x00\x00\x00\x00\x00,#14\x00\x00\x48\x43,#14\x00\x00\x48\x42",
            103,
        ),
        (
            b"PULS:APPL 0,#18\x00\x00\x00\x00\x01\x00\x00\x00,#212"
            + b"\x00\x00\x48\x43" * 3
            + b",#14\x00\x00\x48\x42",
            102,
        ),
        (b"PULS:APPL 0,#14\x00\x00\x00\x00,#14\x00\x00\xc0\x7f,#14\x00\x00\x48\x42", -222),
        (b"*ESE 300", -222),
        (b"READ:TILE? 1 x", -104),
        (b"READ:TILE?\x01", -101),
        (b"\xff\xfe", -101),
    ],
)
def test_parser_error_codes(message, code):
    with pytest.raises(ScpiError) as info:
        list(parse_message(message, COMMANDS, LIMITS))
    assert info.value.code == code


def test_units_after_an_error_are_discarded():
    parsed = parse_message(b"*OPC?;NOPE;*IDN?", COMMANDS, LIMITS)
    assert next(parsed).command.handler == "operation_complete_query"
    with pytest.raises(ScpiError):
        next(parsed)


@given(st.binary(max_size=300))
def test_parser_never_raises_anything_but_scpi_errors(message):
    try:
        list(parse_message(message.split(b"\n")[0], COMMANDS, LIMITS))
    except ScpiError:
        pass


@given(st.binary(max_size=400), st.integers(1, 64))
def test_framer_never_raises_and_resynchronises(garbage, chunk):
    framer = MessageFramer(max_text=128)
    stream = garbage + b"\n*IDN?\n"
    items = []
    for i in range(0, len(stream), chunk):
        items += framer.feed(stream[i : i + chunk])
    assert all(isinstance(i, (bytes, ScpiError)) for i in items)
    # a block header in the garbage can swallow the tail; a reset always recovers
    framer.reset()
    assert framer.feed(b"*IDN?\n") == [b"*IDN?"]


def test_framer_overrun_and_bad_blocks():
    framer = MessageFramer(max_text=64)
    items = framer.feed(b"A" * 100 + b"\n*OPC?\n")
    assert isinstance(items[0], ScpiError) and items[0].code == -363
    assert items[1:] == [b"*OPC?"]
    items = framer.feed(b"X #9999999999 junk\n*OPC?\n")
    assert isinstance(items[0], ScpiError) and items[0].code == -223 and items[1] == b"*OPC?"
    items = framer.feed(b"X #2ab\n*OPC?\n")
    assert items[0].code == -161 and items[1] == b"*OPC?"
    # a block may hold LF, CR and ';' bytes
    payload = b"\n;\r\n\"'#1"
    assert framer.feed(b"A " + encode_block(payload) + b"\r\n") == [b"A " + encode_block(payload)]
    # CRLF terminators
    assert framer.feed(b"*IDN?\r\n") == [b"*IDN?"]
    # '#0' indefinite block ends at LF
    assert framer.feed(b"A #0abc\nB\n") == [b"A #0abc", b"B"]


# --- replies ------------------------------------------------------------------------------------


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_reply_round_trip(value):
    reply = COMMANDS.by_handler("clock_time").reply
    assert parse_reply(reply, format_reply(reply, value)) == value


@given(
    st.integers(-500, 500),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)
def test_error_entry_round_trip(code, text):
    entry = ErrorEntry(code, text)
    assert parse_error_entry(entry.format().decode()) == entry


@given(hnp.arrays(np.float32, st.integers(1, 100), elements=st.floats(0, 100, width=32)))
def test_split_units_respects_blocks(array):
    reply = COMMANDS.by_handler("read_tile").reply
    message = format_reply(reply, array) + b";" + b'0,"No error"'
    units = split_units(message)
    assert len(units) == 2
    np.testing.assert_array_equal(parse_reply(reply, units[0]), array)


def test_error_queue_overflow_and_order():
    queue = ErrorQueue(COMMANDS.errors, capacity=4)
    for code in (-113, -222, 101, 102, 103, 104):
        queue.push(code, f"detail {code}")
    codes = [queue.pop().code for _ in range(5)]
    assert codes == [-113, -222, 101, -350, 0]
    assert queue.pop() == ErrorEntry(0, "No error")


def test_driver_side_encoding_refuses_bad_values():
    pulse = COMMANDS.by_handler("pulse")
    with pytest.raises(ScpiError) as info:
        encode_command(
            pulse, {"tile": 0, "addresses": [1.5], "amplitudes": [1], "widths": [50]}, LIMITS
        )
    assert info.value.code == -104
    with pytest.raises(ScpiError) as info:
        encode_command(
            pulse, {"tile": 0, "addresses": [-1], "amplitudes": [1], "widths": [50]}, LIMITS
        )
    assert info.value.code == -222
    with pytest.raises(ScpiError) as info:
        encode_command(pulse, {"tile": 0, "addresses": [1]}, LIMITS)
    assert info.value.code == -109
    with pytest.raises(ScpiError) as info:
        encode_command(COMMANDS.by_handler("read_tile"), {"tile": 0, "colour": 1}, LIMITS)
    assert info.value.code == -108
