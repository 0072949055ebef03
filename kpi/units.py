"""Administrative units for breakdowns: the unit tree in force at an instant, and which points fall under a unit.

DESIGN: "Per administrative unit: the points whose unit is that unit or one of its descendants, in the unit
tree in force in the last bucket of P." A point may name a unit that no longer exists then (a district
abolished on 2025-07-01): it is followed through `successor_codes` to the units that replaced it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

import psycopg

# "A point, binding or unit is in force in a bucket when it is in force at the bucket's start." The
# units retired by then come along with their successors, the latest version of each code last.
_UNITS = """
SELECT code, name, parent_code, level, successor_codes,
       valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s) AS in_force
FROM admin_units
WHERE valid_from <= %(at)s
ORDER BY code, valid_from
"""


class UnknownAdminUnit(LookupError):
    def __init__(self, code: str, at: datetime) -> None:
        super().__init__(code)
        self.code = code
        self._message = f"administrative unit {code!r} is not in the unit tree in force at {at.isoformat()}"

    def __str__(self) -> str:
        return self._message


@dataclass(frozen=True)
class AdminUnit:
    code: str
    name: str
    parent_code: str | None
    level: str


class _HasUnit(Protocol):
    @property
    def admin_unit(self) -> str | None: ...


P = TypeVar("P", bound=_HasUnit)


@dataclass
class UnitTree:
    """The units in force at `at`, plus the history needed to resolve a retired unit to its successors."""

    at: datetime
    units: dict[str, AdminUnit]
    _successors: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def require(self, code: str) -> AdminUnit:
        if code not in self.units:
            raise UnknownAdminUnit(code, self.at)
        return self.units[code]

    def ancestors_or_self(self, code: str) -> list[str]:
        chain, seen = [], set()
        while code in self.units and code not in seen:
            seen.add(code)
            chain.append(code)
            code = self.units[code].parent_code
        return chain

    def resolve(self, code: str | None) -> set[str]:
        """The in-force units that `code` is, or that replaced it (following successors, cycles ignored)."""
        found: set[str] = set()
        pending, seen = [code] if code else [], set()
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.units:
                found.add(current)
            else:
                pending.extend(self._successors.get(current, ()))
        return found

    def under(self, point_unit: str | None) -> set[str]:
        """Every in-force unit whose breakdown includes a point that names `point_unit`."""
        return {a for code in self.resolve(point_unit) for a in self.ancestors_or_self(code)}

    def in_order(self) -> list[AdminUnit]:
        """Units parents first (province, then its districts or communes), each level by code."""
        depth = {code: len(self.ancestors_or_self(code)) for code in self.units}
        return sorted(self.units.values(), key=lambda u: (depth[u.code], u.code))


def unit_tree(conn: psycopg.Connection, at: datetime) -> UnitTree:
    units: dict[str, AdminUnit] = {}
    successors: dict[str, tuple[str, ...]] = {}
    for r in conn.execute(_UNITS, {"at": at}):
        if r["in_force"]:
            units[r["code"]] = AdminUnit(r["code"], r["name"], r["parent_code"], r["level"])
        elif r["successor_codes"]:
            successors[r["code"]] = tuple(r["successor_codes"])  # oldest first: the latest version wins
    return UnitTree(at, units, successors)


def points_in_unit(points: Iterable[P], tree: UnitTree, code: str) -> list[P]:
    """The points whose unit is `code` or one of its descendants; raises UnknownAdminUnit."""
    tree.require(code)
    return [p for p in points if code in tree.under(p.admin_unit)]


def points_by_unit(points: Iterable[P], tree: UnitTree) -> dict[str, list[P]]:
    """For every in-force unit, its points and its descendants' (each point's ancestry resolved once)."""
    grouped: dict[str, list[P]] = {code: [] for code in tree.units}
    memo: dict[str | None, set[str]] = {}
    for point in points:
        if point.admin_unit not in memo:
            memo[point.admin_unit] = tree.under(point.admin_unit)
        for code in memo[point.admin_unit]:
            grouped[code].append(point)
    return grouped
