"""A run's experiment metadata — sample, wafer, die, operator, anything a lab names — its
note and its tags, with defaults a lab sets once.

Where the values come from, later ones winning key by key:

1. the config file, ``$PCM_HIL_CONFIG`` if set, else ``$XDG_CONFIG_HOME/pcm-hil/config.toml``
   (by default ``~/.config/pcm-hil/config.toml``), for example:

        [meta]
        operator = "jdoe"
        setup = "probe station 2"

        [run]
        note = "the second wafer of the campaign"
        tags = ["campaign-7"]

2. ``$PCM_HIL_META``: ``key=value`` pairs separated by commas
   (``PCM_HIL_META="sample=W12,die=7"``);
3. the command line: ``--meta key=value`` (repeatable), ``--note TEXT``, ``--tag WORD``.

Values are kept as text, exactly as given on the command line or in the environment; the
config file's TOML values (numbers, booleans, strings) as TOML typed them, dates and times as
their ISO text. ``runs list --meta
key=value`` compares the text of either.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: A metadata key: a letter, then letters, digits, ``_``, ``-`` or ``.``.
KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")
#: A tag: the same words as a key.
TAG = KEY


class MetadataError(ValueError):
    """Metadata that cannot be taken: a pair without ``=``, a bad key, a bad config file."""


@dataclass
class RunLabels:
    """What a run is labelled with: ``meta`` (key → value), a ``note`` and ``tags``."""

    meta: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    tags: list[str] = field(default_factory=list)


def config_path() -> Path:
    """``$PCM_HIL_CONFIG``, else ``$XDG_CONFIG_HOME/pcm-hil/config.toml``."""
    if os.environ.get("PCM_HIL_CONFIG"):
        return Path(os.environ["PCM_HIL_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "pcm-hil" / "config.toml"


def parse_pairs(pairs: Iterable[str], where: str = "--meta") -> dict[str, str]:
    """``["sample=W12", "die=7"]`` → ``{"sample": "W12", "die": "7"}``; an empty value
    (``key=``) stands for "no value" and removes the key given earlier."""
    meta: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals:
            raise MetadataError(f"{where} {pair!r}: expected key=value, e.g. sample=W12")
        check_key(key, where)
        meta[key] = value.strip()
    return meta


def check_key(key: str, where: str = "--meta") -> str:
    if not KEY.match(key):
        raise MetadataError(
            f"{where}: bad key {key!r}: a letter, then letters, digits, '_', '-' or '.'"
        )
    return key


def check_tags(tags: Iterable[str], where: str = "--tag") -> list[str]:
    """The tags, each checked to be one word (see ``TAG``), without repeats, sorted."""
    tags = list(tags)
    for tag in tags:
        if not TAG.match(tag):
            raise MetadataError(
                f"{where}: bad tag {tag!r}: a letter, then letters, digits, '_', '-' or '.'"
            )
    return sorted(set(tags))


def from_config(path: Path | None = None) -> RunLabels:
    """The labels the config file sets (none when it does not exist)."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RunLabels()
    except OSError as error:
        raise MetadataError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MetadataError(f"{path}: not a TOML file ({error})") from None
    meta = config.get("meta", {})
    run = config.get("run", {})
    if not isinstance(meta, Mapping) or not isinstance(run, Mapping):
        raise MetadataError(f"{path}: [meta] and [run] are tables of key = value pairs")
    unknown = sorted(set(config) - {"meta", "run"}) + sorted(
        f"run.{k}" for k in set(run) - {"note", "tags"}
    )
    if unknown:
        raise MetadataError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: [meta], run.note, run.tags"
        )
    if any(isinstance(v, (dict, list)) for v in meta.values()):
        raise MetadataError(f"{path}: [meta] holds key = value pairs of plain values")
    # TOML dates and times are kept as their ISO text (a run's metadata is JSON)
    meta = {k: v.isoformat() if isinstance(v, (date, time)) else v for k, v in meta.items()}
    for key in meta:
        check_key(key, f"{path} [meta]")
    note = run.get("note")
    tags = run.get("tags", [])
    if note is not None and not isinstance(note, str):
        raise MetadataError(f"{path}: run.note is text")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise MetadataError(f"{path}: run.tags is a list of words")
    return RunLabels(dict(meta), note, check_tags(tags, f"{path} run.tags"))


def from_environment() -> dict[str, str]:
    """``$PCM_HIL_META`` as key → value."""
    text = os.environ.get("PCM_HIL_META", "").strip()
    if not text:
        return {}
    return parse_pairs([p for p in text.split(",") if p.strip()], "$PCM_HIL_META")


def run_labels(
    meta: Iterable[str] = (), note: str | None = None, tags: Iterable[str] = ()
) -> RunLabels:
    """A run's labels: the config file's, then ``$PCM_HIL_META``, then these (``--meta``
    pairs, ``--note``, ``--tag``s) — an empty value removes a key set before."""
    labels = from_config()
    merged: dict[str, Any] = {**labels.meta, **from_environment(), **parse_pairs(meta)}
    return RunLabels(
        {k: v for k, v in merged.items() if v != ""},
        note if note is not None else labels.note,
        check_tags([*labels.tags, *tags]),
    )
