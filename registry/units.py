"""Administrative units with history: reading, checking and importing a complete list.

The tree is versioned like everything else in the registry (DESIGN: on 2025-07-01 Bình Định merged into a
new Gia Lai province and the district level was abolished). A unit's version holds over
[valid_from, valid_to); an empty valid_from means "since before the registry" (stored as -infinity).
Units are few (a province has hundreds), so the checks run in Python over the whole resulting tree.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from base.time import format_instant
from base.vocabulary import ID_PATTERN
from registry.changes import ChangeCount
from registry.validation import Problems, filled, read_csv, valid_id, validity

COLUMNS = ["code", "name", "parent_code", "level"]
OPTIONAL = ("valid_from", "valid_to", "successor_codes")
LEVELS = ("province", "district", "commune")
# The levels a unit's parent may have. Communes sit under districts before the 2025 reform and directly
# under the province after it.
PARENT_LEVELS = {"province": (), "district": ("province",), "commune": ("district", "province")}


@dataclass(frozen=True)
class AdminUnit:
    code: str
    name: str
    parent_code: str | None
    level: str
    valid_from: datetime | None  # None: since before the registry
    valid_to: datetime | None
    successor_codes: tuple[str, ...] = ()
    row: int = field(default=0, compare=False)

    def in_force_at(self, at: datetime | None) -> bool:
        """`at` None stands for the beginning of time, as an empty valid_from does."""
        if at is None:
            return self.valid_from is None
        return (self.valid_from is None or self.valid_from <= at) and (self.valid_to is None or at < self.valid_to)


def read_units(path: Path, zone: ZoneInfo, problems: Problems) -> list[AdminUnit]:
    units: list[AdminUnit] = []
    seen: dict[tuple[str, datetime | None], int] = {}
    for number, row in read_csv(path, COLUMNS, problems, optional=OPTIONAL):
        ok = valid_id(row["code"], number, "code", problems, what="a code")
        ok = filled(row, number, "name", problems) and ok
        if row["level"] not in LEVELS:
            problems.add(number, "level", f"unknown level {row['level']!r}; expected one of {', '.join(LEVELS)}")
            ok = False
        successors = tuple(c.strip() for c in row["successor_codes"].split(";") if c.strip())
        bad = [c for c in successors if not ID_PATTERN.fullmatch(c)]
        if bad:
            problems.add(number, "successor_codes", f"{', '.join(bad)!r} is not a code")
            ok = False
        valid_from, valid_to = validity(row, number, problems, zone, from_required=False)
        if (row["valid_from"] and valid_from is None) or (row["valid_to"] and valid_to is None) \
                or (valid_from and valid_to and valid_to <= valid_from):
            ok = False
        if successors and valid_to is None and ok:
            problems.add(number, "successor_codes", "a unit still in force has no successors; set valid_to")
            ok = False
        key = (row["code"], valid_from)
        if ok and key in seen:
            problems.add(number, "code", f"{row['code']} from {row['valid_from'] or 'the beginning'} already on "
                         f"row {seen[key]}")
            ok = False
        if ok:
            seen[key] = number
            units.append(AdminUnit(row["code"], row["name"], row["parent_code"] or None, row["level"], valid_from,
                                   valid_to, successors, number))
    return units


def parse_units_csv(path: Path, zone: ZoneInfo) -> list[AdminUnit]:
    problems = Problems(str(path))
    units = read_units(path, zone, problems)
    problems.raise_if_any()
    return units


# -infinity is PostgreSQL's "since the beginning"; Python has no datetime for it, so it travels as NULL.
_REGISTERED = """
SELECT code, name, parent_code, level, nullif(valid_from, '-infinity') AS valid_from, valid_to, successor_codes
FROM admin_units
"""


def registered_units(conn: psycopg.Connection) -> list[AdminUnit]:
    return [AdminUnit(r["code"], r["name"], r["parent_code"], r["level"], r["valid_from"], r["valid_to"],
                      tuple(r["successor_codes"])) for r in conn.execute(_REGISTERED)]


def import_units(conn: psycopg.Connection, units: list[AdminUnit], *, effective: datetime, dry_run: bool = False,
                 problems: Problems | None = None, zone: ZoneInfo | None = None) -> ChangeCount:
    """Apply a complete list of units in one transaction: units it no longer holds are closed at
    `effective`. The resulting tree is checked (parents exist, are in force and of the right level, no
    cycles, successors exist); any problem rejects the whole file."""
    problems = problems if problems is not None else Problems("administrative units")
    zone = zone or ZoneInfo("Asia/Ho_Chi_Minh")
    count = ChangeCount()
    with conn.transaction() as tx:
        conn.execute("LOCK TABLE admin_units IN SHARE ROW EXCLUSIVE MODE")
        existing = {(u.code, u.valid_from): u for u in registered_units(conn)}
        listed = {(u.code, u.valid_from): u for u in units}
        for key, unit in listed.items():
            current = existing.get(key)
            if current is None:
                conn.execute("INSERT INTO admin_units (code, name, parent_code, level, valid_from, valid_to,"
                             " successor_codes) VALUES (%s, %s, %s, %s, coalesce(%s, '-infinity'::timestamptz),"
                             " %s, %s)", (unit.code, unit.name, unit.parent_code, unit.level, unit.valid_from,
                                          unit.valid_to, list(unit.successor_codes)))
                count.add("added", [unit.code])
            elif current != unit:
                conn.execute("UPDATE admin_units SET name = %s, parent_code = %s, level = %s, valid_to = %s,"
                             " successor_codes = %s WHERE code = %s"
                             " AND valid_from = coalesce(%s, '-infinity'::timestamptz)",
                             (unit.name, unit.parent_code, unit.level, unit.valid_to, list(unit.successor_codes),
                              unit.code, unit.valid_from))
                count.add("changed", [unit.code])
        closed = conn.execute(
            "UPDATE admin_units SET valid_to = %(effective)s WHERE valid_from < %(effective)s"
            " AND (valid_to IS NULL OR valid_to > %(effective)s)"
            " AND NOT EXISTS (SELECT 1 FROM unnest(%(codes)s::text[], %(froms)s::timestamptz[]) AS l (code, valid_from)"
            "   WHERE l.code = admin_units.code AND coalesce(l.valid_from, '-infinity') = admin_units.valid_from)"
            " RETURNING code",
            {"effective": effective, "codes": [c for c, _ in listed], "froms": [f for _, f in listed]})
        count.add("closed", [r["code"] for r in closed])
        check_tree(units, registered_units(conn), problems, zone)
        problems.raise_if_any()
        if dry_run:
            raise psycopg.Rollback(tx)
    return count


def check_tree(units: list[AdminUnit], everything: list[AdminUnit], problems: Problems, zone: ZoneInfo) -> None:
    """Checks each unit of the file against the whole resulting set of units (file and registry)."""
    versions: dict[str, list[AdminUnit]] = {}
    for u in everything:
        versions.setdefault(u.code, []).append(u)
    for unit in units:
        day = format_instant(unit.valid_from, zone) if unit.valid_from else "the beginning"
        for code in unit.successor_codes:
            if code not in versions:
                problems.add(unit.row, "successor_codes", f"successor {code!r} does not exist; list it in this file")
        if unit.level == "province":
            if unit.parent_code:
                problems.add(unit.row, "parent_code", f"a province has no parent (got {unit.parent_code!r})")
            continue
        if not unit.parent_code:
            problems.add(unit.row, "parent_code", f"a {unit.level} needs its parent's code")
            continue
        parent = _in_force(versions.get(unit.parent_code, []), unit.valid_from)
        if unit.parent_code not in versions:
            problems.add(unit.row, "parent_code", f"unknown parent {unit.parent_code!r}")
        elif parent is None:
            problems.add(unit.row, "parent_code", f"parent {unit.parent_code} is not in force on {day}")
        elif parent.level not in PARENT_LEVELS[unit.level]:
            problems.add(unit.row, "parent_code", f"parent {unit.parent_code} is a {parent.level}; a {unit.level}'s "
                         f"parent must be a {' or a '.join(PARENT_LEVELS[unit.level])}")
        chain = _cycle(unit, versions)
        if chain:
            problems.add(unit.row, "parent_code", f"the parents loop: {' → '.join(chain)}")


def _in_force(candidates: list[AdminUnit], at: datetime | None) -> AdminUnit | None:
    return next((u for u in candidates if u.in_force_at(at)), None)


def _cycle(unit: AdminUnit, versions: dict[str, list[AdminUnit]]) -> list[str]:
    """The codes of a loop through `unit`'s parents in force at its valid_from, or [] when there is none."""
    chain = [unit.code]
    current: AdminUnit | None = unit
    while current is not None and current.parent_code:
        if current.parent_code in chain:
            return [*chain, current.parent_code]
        chain.append(current.parent_code)
        current = _in_force(versions.get(current.parent_code, []), unit.valid_from)
    return []
