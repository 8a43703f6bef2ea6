"""Every option of every command says what it does, and what it does when not given."""

from __future__ import annotations

import argparse

import pytest

from pcm_hil.cli.main import main
from pcm_hil.cli.parser import build_parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, its parser) for the parser and every subcommand, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in ALL}
    assert {"program", "drift", "runs list", "runs show", "runs tag", "runs export"} <= names
    assert len(names) > 20


@pytest.mark.parametrize("path,parser", ALL, ids=[" ".join(p) or "pcm-hil" for p, _ in ALL])
def test_every_option_has_help_and_shows_its_default(path, parser, capsys):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{' '.join(path)} {name}: no help text"
        shown = parser.formatter_class(prog="pcm-hil")._get_help_string(action)
        default = action.default
        if action.option_strings and default not in (None, False, "", [], argparse.SUPPRESS):
            assert "default" in shown, f"{' '.join(path)} {name}: default {default!r} not shown"
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--help"])
    assert done.value.code == 0
    assert parser.format_usage().startswith("usage: ")
    capsys.readouterr()


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("pcm-hil ")
