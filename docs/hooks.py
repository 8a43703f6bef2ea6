"""MkDocs hook (``hooks:`` in mkdocs.yml): lays out ``pcm_hil`` as installed, for griffe.

mkdocstrings' Python handler reads the source with griffe, which finds a package by its
folder's name on a search path and its submodules by walking that folder. The repository
has four folders named otherwise — ``hil/`` is ``pcm_hil``, ``drivers/``, ``emulator/`` and
``protocols/`` its subpackages (``[tool.setuptools.package-dir]`` in pyproject.toml) — and
setuptools' editable finder maps the names at import time only, which griffe does not run (it
reads the finder's ``MAPPING`` and searches the folders' parents, where no ``pcm_hil/`` is).

So before any page is rendered this hook (re)builds a *link tree*: a folder holding
``pcm_hil/`` made of links to the entries of ``hil/`` and to ``drivers/``, ``emulator/``,
``protocols/`` — as tests/test_static_checks.py does for mypy and import-linter. Its place
is the one search path of the handler (``plugins: mkdocstrings: handlers: python: paths`` in
mkdocs.yml, under ``build/``, which git ignores), so the two cannot disagree. The docs build
on a fresh clone with nothing but the ``docs`` extra installed, and nothing is imported:
griffe reads the source, so matplotlib, xarray … need not load.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, Path]:
    """Package name -> its folder in the repository, from [tool.setuptools.package-dir]."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def build_link_tree(tree: Path) -> None:
    """Make ``tree`` hold ``pcm_hil/`` as installed, in links into the repository (anything
    already there is removed first: a module deleted from the source leaves no link)."""
    dirs = package_dirs()
    (root_name,) = [name for name in dirs if "." not in name]
    if tree.is_symlink() or tree.is_file():
        tree.unlink()
    elif tree.exists():
        shutil.rmtree(tree)
    package = tree / root_name
    package.mkdir(parents=True)
    for entry in sorted(dirs[root_name].iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, folder in sorted(dirs.items()):
        if name == root_name:
            continue
        parent, _, child = name.rpartition(".")
        if parent != root_name or (package / child).exists():
            raise PluginError(f"docs/hooks.py: cannot lay out {name} ({folder}) under {package}")
        (package / child).symlink_to(folder, target_is_directory=True)


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
    build_link_tree(link_tree_path(config))
    return config
