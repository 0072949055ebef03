"""Reads of the registry: points in force (lists, the denominators), points outliving their unit, the devices of
a kind bound during a period, and one point's history."""

from dataclasses import dataclass
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


# Devices of one kind bound to a point at some instant of [from, to): which points had a device that could
# have covered them (the evidence lists only devices that were up), for the evidence page's map.
_BOUND_OF_KIND = """
SELECT DISTINCT b.point_id, b.device_id
FROM bindings b JOIN devices d ON d.device_id = b.device_id
WHERE d.kind = %(kind)s AND b.valid_from < %(to)s AND (b.valid_to IS NULL OR b.valid_to > %(from)s)
ORDER BY b.point_id, b.device_id
"""


def devices_bound_during(conn: psycopg.Connection, kind: str, start: datetime, end: datetime) -> dict[str, list[str]]:
    """For each point, the devices of `kind` bound to it at some instant of [start, end), sorted."""
    bound: dict[str, list[str]] = {}
    for r in conn.execute(_BOUND_OF_KIND, {"kind": kind, "from": start, "to": end}):
        bound.setdefault(r["point_id"], []).append(r["device_id"])
    return bound


# A point's versions, oldest first, each with the name of its unit as that unit stood when the version began.
_POINT_VERSIONS = """
SELECT k.point_id, k.name, k.categories, k.admin_unit, u.name AS admin_unit_name, k.lat, k.lon,
       k.valid_from, k.valid_to
FROM key_points k
LEFT JOIN LATERAL (SELECT u.name FROM admin_units u
                   WHERE u.code = k.admin_unit AND u.valid_from <= k.valid_from
                   ORDER BY u.valid_from DESC LIMIT 1) u ON true
WHERE k.point_id = %(point_id)s
ORDER BY k.valid_from
"""

_POINT_BINDINGS = """
SELECT b.device_id, d.kind, b.valid_from, b.valid_to, b.heartbeat_interval_s, b.gateway_id
FROM bindings b JOIN devices d ON d.device_id = b.device_id
WHERE b.point_id = %(point_id)s
ORDER BY b.valid_from, b.device_id
"""


@dataclass(frozen=True)
class PointHistory:
    versions: list[dict]
    bindings: list[dict]


def point_history(conn: psycopg.Connection, point_id: str) -> PointHistory | None:
    """Every version of a point and every binding to it, oldest first; None for a point never registered."""
    versions = conn.execute(_POINT_VERSIONS, {"point_id": point_id}).fetchall()
    if not versions:
        return None
    return PointHistory(versions, conn.execute(_POINT_BINDINGS, {"point_id": point_id}).fetchall())
