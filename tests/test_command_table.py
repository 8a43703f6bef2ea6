"""The command tables are the one source: the specs, every emulated instrument's dispatch and
every driver are derived from them or checked against them."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields, replace

import pytest

import pcm_hil.drivers.chip as chip_driver
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.bench import EmulatedBench
from pcm_hil.protocols import COMMANDS, PULSE_GENERATOR_COMMANDS, SMU_COMMANDS, spec
from pcm_hil.protocols.chip import CHIP_ERRORS, CONFIGURATION, ChipInfo
from pcm_hil.protocols.table import Command, CommandTable

TABLES = {"chip": COMMANDS, "smu": SMU_COMMANDS, "pulse": PULSE_GENERATOR_COMMANDS}


def devices():
    """Every emulated instrument, with its table."""
    bench = EmulatedBench(devices=4)
    return {
        "chip": WireInterface(make_chip("tiny")),
        "smu": bench.smu,
        "pulse": bench.pulse_generator,
    }


def test_written_specs_are_generated_from_the_tables():
    assert spec.SPEC_PATH.read_text(encoding="utf-8") == spec.render(), (
        "protocols/SPEC.md is stale: run python -m pcm_hil.protocols.spec --write"
    )
    assert spec.BENCH_PATH.read_text(encoding="utf-8") == spec.render_bench(), (
        "protocols/BENCH.md is stale: run python -m pcm_hil.protocols.spec --write"
    )


def test_specs_document_every_command_argument_and_error():
    for text, tables in ((spec.render(), (COMMANDS,)), (spec.render_bench(), (SMU_COMMANDS, PULSE_GENERATOR_COMMANDS))):  # fmt: skip
        for table in tables:
            for command in table:
                assert f"#### `{command.header}`" in text
                assert command.short_form in text
                for arg in command.args:
                    assert f"| `{arg.name}` |" in text
        for code in (-100, -102, -104, -109, -113, -222, -350, 0):
            assert re.search(rf"^\| {code} \|", text, re.MULTILINE)
    chip_text = spec.render()
    assert not re.search(r"^\| -114 \|", chip_text, re.MULTILINE)  # no suffixes on the chip
    for code in (101, 102, 103, 104, 105):
        assert re.search(rf"^\| {code} \|", chip_text, re.MULTILINE)


@pytest.mark.parametrize("name", TABLES)
def test_every_row_has_a_handler_whose_signature_is_its_arguments(name):
    device = devices()[name]
    for command in TABLES[name]:
        handler = device._handlers[command.handler]
        names = list(inspect.signature(handler).parameters)
        assert names == [arg.name for arg in command.args], command.header


def test_a_row_without_a_handler_fails_at_start():
    extra = replace(COMMANDS.by_handler("temperature"), header="FOO?", handler="foo")
    with pytest.raises(TypeError, match="no handler for FOO"):
        WireInterface(
            make_chip("tiny"), CommandTable((*COMMANDS.commands, extra), device_errors=CHIP_ERRORS)
        )


def test_tables_refuse_overlaps_unlisted_errors_and_foreign_spellings():
    temperature = COMMANDS.by_handler("temperature")
    with pytest.raises(ValueError, match="both match"):
        CommandTable((temperature, replace(temperature, handler="other")))
    with pytest.raises(ValueError, match="not in the error table"):
        CommandTable((replace(temperature, errors=(101,)),))
    with pytest.raises(ValueError, match="not one of its forms"):
        Command("SOURce:VOLTage", "x", "doc", spelling=":SOUR:CURR")


def test_every_chip_command_is_reachable_from_the_driver():
    source = inspect.getsource(chip_driver)
    missing = [
        c.handler
        for c in COMMANDS
        if f'"{c.handler}"' not in source and c.handler not in CONFIGURATION
    ]
    assert missing == []


def test_chip_info_is_the_configuration_replies_field_by_field():
    """ChipInfo's fields are exactly the reply fields of the configuration queries (and the
    identity): the driver fills it by those names and the emulator answers from it."""
    named = {"identity"}
    for handler in CONFIGURATION:
        reply = COMMANDS.by_handler(handler).reply
        assert reply.fields, handler
        named.update(reply.fields)
    assert named == {f.name for f in fields(ChipInfo)}
    info = make_chip("tiny", seed=2).info()
    for handler in CONFIGURATION:
        answer = info.answer(handler)
        reply = COMMANDS.by_handler(handler).reply
        values = answer if reply.kind in ("ints", "floats") else (answer,)
        assert values == tuple(getattr(info, f) for f in reply.fields)
