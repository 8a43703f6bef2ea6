"""The emulator's resource string, parsed and written in one place.

``emulator`` opens the embedded emulator in process; options follow as a query:
``emulator?profile=tiny&seed=3&tiles=2&rows=16&columns=16&real_time=1&model=chip.toml``
(``model``: a device-model file, ``pcm_hil.emulator.model_file``). The driver opens it
through the transport the emulator registers (``servers.inprocess``); the CLI, the pytest
plugin and the inference experiments (one fresh chip per seed) build the same strings here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np

from pcm_hil.emulator.chip import (
    DEFAULT_PROFILE,
    PROFILES,
    ChipConfig,
    EmulatedChip,
    check_memory,
    make_chip,
)
from pcm_hil.emulator.model_file import ModelFileError, load_model
from pcm_hil.protocols.transport import ResourceError

SCHEME = "emulator"
_INTEGERS = ("tiles", "rows", "columns")
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def is_emulator(resource: str | None) -> bool:
    """True for ``emulator`` and ``emulator?…``."""
    text = (resource or "").strip()
    return text == SCHEME or text.startswith(SCHEME + "?")


@dataclass(frozen=True)
class EmulatorOptions:
    """What an ``emulator?…`` resource asks for: a chip profile, a seed, and changes to the
    profile's geometry and clock (``ChipConfig`` fields). A geometry too large for memory is
    refused here (ResourceError), before any chip is made."""

    profile: str = DEFAULT_PROFILE
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ResourceError(
                f"unknown chip profile {self.profile!r}; known: {', '.join(PROFILES)}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or self.seed < 0
        ):
            raise ResourceError(f"emulator seed must be an integer ≥ 0, not {self.seed!r}")
        unknown = set(self.overrides) - {*_INTEGERS, "real_time", "model"}
        if unknown:
            raise ResourceError(
                f"unknown emulator option(s): {', '.join(sorted(unknown))}; known: "
                f"profile, seed, {', '.join(_INTEGERS)}, real_time, model"
            )
        try:
            check_memory(self.config())  # a chip too large for memory, refused before it is made
        except ValueError as error:
            raise ResourceError(f"bad emulator option: {error}") from None

    @classmethod
    def parse(cls, resource: str, default_seed: int = 0) -> EmulatorOptions:
        """The options of ``emulator`` or ``emulator?key=value&…`` (the seed ``default_seed``
        unless it says); ResourceError if bad."""
        text = resource.strip()
        if not is_emulator(text):
            raise ResourceError(f"{resource!r} is not an emulator resource")
        query = text.partition("?")[2]
        try:
            pairs = parse_qsl(query, strict_parsing=bool(query))
        except ValueError as error:
            raise ResourceError(f"bad emulator options {query!r}: {error}") from None
        values = dict(pairs)
        if len(values) != len(pairs):
            raise ResourceError(f"an emulator option is given twice in {resource!r}")
        profile = values.pop("profile", DEFAULT_PROFILE)
        seed = _integer("seed", values.pop("seed", str(default_seed)))
        overrides: dict[str, Any] = {}
        for key, value in values.items():
            if key in _INTEGERS:
                overrides[key] = _integer(key, value)
            elif key == "real_time":
                if value.lower() not in (*_TRUE, *_FALSE):
                    raise ResourceError(
                        f"emulator option real_time takes {'/'.join(_TRUE)} or "
                        f"{'/'.join(_FALSE)}, not {value!r}"
                    )
                overrides[key] = value.lower() in _TRUE
            else:
                overrides[key] = value  # refused, with the known keys, by __post_init__
        return cls(profile, seed, overrides)

    @property
    def resource(self) -> str:
        """The resource string: ``emulator?profile=…&seed=…`` (and the overrides)."""
        values: dict[str, Any] = {"profile": self.profile, "seed": int(self.seed)}
        for key, value in self.overrides.items():
            values[key] = int(value) if isinstance(value, bool) else value
        return f"{SCHEME}?{urlencode(values)}"

    def with_seed(self, seed: int) -> EmulatorOptions:
        """The same chip shape, another seed."""
        return replace(self, seed=int(seed))

    def config(self) -> ChipConfig:
        """The chip configuration these options describe (``model``: a model file's path,
        read here; ResourceError for a bad one)."""
        return PROFILES[self.profile].with_overrides(**self._settings())

    def make_chip(self) -> EmulatedChip:
        """A fresh emulated chip, seeded."""
        return make_chip(self.profile, int(self.seed), **self._settings())

    def _settings(self) -> dict[str, Any]:
        settings = dict(self.overrides)
        if "model" in settings:
            try:
                settings["model"] = load_model(settings["model"]).model
            except ModelFileError as error:
                raise ResourceError(f"emulator option model: {error}") from None
        return settings


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ResourceError(f"emulator option {name} must be an integer, not {text!r}") from None
