"""The package layout: one installed package, ``pcm_hil``, from four folders (``hil/`` is
``pcm_hil``; ``drivers/``, ``emulator/``, ``protocols/`` its subpackages, by setuptools'
``package-dir``). Nothing of it installs under a generic top-level name, so a lab's own
``drivers`` or ``hil`` package lives beside it; importing a layer loads nothing above it; the
public names of ``pcm_hil`` resolve; no source uses the old top-level names; modules stay small.

The checks read the repository's files and pyproject.toml, and the installed distribution's
metadata; the import checks run in fresh interpreters started in empty folders.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pcm_hil
from tests.installed_layout import package_dirs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: The folders the package is installed from.
SOURCE_FOLDERS = ("hil", "drivers", "emulator", "protocols")
#: The names the folders had as top-level packages before they became pcm_hil.
OLD_TOP_LEVEL = frozenset(SOURCE_FOLDERS)
#: Folders whose Python files are scanned for imports of the old names.
SCANNED_FOLDERS = (*SOURCE_FOLDERS, "tests", "benchmarks")
#: Lines a module may have; past it, split it.
MAX_MODULE_LINES = 600
DISTRIBUTION = "pcm-hil"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def python_files(*folders: str) -> list[Path]:
    return sorted(
        path
        for folder in folders
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def run_python(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter of this environment, started in ``cwd``, with no
    PYTHONPATH: what a lab script run from that folder sees."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- the package list ---------------------------------------------------------------------


def packages_on_disk() -> dict[str, Path]:
    """Every package the four folders hold (a folder with ``__init__.py``), by its pcm_hil
    name."""
    found: dict[str, Path] = {}
    for name, folder in package_dirs().items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(folder).parts
            found[".".join((name, *relative))] = init.parent
    return found


def test_every_package_folder_is_listed_and_every_listed_package_exists() -> None:
    listed = pyproject()["tool"]["setuptools"]["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    on_disk = packages_on_disk()
    unlisted = sorted(set(on_disk) - set(listed))
    missing = sorted(set(listed) - set(on_disk))
    assert not unlisted, f"add to [tool.setuptools] packages: {unlisted}"
    assert not missing, f"listed in [tool.setuptools] packages, not on disk: {missing}"


def test_every_folder_of_python_files_is_a_package() -> None:
    """A folder of modules without ``__init__.py`` would be left out of the install."""
    loose = sorted(
        str(path.parent.relative_to(ROOT))
        for path in python_files(*SOURCE_FOLDERS)
        if not (path.parent / "__init__.py").is_file()
    )
    assert not loose, f"folders of modules without __init__.py: {sorted(set(loose))}"


# --- what is installed ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OLD_TOP_LEVEL))
def test_no_generic_top_level_module_is_installed(tmp_path: Path, name: str) -> None:
    result = run_python(
        f"""
        import importlib.util
        assert importlib.util.find_spec({name!r}) is None, importlib.util.find_spec({name!r})
        try:
            import {name}
        except ModuleNotFoundError as error:
            assert error.name == {name!r}, error
        else:
            raise AssertionError("import {name}: " + repr({name}))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


