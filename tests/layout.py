"""The house's floors as data: which package may import which (README.md, "How the code is laid out").

Read from the code's own syntax trees, every import counted, those inside functions too. The tests of the
layout (tests/test_layout.py) and of SQL safety walk the packages named here.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each package may import besides itself. A package imports only what stands below it: the ground, then the
# features (some on others), then the faces; the development stack and the command line come last.
MAY_IMPORT: dict[str, frozenset[str]] = {
    # ground
    "base": frozenset(),
    # features
    "registry": frozenset({"base"}),
    "ingest": frozenset({"base"}),
    "catalog": frozenset({"base"}),
    "simulators": frozenset({"base"}),
    "kpi": frozenset({"base", "catalog", "registry"}),
    "forms": frozenset({"base", "catalog"}),
    # faces
    "report": frozenset({"base", "catalog", "kpi", "forms"}),
    "web": frozenset({"base", "catalog", "registry", "kpi", "forms", "report"}),
    # the development stack: throwaway services, the demo driving every feature, ingest as a child process
    "devstack": frozenset({"base", "catalog", "registry", "ingest", "kpi", "forms", "simulators", "report"}),
    # the command line assembles every package's commands
    "citykpi": frozenset({"base", "catalog", "registry", "ingest", "kpi", "forms", "simulators", "report", "web",
                          "devstack"}),
}
PACKAGES = tuple(MAY_IMPORT)
# Not installed: they may import anything above.
TOOLS = ("tests", "bench")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str
    names: tuple[str, ...]

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.module}{names}"


def imports_in(source: str, path: Path) -> Iterator[Import]:
    """Every absolute import of one of our packages in `source`."""
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [Import(path, node.lineno, node.module, tuple(a.name for a in node.names))]
        elif isinstance(node, ast.Import):
            found = [Import(path, node.lineno, alias.name, ()) for alias in node.names]
        else:
            continue
        yield from (i for i in found if i.package in MAY_IMPORT or i.package in TOOLS)


def package_imports(package: str) -> Iterator[Import]:
    for path in sorted((ROOT / package).rglob("*.py")):
        yield from imports_in(path.read_text(encoding="utf-8"), path)


def floor_violations(package: str, imports: Iterator[Import]) -> list[str]:
    """Imports of a package it may not import: one standing above it, a tool, or its own package's ground."""
    allowed = MAY_IMPORT[package] | {package}
    return [f"{i}: {package} may not import {i.package}" for i in imports if i.package not in allowed]


def reach_violations(package: str, imports: Iterator[Import]) -> list[str]:
    """Imports into another package's command line or internals: only the command line (citykpi) assembles the
    packages' commands, and a name or module starting with `_` is its package's own."""
    found = []
    for i in imports:
        if i.package == package:
            continue
        if i.module.split(".")[-1] == "cli" and package != "citykpi":
            found.append(f"{i}: only the command line (citykpi/cli.py) imports a package's commands")
        internal = [part for part in (*i.module.split("."), *i.names) if part.startswith("_")]
        if internal:
            found.append(f"{i}: {', '.join(internal)} is internal to {i.package}")
    return found
