"""MkDocs hook (``hooks:`` in mkdocs.yml): lays out ``pcm_hil`` as installed, for griffe.

mkdocstrings' Python handler reads the source with griffe, which finds a package by its
folder's name on a search path and its submodules by walking that folder. The repository
has four folders named otherwise — ``hil/`` is ``pcm_hil``, ``drivers/``, ``emulator/`` and
``protocols/`` its subpackages (``[tool.setuptools.package-dir]`` in pyproject.toml) — and
setuptools' editable finder maps the names at import time only, which griffe does not run (it
reads the finder's ``MAPPING`` and searches the folders' parents, where no ``pcm_hil/`` is).

So before any page is rendered this hook (re)builds a *link tree*: a folder holding
``pcm_hil/`` made of links to the entries of ``hil/`` and to ``drivers/``, ``emulator/``,
``protocols/`` — with tests/installed_layout.py, as tests/test_static_checks.py does for
mypy and import-linter. Its place
is the one search path of the handler (``plugins: mkdocstrings: handlers: python: paths`` in
mkdocs.yml, under ``build/``, which git ignores), so the two cannot disagree. The docs build
on a fresh clone with nothing but the ``docs`` extra installed, and nothing is imported:
griffe reads the source, so matplotlib, xarray … need not load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.installed_layout import build_link_tree  # noqa: E402  (shared with the static checks)


def link_tree_path(config: MkDocsConfig) -> Path:
    """The python handler's one search path (relative to mkdocs.yml), where the tree goes."""
    try:
        paths = config.plugins["mkdocstrings"].config.handlers["python"]["paths"]
    except (KeyError, AttributeError, TypeError) as error:
        raise PluginError(
            "docs/hooks.py: mkdocs.yml must set plugins: mkdocstrings: handlers: python: paths"
        ) from error
    if not (isinstance(paths, list) and len(paths) == 1 and isinstance(paths[0], str)):
        raise PluginError(f"docs/hooks.py: expected one python handler path, got {paths!r}")
    path = (Path(config.config_file_path).resolve().parent / paths[0]).resolve()
    if ROOT / "build" not in path.parents:
        # the tree is removed and rebuilt: never the repository or a folder of its source
        raise PluginError(f"docs/hooks.py: the link tree must be a folder under build/: {path}")
    return path


@event_priority(100)  # first: before mkdocstrings sets its handlers up
def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    try:
        build_link_tree(link_tree_path(config))
    except ValueError as error:
        raise PluginError(f"docs/hooks.py: {error}") from None
    return config
