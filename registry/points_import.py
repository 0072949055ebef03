"""Importing a complete list of key points: staged with COPY, checked and applied as set-based SQL, in one
transaction that either applies everything or nothing."""

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from base.time import format_instant
from registry.changes import ChangeCount
from registry.points import KeyPoint
from registry.staging import overlapping_versions, stage
from registry.validation import Problems

_STAGED = [("row", "integer"), ("point_id", "text"), ("name", "text"), ("categories", "text[]"),
           ("admin_unit", "text"), ("lat", "double precision"), ("lon", "double precision"),
           ("valid_from", "timestamptz"), ("valid_to", "timestamptz")]

# DESIGN: "a point's admin_unit must exist in the units table and be in force at the point's valid_from".
_UNIT_NOT_IN_FORCE = """
SELECT s.row, s.admin_unit, s.valid_from, latest.name, latest.successor_codes
FROM staged_points s
LEFT JOIN LATERAL (SELECT u.name, u.successor_codes FROM admin_units u WHERE u.code = s.admin_unit
                   ORDER BY u.valid_from DESC LIMIT 1) latest ON true
WHERE NOT EXISTS (SELECT 1 FROM admin_units u
                  WHERE u.code = s.admin_unit AND u.valid_from <= s.valid_from
                    AND (u.valid_to IS NULL OR u.valid_to > s.valid_from))
ORDER BY s.row
"""

_CHANGE = """
UPDATE key_points k
SET name = s.name, categories = s.categories, admin_unit = s.admin_unit, lat = s.lat, lon = s.lon,
    valid_to = s.valid_to
FROM staged_points s
WHERE k.point_id = s.point_id AND k.valid_from = s.valid_from
  AND (k.name, k.categories, k.admin_unit, k.lat, k.lon, k.valid_to)
      IS DISTINCT FROM (s.name, s.categories, s.admin_unit, s.lat, s.lon, s.valid_to)
RETURNING k.point_id
"""

_ADD = """
INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to)
SELECT s.point_id, s.name, s.categories, s.admin_unit, s.lat, s.lon, s.valid_from, s.valid_to
FROM staged_points s
WHERE NOT EXISTS (SELECT 1 FROM key_points k WHERE k.point_id = s.point_id AND k.valid_from = s.valid_from)
RETURNING point_id
"""

# DESIGN: "A file is the complete list for what it covers ... what it no longer lists is closed at the
# effective date, never deleted."
_CLOSE = """
UPDATE key_points k SET valid_to = %(effective)s
WHERE k.categories && %(covered)s::text[]
  AND k.valid_from < %(effective)s AND (k.valid_to IS NULL OR k.valid_to > %(effective)s)
  AND NOT EXISTS (SELECT 1 FROM staged_points s WHERE s.point_id = k.point_id AND s.valid_from = k.valid_from)
RETURNING k.point_id
"""

def import_points(conn: psycopg.Connection, points: list[KeyPoint], *, effective: datetime,
                  categories: set[str] | None = None, dry_run: bool = False, problems: Problems | None = None,
                  zone: ZoneInfo | None = None) -> ChangeCount:
    """Apply a complete list in one transaction. Points of the covered categories (`categories`, default
    those in the list) that the list no longer holds are closed at `effective`, never deleted, so past
    periods keep their denominators.

    `problems` carries what reading the file found, so that one RegistryFileError lists those and the
    database's together; when any exist nothing is written. A dry run computes the same ChangeCount and
    rolls back.
    """
    problems = problems if problems is not None else Problems("key points")
    zone = zone or ZoneInfo("Asia/Ho_Chi_Minh")
    covered = sorted(categories or {c for p in points for c in p.categories})
    count = ChangeCount()
    with conn.transaction() as tx:
        # Imports of points run one at a time (each checks overlaps against what the other may be writing),
        # and the units they are checked against cannot change meanwhile; readers are never blocked.
        conn.execute("LOCK TABLE key_points IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("LOCK TABLE admin_units IN SHARE MODE")
        stage(conn, "staged_points", _STAGED, (
            (p.row, p.point_id, p.name, list(p.categories), p.admin_unit, p.lat, p.lon, p.valid_from, p.valid_to)
            for p in points))
        _check_units(conn, problems, zone)
        # No raise yet: applying inside the transaction lets the overlap check below report its problems
        # in the same list; any problem then rolls everything back.
        count.add("changed", [r["point_id"] for r in conn.execute(_CHANGE)])
        count.add("added", [r["point_id"] for r in conn.execute(_ADD)])
        count.add("closed", [r["point_id"] for r in conn.execute(_CLOSE, {"effective": effective,
                                                                          "covered": covered})])
        _check_overlaps(conn, problems, zone)
        problems.raise_if_any()
        conn.execute("DROP TABLE pg_temp.staged_points")
        if dry_run:
            raise psycopg.Rollback(tx)
    return count


def _check_units(conn: psycopg.Connection, problems: Problems, zone: ZoneInfo) -> None:
    for r in conn.execute(_UNIT_NOT_IN_FORCE):
        day = format_instant(r["valid_from"], zone)
        if r["name"] is None:
            problems.add(r["row"], "admin_unit",
                         f"unknown administrative unit {r['admin_unit']!r}; import it with the units first")
            continue
        reason = f"administrative unit {r['admin_unit']} ({r['name']}) is not in force on {day}"
        if r["successor_codes"]:
            reason += f"; it was succeeded by {', '.join(r['successor_codes'])}"
        problems.add(r["row"], "admin_unit", reason)


def _check_overlaps(conn: psycopg.Connection, problems: Problems, zone: ZoneInfo) -> None:
    for r in overlapping_versions(conn, "staged_points", "key_points", "point_id"):
        other = f"row {r['other_row']}" if r["other_row"] is not None else "in the registry"
        until = format_instant(r["valid_to"], zone) if r["valid_to"] else "…"
        problems.add(r["row"], "valid_from",
                     f"{r['point_id']} overlaps its version {format_instant(r['valid_from'], zone)}–{until} "
                     f"({other}); a point has one version at a time, so end the earlier one with valid_to")
