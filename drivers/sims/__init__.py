"""pyvisa-sim definitions of the bench instruments, installed with the package.

``path("smu2400")`` / ``path("pulse81110")`` is the file to name as the VISA library:
``SourceMeter("TCPIP0::localhost::2400::SOCKET", visa_library=f"{path('smu2400')}@sim")``.
"""

from __future__ import annotations

import atexit
import importlib.resources
from contextlib import ExitStack
from pathlib import Path

__all__ = ["names", "path"]

_extracted = ExitStack()  # definitions copied out of a zipped install, removed at exit
atexit.register(_extracted.close)


def names() -> list[str]:
    """The definitions there are (file names without ``.yaml``)."""
    files = importlib.resources.files(__name__)
    return sorted(entry.name[:-5] for entry in files.iterdir() if entry.name.endswith(".yaml"))


def path(name: str) -> str:
    """The file system path of the definition ``name`` (``"smu2400"`` or ``"smu2400.yaml"``)."""
    file_name = name if name.endswith(".yaml") else f"{name}.yaml"
    resource = importlib.resources.files(__name__).joinpath(file_name)
    if not resource.is_file():
        raise FileNotFoundError(f"no simulation {name!r}; there are: {', '.join(names())}")
    if isinstance(resource, Path):
        return str(resource)
    return str(_extracted.enter_context(importlib.resources.as_file(resource)))
