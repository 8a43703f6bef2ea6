"""A command's result: exactly one JSON object on stdout (``--json``) or tables, and its exit
status."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console

EXIT_ERROR = 1  # an error, told in one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C, or a run that did not complete


def print_new_file(text: str, output: str | None) -> int:
    """Print ``text``, or with ``output`` write it to that new file (refused, one line, if
    it exists: nothing is written over) and print its path."""
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise ValueError(f"{output} exists: give a new file") from None
    print(output)
    return 0


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout; numpy arrays and scalars as lists and numbers."""
    sys.stdout.write(json.dumps(value, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def emit(
    args: argparse.Namespace,
    summary: dict,
    render: Callable[[dict, Console], None],
    console: Console | None = None,
) -> None:
    """``summary`` as JSON with ``--json``, else drawn by ``render`` (on stdout by default)."""
    if args.json:
        print_json(summary)
    else:
        render(summary, console or Console())
