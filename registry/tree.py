"""The administrative tree in force at an instant, and the descendants of a unit in it.

DESIGN: "Per administrative unit: the points whose unit is that unit or one of its descendants, in the
unit tree in force in the last bucket of P." Callers that break a period down say which tree they used by
keeping the instant `tree_instant_for_period` returns.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from registry.units import AdminUnit

_IN_FORCE = """
SELECT code, name, parent_code, level, nullif(valid_from, '-infinity') AS valid_from, valid_to, successor_codes
FROM admin_units
WHERE valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)
ORDER BY code
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


@dataclass(frozen=True)
class UnitTree:
    """The units in force at `at`; `at` is part of the answer, so a report can say which tree it used."""

    at: datetime
    units: dict[str, AdminUnit]
    children: dict[str, list[str]] = field(default_factory=dict)

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
    units = {r["code"]: AdminUnit(r["code"], r["name"], r["parent_code"], r["level"], r["valid_from"],
                                  r["valid_to"], tuple(r["successor_codes"]))
             for r in conn.execute(_IN_FORCE, {"at": at})}
    children: dict[str, list[str]] = {}
    for unit in units.values():
        if unit.parent_code in units:
            children.setdefault(unit.parent_code, []).append(unit.code)
    return UnitTree(at, units, children)


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
