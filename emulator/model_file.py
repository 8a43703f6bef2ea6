"""The device model as a file a lab reads, edits and fits: TOML, every parameter of
``PcmModel`` with its value, unit, provenance and what it means.

::

    # pcm-hil device model
    format = 1

    [g_max_uS]
    value = 25.0
    unit = "uS"
    source = "code"                 # code, derived, paper, choice, fitted, edited
    about = "Largest reliably programmed conductance, top of the weight range [code, Joshi 2020]."

    [nu_mean_offset]
    value = 0.0261
    unit = "1"
    source = "fitted"
    uncertainty = 0.0008            # one standard error, in the parameter's unit
    runs = [12, 13]                 # the runs it was fitted from

A parameter left out keeps its default (and says so when loaded: ``ModelFile.defaulted``);
an unknown name, a unit other than the parameter's, or a value that is not a finite number is
refused, naming the file and the parameter. ``pcm-hil emulator model --output FILE`` writes
the default model as a starting point; ``emulator?model=FILE`` (and ``--model FILE`` on the
emulator's commands, and the pytest marker's ``model=``) build the emulator from one.

Units and meanings come from the model itself: the unit from the parameter's name (``_uS``
µS, ``_uA`` µA, ``_ns``, ``_s``, ``_K``, ``_eV``; ``1`` for the dimensionless), the meaning and
the published source from its documentation in ``calibration.py``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from pcm_hil.emulator import calibration
from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The file format's version.
FORMAT = 1
#: Where a parameter's value comes from.
SOURCES = ("code", "derived", "paper", "choice", "fitted", "edited")
#: Units by the ending of a parameter's name (UDUNITS spelling); dimensionless otherwise.
UNITS = {"_uS": "uS", "_uA": "uA", "_ns": "ns", "_s": "s", "_K": "K", "_eV": "eV"}


class ModelFileError(ValueError):
    """A model file that cannot be read: one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Parameter:
    """One parameter of the device model: its unit, meaning and published source."""

    name: str
    unit: str
    about: str
    source: str


@dataclass
class ModelFile:
    """A loaded model file: the model, each parameter's provenance (source, uncertainty,
    runs), and the parameters the file left at their defaults."""

    model: PcmModel
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaulted: list[str] = field(default_factory=list)


def unit_of(name: str) -> str:
    for ending, unit in UNITS.items():
        if name.endswith(ending):
            return unit
    return "1"


@functools.cache
def _parameters() -> tuple[Parameter, ...]:
    return tuple(_read_parameters())


def parameters() -> list[Parameter]:
    """Every parameter of ``PcmModel``, in order, with the documentation written under it in
    ``calibration.py`` (a parameter without its own takes the one above it: the lines of one
    formula share theirs) and the source tag it gives ([code], [derived], [paper], [choice])."""
    return list(_parameters())  # read once: the model's source does not change


def _read_parameters() -> list[Parameter]:
    docs = _field_docs()
    found, last = [], ""
    for f in fields(PcmModel):
        about = docs.get(f.name, "") or last
        last = about
        source = next((tag for tag in SOURCES[:4] if f"[{tag}" in about), "choice")
        found.append(Parameter(f.name, unit_of(f.name), " ".join(about.split()), source))
    return found


def _field_docs() -> dict[str, str]:
    """Each field's docstring (the string right under its line) in ``PcmModel``'s source."""
    tree = ast.parse(inspect.getsource(calibration))
    body = next(
        node.body
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == "PcmModel"
    )
    docs: dict[str, str] = {}
    for statement, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[statement.target.id] = after.value.value
    return docs


def dumps_model(
    model: PcmModel = DEFAULT_MODEL, provenance: dict[str, dict[str, Any]] | None = None
) -> str:
    """The model as TOML text (see the module); ``provenance`` replaces a parameter's
    ``source`` and adds its ``uncertainty`` and ``runs`` (fitted ones)."""
    provenance = provenance or {}
    document: dict[str, Any] = {"format": FORMAT}
    for p in parameters():
        value = getattr(model, p.name)
        default = getattr(DEFAULT_MODEL, p.name)
        entry: dict[str, Any] = {
            "value": float(value),
            "unit": p.unit,
            "source": p.source if value == default else "edited",
        }
        entry.update({k: v for k, v in provenance.get(p.name, {}).items() if v is not None})
        entry["about"] = p.about
        document[p.name] = entry
    header = (
        "# pcm-hil device model: the emulator's physics, one table per parameter\n"
        "# (value in its unit; source: code, derived, paper, choice, fitted or edited).\n"
        "# Edit values, or fit them from your chip's runs: pcm-hil twin fit RUN… --output FILE.\n\n"
    )
    return header + tomli_w.dumps(document)


