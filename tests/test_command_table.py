"""The command table is the one source: the spec, the emulator's dispatch and the driver
are checked against it."""

from __future__ import annotations

import inspect
import re

import pytest

import pcm_hil.drivers.chip as chip
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.protocols import COMMANDS, spec
from pcm_hil.protocols.table import CommandTable


def test_written_spec_is_generated_from_the_table():
    assert spec.SPEC_PATH.read_text(encoding="utf-8") == spec.render(), (
        "protocols/SPEC.md is stale: run python -m protocols.spec --write"
    )


def test_spec_documents_every_command_argument_and_error():
    text = spec.render()
    for command in COMMANDS:
        assert f"#### `{command.header}`" in text
        assert command.short_form in text
        for arg in command.args:
            assert f"| `{arg.name}` |" in text
    for code in (-100, -102, -104, -109, -113, -222, -350, 0):
        assert re.search(rf"^\| {code} \|", text, re.MULTILINE)


def test_every_command_has_an_emulator_handler_and_wrong_tables_fail_at_start():
    WireInterface(make_chip("tiny"))  # raises if a row has no handler
    from dataclasses import replace

    extra = replace(COMMANDS.by_handler("temperature"), header="FOO?", handler="foo")
    with pytest.raises(TypeError, match="no handler for FOO"):
        WireInterface(make_chip("tiny"), CommandTable((*COMMANDS.commands, extra)))


def test_every_command_is_reachable_from_the_driver():
    source = inspect.getsource(chip)
    missing = [c.handler for c in COMMANDS if f'"{c.handler}"' not in source]
    assert missing == []


def test_handler_signatures_match_argument_names():
    wire = WireInterface(make_chip("tiny"))
    for command in COMMANDS:
        handler = getattr(wire, f"_do_{command.handler}")
        names = list(inspect.signature(handler).parameters)
        assert names == [arg.name for arg in command.args], command.header
