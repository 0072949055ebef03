"""Reads of the registry: points in force (lists, the denominators) and points outliving their unit."""

from datetime import datetime

import psycopg

from registry.tree import descendants

# The denominator: points of a category with a version of that category in force at some instant of
# [from, to). One row per point, its latest such version.
_IN_FORCE_DURING = """
SELECT DISTINCT ON (point_id) point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to
FROM key_points
WHERE %(category)s = ANY (categories) AND valid_from < %(to)s AND (valid_to IS NULL OR valid_to > %(from)s)
ORDER BY point_id, valid_from DESC
"""

# Point versions in force at one instant, optionally of one category and among some units.
_IN_FORCE_AT = """
SELECT point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to
FROM key_points
WHERE valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)
  AND (%(category)s::text IS NULL OR %(category)s = ANY (categories))
  AND (%(units)s::text[] IS NULL OR admin_unit = ANY (%(units)s::text[]))
ORDER BY point_id
"""


def points_in_force(conn: psycopg.Connection, category: str, start: datetime, end: datetime) -> list[dict]:
    """The key points of `category` in force during [start, end): the denominator of its indicator."""
    if end <= start:
        raise ValueError(f"end {end} must be after start {start}")
    return conn.execute(_IN_FORCE_DURING, {"category": category, "from": start, "to": end}).fetchall()


def points_at(conn: psycopg.Connection, at: datetime, *, category: str | None = None,
              admin_unit: str | None = None) -> list[dict]:
    """Point versions in force at `at`; with `admin_unit`, only those under it in the tree in force at `at`."""
    units = descendants(conn, admin_unit, at) if admin_unit is not None else None
    return conn.execute(_IN_FORCE_AT, {"at": at, "category": category, "units": units}).fetchall()


# Point versions that outlive the unit version they began in: after a reform these still name an
# abolished commune, and per-unit breakdowns after its end cannot place them. The fix is a new version of
# the point, from the unit's end, in its successor.
_OUTLIVING_THEIR_UNIT = """
SELECT k.point_id, k.valid_from, k.admin_unit, u.valid_to AS unit_ended, u.successor_codes
FROM key_points k
JOIN LATERAL (SELECT u.valid_to, u.successor_codes FROM admin_units u
              WHERE u.code = k.admin_unit AND u.valid_from <= k.valid_from
                AND (u.valid_to IS NULL OR u.valid_to > k.valid_from)
              ORDER BY u.valid_from DESC LIMIT 1) u ON true
WHERE u.valid_to IS NOT NULL AND (k.valid_to IS NULL OR k.valid_to > u.valid_to)
  -- unless the same code has a version in force from that instant on (a rename, not an abolition)
  AND NOT EXISTS (SELECT 1 FROM admin_units n WHERE n.code = k.admin_unit AND n.valid_from = u.valid_to)
ORDER BY k.point_id, k.valid_from
"""


def points_outliving_their_unit(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(_OUTLIVING_THEIR_UNIT).fetchall()