INSTALLED_FACTS = """
    import importlib.metadata, json

    dist = importlib.metadata.distribution("pcm-hil")
    files = [file for file in dist.files or []]
    loaded = {}
    for entry_point in dist.entry_points:
        try:
            loaded[entry_point.name] = entry_point.load() is not None
        except Exception as error:
            loaded[entry_point.name] = repr(error)
    print(json.dumps({
        "top_level": (dist.read_text("top_level.txt") or "").split(),
        "files": [file.as_posix() for file in files],
        "finders": [
            str(file.locate()) for file in files
            if file.parts[0].startswith("__editable__") and file.name.endswith("_finder.py")
        ],
        "entry_points": [[e.group, e.name, e.value] for e in dist.entry_points],
        "loaded": loaded,
    }))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The installed distribution as a script run from elsewhere sees it (not the
    pcm_hil.egg-info a build leaves in the repository)."""
    result = run_python(INSTALLED_FACTS, cwd=tmp_path_factory.mktemp("installed"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_distribution_installs_only_pcm_hil(installed: dict) -> None:
    """top_level.txt names pcm_hil alone; RECORD holds pcm_hil's files, the metadata, scripts
    and (an editable install) setuptools' finder, whose map names only pcm_hil packages."""
    assert installed["top_level"] == ["pcm_hil"]
    assert installed["files"], "the distribution has no RECORD"
    tops = set()
    for file in installed["files"]:
        first = file.split("/")[0]
        if first in ("..", "__pycache__") or first.endswith((".dist-info", ".egg-info")):
            continue  # scripts in bin/, compiled files, the metadata
        if not first.startswith("__editable__"):  # the finder and its .pth
            tops.add(first.removesuffix(".py"))
    assert tops <= {"pcm_hil"}, f"installed beside pcm_hil: {sorted(tops - {'pcm_hil'})}"
    for finder in installed["finders"]:  # an editable install: the names its finder maps
        names = finder_mapping(Path(finder))
        assert names, finder
        assert all(n == "pcm_hil" or n.startswith("pcm_hil.") for n in names), names
    if not installed["finders"]:  # a regular install: the files are there
        assert tops == {"pcm_hil"}


def finder_mapping(finder: Path) -> dict[str, str]:
    """The ``MAPPING`` (package name -> folder) of setuptools' editable finder module."""
    for node in ast.parse(finder.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "MAPPING":
            return ast.literal_eval(node.value) if node.value is not None else {}
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["MAPPING"]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{finder}: no MAPPING")


def test_every_entry_point_is_a_pcm_hil_name_and_loads(installed: dict) -> None:
    assert installed["entry_points"], "no entry points"
    for group, name, value in installed["entry_points"]:
        assert value.split(":")[0].split(".")[0] == "pcm_hil", (group, name, value)
    assert all(ok is True for ok in installed["loaded"].values()), installed["loaded"]


LAB_SCRIPT = """
    import numpy as np

    import pcm_hil
    from pcm_hil import PcmChip, program_and_verify
    from pcm_hil.procedures.program import published_programming_sigma

    import drivers, emulator, hil, protocols  # the lab's own packages

    assert (drivers.MARKER, emulator.MARKER, hil.MARKER, protocols.MARKER) == ("lab",) * 4
    for name in ("drivers", "emulator", "hil", "protocols"):
        own = __import__(name)
        assert own.__file__.startswith({lab!r}), (name, own.__file__)

    with PcmChip.open("emulator?profile=tiny&seed=3") as chip:
        import pcm_hil.drivers, pcm_hil.emulator
        assert not hasattr(pcm_hil.drivers, "MARKER") and not hasattr(pcm_hil.emulator, "MARKER")
        addresses = np.arange(8)
        targets = np.linspace(4.0, 20.0, 8)
        result = program_and_verify(chip, 0, addresses, targets)
        read = chip.read(0, addresses)
    assert result.status == "completed", result.status
    assert (result.converged | result.stuck).all(), result
    assert result.converged.sum() >= 6, result
    # read as each converged: within 4 σ_prog (the published spread, read noise included)
    error = (result.final_uS - targets)[result.converged]
    sigma = published_programming_sigma(targets)[result.converged]
    assert (np.abs(error) < 4 * sigma).all(), (error, sigma)
    # read again at the end, up to minutes later: drifted lower since, in the mean
    assert (read / result.final_uS)[result.converged].mean() < 1.0, read / result.final_uS
    print("lab ok")
"""


def test_a_lab_folder_with_its_own_drivers_emulator_and_hil_packages(tmp_path: Path) -> None:
    """A lab keeps its own ``drivers``, ``emulator``, ``hil`` and ``protocols`` packages and
    runs scripts from their folder: pcm_hil's names do not collide with them, and the
    embedded emulator (found through the pcm_hil.transports entry point) still opens."""
    lab = tmp_path / "lab"
    for name in ("drivers", "emulator", "hil", "protocols"):
        (lab / name).mkdir(parents=True)
        (lab / name / "__init__.py").write_text('MARKER = "lab"\n', encoding="utf-8")
    result = run_python(LAB_SCRIPT.format(lab=str(lab)), cwd=lab)
    assert result.returncode == 0, result.stderr
    assert "lab ok" in result.stdout


# --- what importing loads ---------------------------------------------------------------------


def modules_loaded_by(statement: str, tmp_path: Path) -> set[str]:
    code = (
        textwrap.dedent(statement) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def pcm_hil_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "pcm_hil" or m.startswith("pcm_hil.")}


def test_import_pcm_hil_loads_no_subpackage(tmp_path: Path) -> None:
    assert pcm_hil_modules(modules_loaded_by("import pcm_hil", tmp_path)) == {"pcm_hil"}


#: Each lower layer, and what of pcm_hil importing it may load.
LOWER_LAYERS = {
    "pcm_hil.protocols": ("pcm_hil.protocols",),
    "pcm_hil.drivers": ("pcm_hil.drivers", "pcm_hil.protocols"),
    "pcm_hil.emulator": ("pcm_hil.emulator", "pcm_hil.protocols"),
}
#: Third-party packages of the upper layers (dashboard, ML, storage, the pytest plugin).
HEAVY = ("rich", "sklearn", "h5py", "pytest")

EVERY_MODULE = """
    import importlib, pkgutil
    import {package} as package
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
"""


@pytest.mark.parametrize("what", ["the package", "every module"])
@pytest.mark.parametrize("package", sorted(LOWER_LAYERS))
def test_importing_a_lower_layer_loads_nothing_above_it(
    tmp_path: Path, package: str, what: str
) -> None:
    """``import pcm_hil.protocols`` (and any module of it) loads the protocols and nothing
    else of pcm_hil — not the procedures, the analog networks, the drivers, the emulator —
    nor rich or scikit-learn; the drivers and the emulator load only themselves and the
    protocols."""
    may_load = LOWER_LAYERS[package]
    statement = f"import {package}" if what == "the package" else EVERY_MODULE
    loaded = modules_loaded_by(statement.format(package=package), tmp_path)
    ours = pcm_hil_modules(loaded) - {"pcm_hil"}
    allowed = (*may_load, *(name + "." for name in may_load))
    beyond = sorted(m for m in ours if not m.startswith(allowed))
    assert not beyond, f"importing {what} of {package} loads {beyond}"
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"importing {what} of {package} loads {heavy}"


# --- the public names -------------------------------------------------------------------------


PUBLIC_NAMES = """
    import json
    import pcm_hil

    listed_by_dir = sorted(set(pcm_hil.__all__) - set(dir(pcm_hil)))  # before any lookup
    unresolved = {}
    for name in pcm_hil.__all__:
        try:
            getattr(pcm_hil, name)
        except Exception as error:  # every one, not the first
            unresolved[name] = f"{type(error).__name__}: {error}"
    print(json.dumps({"not_in_dir": listed_by_dir, "unresolved": unresolved}))
"""


@pytest.fixture(scope="module")
def public_names(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What a fresh interpreter finds of ``pcm_hil.__all__``."""
    result = run_python(PUBLIC_NAMES, cwd=tmp_path_factory.mktemp("public"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_public_name_resolves(public_names: dict) -> None:
    unresolved = public_names["unresolved"]
    assert not unresolved, f"pcm_hil.__all__ names that do not resolve: {unresolved}"


def test_dir_lists_the_public_names(public_names: dict) -> None:
    missing = public_names["not_in_dir"]
    assert not missing, f"missing from dir(pcm_hil): {missing}"


def test_the_type_checkers_see_the_names_the_lazy_table_exports() -> None:
    """The ``if TYPE_CHECKING:`` imports of pcm_hil/__init__.py (what mypy and editors see)
    import exactly ``_EXPORTS``: each name from the module the lazy lookup uses."""
    tree = ast.parse((ROOT / "hil" / "__init__.py").read_text(encoding="utf-8"))
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen: dict[str, str] = {}
    for node in ast.walk(block):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                seen[alias.asname or alias.name] = str(node.module)
    assert seen == pcm_hil._EXPORTS
    assert pcm_hil.__all__ == sorted(pcm_hil._EXPORTS)


# --- the sources ------------------------------------------------------------------------------


def old_name_imports(path: Path) -> list[str]:
    """Absolute imports of a top-level drivers / emulator / protocols / hil in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in OLD_TOP_LEVEL:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


#: A string naming a module by its old dotted name, as given to import_module, mock.patch,
#: monkeypatch.setattr or an entry point: "drivers.chip", "hil.procedures.program:func" …
_OLD_DOTTED = re.compile("^(" + "|".join(sorted(OLD_TOP_LEVEL)) + r")(\.[A-Za-z_]\w*)+(:[\w.]+)?$")


def old_name_strings(path: Path) -> list[str]:
    """String constants naming an old dotted module path that exists in the repository."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if not _OLD_DOTTED.match(text):
                continue
            parts = text.split(":")[0].split(".")
            for end in range(len(parts), 1, -1):  # its longest module prefix on disk
                base = ROOT.joinpath(*parts[:end])
                if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
                    break
    return found


def test_no_source_imports_the_old_top_level_names() -> None:
    found = [line for path in python_files(*SCANNED_FOLDERS) for line in old_name_imports(path)]
    assert not found, "imports of the old top-level names (use pcm_hil.…):\n" + "\n".join(found)


def test_no_source_names_an_old_module_path_in_a_string() -> None:
    found = [line for path in python_files(*SCANNED_FOLDERS) for line in old_name_strings(path)]
    assert not found, "old module paths in strings (use pcm_hil.…):\n" + "\n".join(found)


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in python_files(*SOURCE_FOLDERS)
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"
