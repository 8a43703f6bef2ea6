"""Typed run documents: what a procedure emits, as records with a name and a schema version.

Each procedure declares its documents — the one that starts it, each kind of step, the one
that ends it — as frozen dataclasses deriving from ``Start``, ``Step`` or ``End``, in the
module of ``pcm_hil.documents`` named after it. A document class names itself as a class
keyword, ``class ProgramIteration(Step, name="program.iteration")``: a name unique across all
documents, its procedure's name before the dot. Its ``version`` grows when its fields change, and the run store keeps it beside every document,
so a reader knows what it reads. Field values are scalars, lists and dicts of them, and numpy
arrays (stored as binary blobs).

Subscribers (the run store, the progress bar, the dashboard, exporters, the resume readers)
route by document type, never by which keys a record holds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

DocumentKind = Literal["start", "step", "end"]
Status = Literal["completed", "cancelled", "failed"]

_REGISTRY: dict[str, type[Document]] = {}


@dataclass(frozen=True)
class Document:
    """Base of every run document. A concrete document names itself as a class keyword:
    ``class DriftRead(Step, name="drift.read")``."""

    kind: ClassVar[DocumentKind]
    procedure: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[int] = 1

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        """``class ProgramStart(Start, name="program.start")``: the document's name, its
        procedure's name before the last dot. Without a name: an intermediate base."""
        super().__init_subclass__(**kwargs)
        if name is None:
            return
        procedure, dot, _kind = name.rpartition(".")
        if not dot or not procedure:
            raise TypeError(f"document name {name!r} is not '<procedure>.<document>'")
        cls.name, cls.procedure = name, procedure
        other = _REGISTRY.get(name)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise TypeError(f"document name {name!r} is taken by {other.__qualname__}")
        _REGISTRY[name] = cls

    def values(self) -> dict[str, Any]:
        """The fields, by name, as they are (arrays included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Document:
        """The document from stored field values; a field missing from ``values`` takes its
        default, and a name the class does not have is an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.name} (version {cls.version}) has no field(s) {unknown}")
        return cls(**values)

    @classmethod
    def upgrade(cls, version: int, values: dict[str, Any]) -> dict[str, Any] | None:
        """The values of this document's current version from those an older ``version``
        stored, or None when they cannot be carried over (the document is then read back as
        an ``UnknownDocument``, kept as it was). By default the values as they are: a version
        that only added fields with defaults reads its elders (a field it does not have, or
        one missing without a default, still makes them unknown). A class whose fields
        change meaning overrides it."""
        return values


@dataclass(frozen=True)
class Start(Document):
    """A procedure's first document: its parameters."""

    kind: ClassVar[DocumentKind] = "start"


@dataclass(frozen=True)
class Step(Document):
    """One batch of a procedure's measurements."""

    kind: ClassVar[DocumentKind] = "step"


@dataclass(frozen=True, kw_only=True)
class End(Document):
    """A procedure's last document: how it ended (``error`` when it failed) and, when it ran
    far enough, its summary in the subclass's fields (None otherwise)."""

    kind: ClassVar[DocumentKind] = "end"
    status: Status = "completed"
    error: str | None = None


def document_type(name: str) -> type[Document] | None:
    """The document class registered under ``name`` now (None if none): pcm-hil's own, and
    any a lab's code has declared by the time it asks."""
    _load_catalog()
    return _REGISTRY.get(name)


def document_types() -> dict[str, type[Document]]:
    """Every registered document class, by name."""
    _load_catalog()
    return dict(_REGISTRY)


def _load_catalog() -> None:
    """Import the documents of every procedure of pcm-hil (registration happens on import)."""
    from pcm_hil.documents import catalog  # noqa: F401


@dataclass(frozen=True)
class UnknownDocument:
    """A stored document whose class this pcm-hil does not have (a newer version wrote it,
    or a lab's own procedure not imported): its name, version, kind, procedure and values,
    kept as they are so that nothing recorded is lost."""

    name: str
    version: int
    kind: DocumentKind
    procedure: str
    fields: dict[str, Any]

    def values(self) -> dict[str, Any]:
        return dict(self.fields)