def save_model(
    model: PcmModel,
    path: str | os.PathLike[str],
    provenance: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the model file; the path written."""
    target = Path(path)
    target.write_text(dumps_model(model, provenance), encoding="utf-8")
    return target


def load_model(path: str | os.PathLike[str]) -> ModelFile:
    """Read a model file (``ModelFileError`` for anything wrong with it)."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelFileError(f"{where}: cannot read the model file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: not a UTF-8 text file") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ModelFileError(f"{where}: not a TOML file ({error})") from None
    return parse_model(document, str(where))


def check_physical(model: PcmModel) -> str | None:
    """What makes ``model`` impossible (None if nothing): conductances, currents, widths,
    times, temperatures and energies must be positive (slopes and offsets may take either
    sign), fractions within 0…1 together, and the conductances in order."""
    for f in fields(PcmModel):
        value = getattr(model, f.name)
        if unit_of(f.name) != "1" and not f.name.endswith(("_slope", "_offset")) and value <= 0:
            return f"{f.name} = {value:g} must be positive"
        if f.name.endswith(("_fraction", "_rel", "_spread", "_ln")) and not 0 <= value <= 1:
            return f"{f.name} = {value:g} must lie within 0…1"
    if model.stuck_set_fraction + model.stuck_reset_fraction > 1:
        return "stuck_set_fraction + stuck_reset_fraction must not exceed 1"
    if not model.g_floor_uS < model.g_reset_uS < model.g_max_uS <= model.g_crystalline_uS:
        return "the conductances must be in order: g_floor < g_reset < g_max ≤ g_crystalline"
    if not model.i_crystallize_uA < model.i_melt_uA:
        return "i_crystallize_uA must be below i_melt_uA"
    if model.i_curve_mid_uA - model.i_melt_uA < 2 * model.i_curve_slope_uA:
        return (
            "i_curve_mid_uA must lie at least 2·i_curve_slope_uA above i_melt_uA: just above "
            "the melting threshold, melt-quench leaves a device near its crystalline conductance"
        )
    if not model.drift_t_start_s <= model.drift_t0_s:
        return "drift_t_start_s must not be later than drift_t0_s"
    return None


def parse_model(document: dict[str, Any], where: str = "model") -> ModelFile:
    """The model of a parsed model file (see ``load_model``)."""
    version = document.get("format", FORMAT)
    if version != FORMAT:
        raise ModelFileError(f"{where}: model file format {version!r}; this pcm-hil reads {FORMAT}")
    known = {p.name: p for p in parameters()}
    unknown = sorted(k for k in document if k != "format" and k not in known)
    if unknown:
        raise ModelFileError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
    values: dict[str, float] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for name, p in known.items():
        entry = document.get(name)
        if entry is None:
            continue
        if not isinstance(entry, dict) or "value" not in entry:
            raise ModelFileError(f"{where}: [{name}] needs a value")
        value = entry["value"]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ModelFileError(f"{where}: {name} = {value!r} is not a finite number")
        unit = entry.get("unit", p.unit)
        if unit != p.unit:
            raise ModelFileError(f"{where}: {name} is in {p.unit!r}, not {unit!r}")
        source = entry.get("source", p.source)
        if source not in SOURCES:
            raise ModelFileError(f"{where}: {name} source {source!r}; known: {', '.join(SOURCES)}")
        if float(value) != getattr(DEFAULT_MODEL, name) and source in SOURCES[:4]:
            source = "edited"  # a published value changed by hand is no longer published
        values[name] = float(value)
        provenance[name] = {
            "source": source,
            **{k: entry[k] for k in ("uncertainty", "runs", "note") if k in entry},
        }
    try:
        model = DEFAULT_MODEL.with_overrides(**values)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{where}: {error}") from None
    problem = check_physical(model)
    if problem:
        raise ModelFileError(f"{where}: {problem}")
    defaulted = [name for name in known if name not in values]
    return ModelFile(model, provenance, defaulted)
