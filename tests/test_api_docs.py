"""The API reference covers the public API: every name ``pcm_hil`` exports, the chip driver,
the emulator's configuration and the pytest plugin.

The reference is built by mkdocs from ``mkdocs.yml`` and the pages ``docs/api/*.md``, each a
few ``::: module`` directives that mkdocstrings expands from the docstrings (``.ci/run`` runs
``mkdocs build --strict``, which fails on any warning: an identifier or a cross-reference
that does not resolve). This test does not build: it reads mkdocs.yml, the pages and the
source (with ``ast``, importing nothing but ``pcm_hil`` itself, whose names load lazily) and
checks that what must be documented is, on a page the nav shows. A re-exported name counts
where it is defined: ``TransportError`` of ``pcm_hil.drivers.errors`` is documented with
``pcm_hil.protocols.transport``.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

import pcm_hil
from tests.installed_layout import package_dirs

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
#: The page of the package overview: its table lists every public name of pcm_hil.
OVERVIEW = "api/pcm_hil.md"
#: Modules the reference documents with their members (besides every exported name's).
REQUIRED_MODULES = (
    "pcm_hil.drivers.chip",
    "pcm_hil.drivers.errors",
    "pcm_hil.drivers.instrument",
    "pcm_hil.drivers.smu",
    "pcm_hil.drivers.pulse_generator",
    "pcm_hil.drivers.transports",
    "pcm_hil.emulator.chip",
    "pcm_hil.emulator.resource",
    "pcm_hil.emulator.devices",
    "pcm_hil.emulator.faults",
    "pcm_hil.emulator.clock",
    "pcm_hil.protocols.chip",
    "pcm_hil.protocols.smu",
    "pcm_hil.protocols.pulse_generator",
    "pcm_hil.procedures.program",
    "pcm_hil.procedures.strategies",
    "pcm_hil.procedures.drift",
    "pcm_hil.procedures.characterize",
    "pcm_hil.documents.base",
    "pcm_hil.documents.events",
    "pcm_hil.records.store",
    "pcm_hil.records.metadata",
    "pcm_hil.figures",
    "pcm_hil.report",
    "pcm_hil.testing.plugin",
)
#: Objects the reference must document, as ``module.Name``.
REQUIRED_OBJECTS = (
    "pcm_hil.drivers.chip.PcmChip",
    "pcm_hil.emulator.chip.ChipConfig",
    "pcm_hil.emulator.chip.make_chip",
    "pcm_hil.emulator.chip.PROFILES",
    "pcm_hil.emulator.resource.EmulatorOptions",
    "pcm_hil.emulator.faults.FaultPlan",
)
PLUGIN = "pcm_hil.testing.plugin"
DIRECTIVE = re.compile(r"^::: *(?P<identifier>[\w.]+) *$")


# --- the source, read as installed ---------------------------------------------------------


def module_file(module: str) -> Path | None:
    """The source file of ``module`` (``pcm_hil.drivers.chip`` -> drivers/chip.py), or None."""
    dirs = package_dirs()
    for package in sorted(dirs, key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            rest = module[len(package) + 1 :].split(".") if module != package else []
            base = dirs[package].joinpath(*rest)
            for candidate in (base / "__init__.py", base.with_suffix(".py")):
                if candidate.is_file():
                    return candidate
            return None
    return None


@cache
def module_tree(module: str) -> ast.Module:
    path = module_file(module)
    assert path is not None, f"{module}: no such module in the source"
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def top_level(tree: ast.Module) -> list[ast.stmt]:
    """The module's top-level statements, into ``if``/``try`` blocks but not ``if
    TYPE_CHECKING:`` (names imported only for type checkers are not the module's)."""
    found: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            found.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            found.extend([*node.body, *node.orelse])
        else:
            found.append(node)
    return found


def definition(module: str, name: str) -> tuple[str, ast.stmt]:
    """Where ``name`` of ``module`` is defined (following ``from … import name``): the module
    and the statement."""
    for node in top_level(module_tree(module)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                return module, node
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return module, node
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and node.target.id == name:
                return module, node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    # the package imports absolutely (``from pcm_hil.x import y``), never ``from .``
                    assert node.level == 0 and node.module, f"{module}: a relative import of {name}"
                    return definition(node.module, alias.name)
    raise AssertionError(f"{module} defines no {name!r}")


# --- the reference: mkdocs.yml and its pages ------------------------------------------------


@dataclass(frozen=True)
class Directive:
    page: str
    identifier: str
    #: the ``members`` option: None (the default: all), False, or the names listed
    members: bool | tuple[str, ...] | None

    def documents_members(self) -> bool:
        return self.members is not False and self.members != ()

    def documents(self, module: str, name: str) -> bool:
        if self.identifier == f"{module}.{name}":
            return True
        if self.identifier != module or not self.documents_members():
            return False
        return self.members is None or self.members is True or name in self.members


@cache
def mkdocs_config() -> dict:
    # mkdocs.yml holds no Python tags (!!python/name …): the safe loader reads it
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def directives(page: str) -> list[Directive]:
    """The ``:::`` directives of a page (relative to docs/), with their ``members`` option."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if not match:
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            block.append(following)
        options = (yaml.safe_load("\n".join(block)) or {}).get("options") or {}
        members = options.get("members")
        if isinstance(members, list):
            members = tuple(members)
        found.append(Directive(page, match["identifier"], members))
    return found


@cache
def built_directives() -> tuple[Directive, ...]:
    """Every directive of every page the nav shows."""
    return tuple(
        directive
        for page in nav_pages(mkdocs_config()["nav"])
        if page.endswith(".md")
        for directive in directives(page)
    )


def covering(module: str, name: str) -> list[Directive]:
    return [d for d in built_directives() if d.documents(module, name)]


# --- the checks --------------------------------------------------------------------------------


def test_every_page_of_the_reference_is_in_the_nav() -> None:
    """A page of docs/ is in the nav, or left out of the build by ``exclude_docs`` (say, the
    page of a subpackage still being written)."""
    in_nav = set(nav_pages(mkdocs_config()["nav"]))
    excluded = {
        line.strip().lstrip("/")
        for line in (mkdocs_config().get("exclude_docs") or "").splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    missing = [page for page in pages if page not in in_nav | excluded]
    assert not missing, f"pages left out of the nav in mkdocs.yml: {missing}"
    absent = sorted(page for page in in_nav if not (DOCS / page).is_file())
    assert not absent, f"the nav names pages that do not exist: {absent}"


def test_every_directive_names_a_module_or_an_object_of_one() -> None:
    for directive in built_directives():
        identifier = directive.identifier
        if module_file(identifier) is not None:
            continue
        module, _, name = identifier.rpartition(".")
        assert module_file(module) is not None, f"{directive.page}: no module {identifier}"
        definition(module, name)  # raises when the module has no such name


@pytest.mark.parametrize("name", sorted(pcm_hil._EXPORTS))
def test_every_public_name_is_documented(name: str) -> None:
    exported_from = pcm_hil._EXPORTS[name]
    module, node = definition(exported_from, name)
    assert covering(module, name) or covering(exported_from, name), (
        f"pcm_hil.{name} ({module}.{name}) is on no page of the reference: add "
        f"'::: {module}' to the page of its area in docs/api/"
    )
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        # the reference would show its signature alone
        assert ast.get_docstring(node), f"{module}.{name}, a public name, has no docstring"


def test_the_overview_lists_every_public_name_where_it_is_defined() -> None:
    text = (DOCS / OVERVIEW).read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| \[`(\w+)`\]\[([\w.]+)\] \|", text, flags=re.MULTILINE))
    expected = {
        name: f"{definition(module, name)[0]}.{name}" for name, module in pcm_hil._EXPORTS.items()
    }
    assert sorted(set(expected) - set(listed)) == [], f"add to the table of {OVERVIEW}"
    assert sorted(set(listed) - set(expected)) == [], f"not exported any more: {OVERVIEW}"
    wrong = {name: (listed[name], path) for name, path in expected.items() if listed[name] != path}
    assert not wrong, f"{OVERVIEW}: link each name to where it is defined: {wrong}"


@pytest.mark.parametrize("module", REQUIRED_MODULES)
def test_the_required_modules_are_documented(module: str) -> None:
    assert any(d.identifier == module and d.documents_members() for d in built_directives()), (
        f"{module}: no '::: {module}' (with its members) on a page of the nav"
    )


@pytest.mark.parametrize("path", REQUIRED_OBJECTS)
def test_the_driver_and_the_emulator_configuration_are_documented(path: str) -> None:
    module, _, name = path.rpartition(".")
    defined_in, node = definition(module, name)
    assert defined_in == module
    assert covering(module, name), f"{path} is on no page of the reference"
    if isinstance(node, ast.ClassDef):
        assert ast.get_docstring(node), f"{path} has no docstring"


def test_the_pytest_plugin_fixtures_and_markers_are_documented() -> None:
    """The plugin module is documented whole: each public fixture has its docstring, and the
    module's docstring names every marker the plugin registers."""
    tree = module_tree(PLUGIN)
    fixtures = [
        node
        for node in top_level(tree)
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    ]
    assert {f.name for f in fixtures} >= {"pcm_chip", "pcm_resource", "pcm_emulator", "pcm_clock"}
    assert all(covering(PLUGIN, f.name) for f in fixtures)
    assert not [f.name for f in fixtures if not ast.get_docstring(f)], "fixtures without docstring"
    constants = {
        target.id: node.value
        for node in top_level(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    markers = set()
    for node in ast.walk(tree):  # config.addinivalue_line("markers", _PCM_MARKER)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "addinivalue_line"
            and ast.literal_eval(node.args[0]) == "markers"
        ):
            line = node.args[1]
            text = ast.literal_eval(constants[line.id] if isinstance(line, ast.Name) else line)
            markers.add(re.match(r"\w+", text)[0])  # type: ignore[index]
    assert markers == {"pcm", "pcm_hardware", "pcm_replay"}, markers
    docstring = ast.get_docstring(tree) or ""
    for marker in markers:
        assert f"pytest.mark.{marker}" in docstring, f"the plugin's docstring omits {marker}"


def test_griffe_reads_the_link_tree_the_hook_builds() -> None:
    """The python handler's one search path is under build/ (docs/hooks.py rebuilds it as
    ``pcm_hil/`` laid out as installed before any page is rendered)."""
    (plugin,) = [
        p for p in mkdocs_config()["plugins"] if isinstance(p, dict) and "mkdocstrings" in p
    ]
    python = plugin["mkdocstrings"]["handlers"]["python"]
    (path,) = python["paths"]
    assert Path(path).parts[0] == "build", path
    assert "docs/hooks.py" in mkdocs_config()["hooks"]
    assert python["options"]["allow_inspection"] is False  # read the source, import nothing
