"""The static checks: the layer contracts (import-linter, ``[tool.importlinter]`` in
pyproject.toml) and the types of the whole package (mypy, ``[tool.mypy]``: every function
annotated in the public layers protocols, drivers and emulator; the rest checked as
annotated, untyped bodies included).

Neither tool can read the package as it is in the repository — four folders, ``hil/`` being
``pcm_hil`` and ``drivers/`` … its subpackages — nor through setuptools' editable finder, which
maps the names at import time. Both find a package's modules by walking its folder. So each
check runs on a *link tree*: a temporary folder ``pcm_hil/`` holding links to the entries of
``hil/`` and to ``drivers/``, ``emulator/``, ``protocols/`` — the layout of an installed
``pcm_hil``, built from ``[tool.setuptools.package-dir]``. Reports name the files as they are
in the repository.

They run here, in the suite, rather than as extra steps of ``.ci/run``: the link tree is
code, the same for CI and a developer, and ``pytest`` is the one command both run. By hand::

    .venv/bin/python tests/test_static_checks.py lint-imports
    .venv/bin/python tests/test_static_checks.py mypy            # the whole package
    .venv/bin/python tests/test_static_checks.py mypy -p pcm_hil.drivers  # any mypy arguments
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
if str(ROOT) not in sys.path:  # run as a script: tests/ is not a package on the path then
    sys.path.insert(0, str(ROOT))

from tests import installed_layout  # noqa: E402
from tests.installed_layout import package_dirs, pyproject  # noqa: E402

#: What mypy checks by default: the whole package ([tool.mypy] sets how strictly, per module).
TYPED_PACKAGES = ("pcm_hil",)
#: The public layers, held to every function annotated and no bare generics ([tool.mypy]).
STRICT_PACKAGES = ("pcm_hil.protocols", "pcm_hil.drivers", "pcm_hil.emulator")


def build_link_tree(where: Path) -> Path:
    """A folder under ``where`` holding ``pcm_hil/`` as installed (``installed_layout``)."""
    return installed_layout.build_link_tree(where / "link-tree")


def to_repository_paths(text: str, tree: Path) -> str:
    """The tool's report with the link tree's paths replaced by the repository's."""
    dirs = package_dirs()
    replacements = []
    for name, folder in dirs.items():
        inside = "/".join(name.split("."))
        relative = os.path.relpath(folder, ROOT)
        replacements.append((f"{tree}/{inside}/", f"{relative}/"))
        replacements.append((f"{inside}/", f"{relative}/"))
    # longest first: pcm_hil/drivers/ before pcm_hil/
    replacements.sort(key=lambda pair: len(pair[0]), reverse=True)
    pattern = re.compile("|".join(re.escape(old) for old, _new in replacements))
    table = dict(replacements)
    return pattern.sub(lambda match: table[match.group(0)], text)


def tool_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env["PYTHONPATH"] = str(tree)
    env["MYPYPATH"] = str(tree)
    return env


