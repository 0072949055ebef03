"""The administrative tree in force at an instant: descendants, ancestors, and the successors of retired units.

DESIGN: "Per administrative unit: the points whose unit is that unit or one of its descendants, in the
unit tree in force in the last bucket of P." A point may name a unit that no longer exists then (a district
abolished on 2025-07-01): it is followed through `successor_codes` to the units that replaced it. Callers
that break a period down say which tree they used by keeping the instant `tree_instant_for_period` returns.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from registry.units import AdminUnit

# "A point, binding or unit is in force in a bucket when it is in force at the bucket's start." The
# units retired by then come along for their successors, the latest version of each code last.
_UNITS = """
SELECT code, name, parent_code, level, nullif(valid_from, '-infinity') AS valid_from, valid_to, successor_codes,
       valid_to IS NULL OR valid_to > %(at)s AS in_force
FROM admin_units
WHERE valid_from <= %(at)s
ORDER BY code, valid_from
"""

# UNION (not UNION ALL) stops at codes already reached, so even a damaged table cannot loop forever.
DESCENDANTS = """
WITH RECURSIVE in_force AS (
    SELECT code, parent_code FROM admin_units
    WHERE valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)
), tree AS (
    SELECT code FROM in_force WHERE code = %(root)s
    UNION
    SELECT f.code FROM in_force f JOIN tree t ON f.parent_code = t.code
)
SELECT code FROM tree
"""


class UnknownAdminUnit(LookupError):
    def __init__(self, code: str, at: datetime) -> None:
        super().__init__(code)
        self.code = code
        self._message = f"administrative unit {code!r} is not in the unit tree in force at {at.isoformat()}"

    def __str__(self) -> str:
        return self._message


@dataclass(frozen=True)
class UnitTree:
    """The units in force at `at`; `at` is part of the answer, so a report can say which tree it used.
    `successors` maps each unit retired by then to the codes that replaced it."""

    at: datetime
    units: dict[str, AdminUnit]
    children: dict[str, list[str]] = field(default_factory=dict)
    successors: dict[str, tuple[str, ...]] = field(default_factory=dict)

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
                pending.extend(self.successors.get(current, ()))
        return found

    def under(self, point_unit: str | None) -> set[str]:
        """Every in-force unit whose breakdown includes a point that names `point_unit`."""
        return {a for code in self.resolve(point_unit) for a in self.ancestors_or_self(code)}

    def in_order(self) -> list[AdminUnit]:
        """Units parents first (province, then its districts or communes), each level by code."""
        depth = {code: len(self.ancestors_or_self(code)) for code in self.units}
        return sorted(self.units.values(), key=lambda u: (depth[u.code], u.code))

    @property
    def roots(self) -> list[str]:
        return sorted(c for c, u in self.units.items() if u.parent_code not in self.units)

    def descendants(self, code: str) -> set[str]:
        """`code` and every unit below it; empty when `code` is not in force at `at`."""
        if code not in self.units:
            return set()
        found, todo = {code}, [code]
        while todo:
            for child in self.children.get(todo.pop(), []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found


def unit_tree(conn: psycopg.Connection, at: datetime) -> UnitTree:
    units: dict[str, AdminUnit] = {}
    successors: dict[str, tuple[str, ...]] = {}
    for r in conn.execute(_UNITS, {"at": at}):
        if r["in_force"]:
            units[r["code"]] = AdminUnit(r["code"], r["name"], r["parent_code"], r["level"], r["valid_from"],
                                         r["valid_to"], tuple(r["successor_codes"]))
        elif r["successor_codes"]:
            successors[r["code"]] = tuple(r["successor_codes"])  # oldest first: the latest version wins
    children: dict[str, list[str]] = {}
    for unit in units.values():
        if unit.parent_code in units:
            children.setdefault(unit.parent_code, []).append(unit.code)
    return UnitTree(at, units, children, successors)


def descendants(conn: psycopg.Connection, code: str, at: datetime) -> list[str]:
    """`code` and the codes below it in the tree in force at `at`, in one query."""
    return sorted(r["code"] for r in conn.execute(DESCENDANTS, {"root": code, "at": at}))


def tree_instant_for_period(period_from: date, period_to: date, zone: ZoneInfo) -> datetime:
    """The start of the last hourly bucket of the local-date period [period_from, period_to): the instant
    whose tree breaks the period down, even when the period spans a reform."""
    if period_to <= period_from:
        raise ValueError(f"period end {period_to} must be after its start {period_from}")
    end = datetime.combine(period_to, time(0), tzinfo=zone)
    return (end.astimezone(ZoneInfo("UTC")) - timedelta(hours=1)).astimezone(zone)


def tree_for_period(conn: psycopg.Connection, period_from: date, period_to: date, zone: ZoneInfo) -> UnitTree:
    """The tree a breakdown of the period uses; its `at` says which instant that was."""
    return unit_tree(conn, tree_instant_for_period(period_from, period_to, zone))
