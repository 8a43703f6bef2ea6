"""What the run store keeps of a value: scalars, lists and dicts as strict JSON, numpy
arrays apart (as blobs, ``arrays``); and a stored value as text, as the command line spells it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def split_values(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    scalars, arrays = {}, {}
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value if value.flags.c_contiguous else value.copy(order="C")
        else:
            scalars[key] = jsonable(value)
    return scalars, arrays


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # strict JSON (SQLite's json functions, other readers): NaN is null
    return value


def as_text(value: Any) -> str | None:
    """A metadata value as ``--meta key=value`` spells it: 7 → "7", True → "true"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def meta_matches(stored: Any, wanted: Any) -> bool:
    """Whether a run's metadata value is the one asked for: the same text (``as_text``: 7
    and "7", True and "true"), or the same number (25 and "25.0"); an empty value asks for
    runs without the key."""
    wanted_text = as_text(wanted) if not isinstance(wanted, str) else wanted.strip()
    if wanted_text in ("", None):
        return stored is None
    stored_text = as_text(stored)
    if stored_text is None:
        return False
    if stored_text == wanted_text:
        return True
    try:
        return float(stored_text) == float(wanted_text)
    except ValueError:
        return False