def run_lint_imports(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the link tree (first on the path: the editable finder comes after
    it), with pyproject.toml's contracts."""
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run(
        [sys.executable, "-c", code, str(PYPROJECT), "--no-cache", *args],
        cwd=tree,
        env=tool_env(tree),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_mypy(tree: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """mypy on the link tree, with pyproject.toml's configuration; by default on the whole
    package."""
    if not any(arg.startswith(("-p", "-m", "--package", "--module")) for arg in args):
        args = (*args, *(f"-p{name}" for name in TYPED_PACKAGES))
    cache_args = ["--cache-dir", str(cache)] if cache is not None else ["--no-incremental"]
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), *cache_args, *args],
        cwd=tree,
        env=tool_env(tree),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def link_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_link_tree(tmp_path_factory.mktemp("static"))


# --- the tree itself ------------------------------------------------------------------------


def test_link_tree_is_the_installed_layout(link_tree: Path) -> None:
    """The tree the tools read holds what the installed package holds: pcm_hil's own modules
    and every mapped subpackage, at the names it is imported by."""
    package = link_tree / "pcm_hil"
    assert (package / "__init__.py").resolve() == (ROOT / "hil" / "__init__.py").resolve()
    for name, folder in package_dirs().items():
        if name != "pcm_hil":
            assert (link_tree / name.replace(".", "/")).resolve() == folder.resolve()
    assert to_repository_paths(f"{link_tree}/pcm_hil/drivers/chip.py:3: x", link_tree) == (
        "drivers/chip.py:3: x"
    )
    assert to_repository_paths("pcm_hil/demo.py:1: x", link_tree) == "hil/demo.py:1: x"


# --- the layers -----------------------------------------------------------------------------


def contracts() -> dict[str, dict]:
    return {c["id"]: c for c in pyproject()["tool"]["importlinter"]["contracts"]}


def subpackages_of_pcm_hil() -> set[str]:
    """Every direct child module or package of pcm_hil, as installed."""
    dirs = package_dirs()
    children = {name for name in dirs if name.count(".") == 1}
    for entry in dirs["pcm_hil"].iterdir():
        if entry.suffix == ".py" and entry.stem != "__init__":
            children.add(f"pcm_hil.{entry.stem}")
        elif (entry / "__init__.py").is_file():
            children.add(f"pcm_hil.{entry.name}")
    return children


def test_the_contract_of_drivers_and_emulator_names_every_other_subpackage() -> None:
    """The drivers/emulator contract lists what they may not import; a new subpackage of
    pcm_hil must join the list (only pcm_hil.protocols is theirs to import)."""
    forbidden = set(contracts()["drivers-emulator"]["forbidden_modules"])
    missing = subpackages_of_pcm_hil() - {"pcm_hil.protocols"} - forbidden
    assert not missing, f"add to the drivers-emulator contract's forbidden_modules: {missing}"
    assert "pcm_hil.protocols" not in forbidden


def test_import_contracts(link_tree: Path) -> None:
    """lint-imports: every contract in [tool.importlinter] kept."""
    result = run_lint_imports(link_tree)
    report = to_repository_paths(result.stdout + result.stderr, link_tree)
    report = report[max(report.find("Contracts\n"), 0) :]  # without the banner
    assert result.returncode == 0, f"import contracts broken:\n{report}"
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", report)
    assert kept is not None, report
    assert int(kept.group(1)) == len(contracts()) and int(kept.group(2)) == 0, report


# --- the types ------------------------------------------------------------------------------


def test_the_public_layers_are_typed_strictly() -> None:
    """[tool.mypy] holds protocols, drivers and emulator to every function annotated and no
    bare generics (the rest of pcm_hil to the global settings)."""
    strict = {
        "disallow_untyped_defs",
        "disallow_incomplete_defs",
        "disallow_any_generics",
        "disallow_untyped_decorators",
        "disallow_subclassing_any",
    }
    overrides = pyproject()["tool"]["mypy"]["overrides"]
    for package in STRICT_PACKAGES:
        covering = [
            o for o in overrides if f"{package}.*" in o["module"] and all(o.get(s) for s in strict)
        ]
        assert covering, f"{package}: no [[tool.mypy.overrides]] with {sorted(strict)}"


def test_mypy(link_tree: Path, tmp_path: Path) -> None:
    """mypy -p pcm_hil: no error."""
    result = run_mypy(link_tree, cache=tmp_path / "mypy-cache")
    report = to_repository_paths(result.stdout + result.stderr, link_tree)
    assert result.returncode == 0, f"mypy:\n{report}"
    assert "Success: no issues found" in report, report


def main(argv: list[str]) -> int:
    """``lint-imports`` or ``mypy`` on a fresh link tree, reporting repository paths."""
    if not argv or argv[0] not in ("lint-imports", "mypy"):
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as where:
        tree = build_link_tree(Path(where))
        if argv[0] == "mypy":
            result = run_mypy(tree, *argv[1:], cache=ROOT / "build" / "mypy-cache")
        else:
            result = run_lint_imports(tree, *argv[1:])
        sys.stdout.write(to_repository_paths(result.stdout, tree))
        sys.stderr.write(to_repository_paths(result.stderr, tree))
        return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
