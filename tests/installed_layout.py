"""``pcm_hil`` laid out as installed, from the repository's four folders: which folder each
package is (``[tool.setuptools.package-dir]``), and a *link tree* — a folder holding
``pcm_hil/`` made of links to the entries of ``hil/`` and to ``drivers/``, ``emulator/``,
``protocols/`` — for the tools that find a package by walking its folder (mypy,
import-linter: tests/test_static_checks.py; griffe, for the API reference: docs/hooks.py)."""

from __future__ import annotations

import shutil
import sys
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@cache
def package_dirs() -> dict[str, Path]:
    """Package name -> its folder in the repository."""
    mapping = pyproject()["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def build_link_tree(tree: Path) -> Path:
    """Make ``tree`` hold ``pcm_hil/`` as installed, in links into the repository (anything
    already there removed first: a module deleted from the source leaves no link); returns
    ``tree``, the folder to put on a search path. ValueError when a mapped package is not a
    direct subpackage, or shadows a folder of ``hil/``."""
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
        if parent != root_name:
            raise ValueError(f"{name}: only direct subpackages are mapped to a folder")
        if (package / child).exists():
            raise ValueError(f"{name}: both {folder} and {dirs[root_name] / child}")
        (package / child).symlink_to(folder, target_is_directory=True)
    return tree
