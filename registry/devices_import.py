"""Importing a complete list of device bindings for the points it names: staged with COPY, checked against
the registry and applied as set-based SQL, in one transaction that applies everything or nothing."""

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from base.time import format_instant
from base.vocabulary import CATEGORY_SERVED_BY, REGISTRY_CHANGED_CHANNEL
from registry.changes import ChangeCount
from registry.devices import Binding
from registry.staging import overlapping_versions, stage
from registry.validation import Problems

_STAGED = [("row", "integer"), ("device_id", "text"), ("kind", "text"), ("point_id", "text"),
           ("valid_from", "timestamptz"), ("valid_to", "timestamptz"), ("heartbeat_interval_s", "integer"),
           ("gateway_id", "text"), ("probe", "text")]

# "A device's kind decides which indicator it can serve; it does not change over the device's life."
_KIND_CHANGED = """
SELECT s.row, s.device_id, d.kind FROM staged_bindings s JOIN devices d ON d.device_id = s.device_id
WHERE d.kind <> s.kind ORDER BY s.row
"""

_UNKNOWN_POINT = """
SELECT s.row, s.point_id FROM staged_bindings s
WHERE NOT EXISTS (SELECT 1 FROM key_points k WHERE k.point_id = s.point_id) ORDER BY s.row
"""

# A binding counts only through the category its kind serves: the point must be of that category in some
# version in force while the binding holds. An anti-join finds the offenders; only for those does the
# lateral subquery gather what the point is instead, for the message.
_WRONG_CATEGORY = """
WITH offending AS (
    SELECT s.row, s.kind, s.point_id, s.valid_from, s.valid_to, served.category
    FROM staged_bindings s
    JOIN unnest(%(kinds)s::text[], %(categories)s::text[]) AS served (kind, category) ON served.kind = s.kind
    WHERE EXISTS (SELECT 1 FROM key_points k WHERE k.point_id = s.point_id)
      AND NOT EXISTS (SELECT 1 FROM key_points k
                      WHERE k.point_id = s.point_id AND served.category = ANY (k.categories)
                        AND k.valid_from < coalesce(s.valid_to, 'infinity')
                        AND s.valid_from < coalesce(k.valid_to, 'infinity'))
)
SELECT o.row, o.kind, o.point_id, o.category, held.categories
FROM offending o
CROSS JOIN LATERAL (
    SELECT array_agg(DISTINCT c ORDER BY c) AS categories
    FROM key_points k, unnest(k.categories) AS c
    WHERE k.point_id = o.point_id AND k.valid_from < coalesce(o.valid_to, 'infinity')
      AND o.valid_from < coalesce(k.valid_to, 'infinity')) AS held
ORDER BY o.row
"""

_ADD_DEVICES = """
INSERT INTO devices (device_id, kind)
SELECT DISTINCT s.device_id, s.kind FROM staged_bindings s
WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
ON CONFLICT (device_id) DO NOTHING RETURNING device_id
"""

# The gateway a device reports through is part of its binding: changing only the gateway is a change.
_CHANGE = """
UPDATE bindings b SET point_id = s.point_id, valid_to = s.valid_to, heartbeat_interval_s = s.heartbeat_interval_s,
                      gateway_id = s.gateway_id, probe = s.probe
FROM staged_bindings s
WHERE b.device_id = s.device_id AND b.valid_from = s.valid_from
  AND (b.point_id, b.valid_to, b.heartbeat_interval_s, b.gateway_id, b.probe)
      IS DISTINCT FROM (s.point_id, s.valid_to, s.heartbeat_interval_s, s.gateway_id, s.probe)
RETURNING b.device_id || '@' || b.point_id AS id
"""

_ADD = """
INSERT INTO bindings (device_id, point_id, valid_from, valid_to, heartbeat_interval_s, gateway_id, probe)
SELECT s.device_id, s.point_id, s.valid_from, s.valid_to, s.heartbeat_interval_s, s.gateway_id, s.probe
FROM staged_bindings s
WHERE NOT EXISTS (SELECT 1 FROM bindings b WHERE b.device_id = s.device_id AND b.valid_from = s.valid_from)
RETURNING device_id || '@' || point_id AS id
"""

# DESIGN: "a devices file [is the complete list] for the points it names; what it no longer lists is closed
# at the effective date".
_CLOSE = """
UPDATE bindings b SET valid_to = %(effective)s
WHERE b.point_id IN (SELECT point_id FROM staged_bindings)
  AND b.valid_from < %(effective)s AND (b.valid_to IS NULL OR b.valid_to > %(effective)s)
  AND NOT EXISTS (SELECT 1 FROM staged_bindings s WHERE s.device_id = b.device_id AND s.valid_from = b.valid_from)
RETURNING b.device_id || '@' || b.point_id AS id
"""

# Broker accounts are named by device id and by gateway id in one password file
# (`registry export mosquitto`): an id that were both would be one account allowed to write both topics.
_GATEWAY_IS_A_DEVICE = """
SELECT s.row, s.gateway_id FROM staged_bindings s
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.gateway_id) ORDER BY s.row
"""
_DEVICE_IS_A_GATEWAY = """
SELECT s.row, s.device_id FROM staged_bindings s
WHERE EXISTS (SELECT 1 FROM bindings b WHERE b.gateway_id = s.device_id) ORDER BY s.row
"""


def import_devices(conn: psycopg.Connection, bindings: list[Binding], *, effective: datetime,
                   dry_run: bool = False, problems: Problems | None = None,
                   zone: ZoneInfo | None = None) -> ChangeCount:
    """Apply in one transaction; bindings of the named points that the file no longer lists are closed at
    `effective`. Raises RegistryFileError with the file's and the registry's problems together, writing
    nothing; a dry run computes the same ChangeCount and rolls back."""
    problems = problems if problems is not None else Problems("devices")
    zone = zone or ZoneInfo("Asia/Ho_Chi_Minh")
    count = ChangeCount()
    with conn.transaction() as tx:
        # Imports of devices run one at a time (each checks overlaps against what the other may be writing),
        # and the points they are checked against cannot change meanwhile; readers are never blocked.
        conn.execute("LOCK TABLE devices, bindings IN SHARE ROW EXCLUSIVE MODE")
        conn.execute("LOCK TABLE key_points IN SHARE MODE")
        stage(conn, "staged_bindings", _STAGED, (
            (b.row, b.device_id, b.kind, b.point_id, b.valid_from, b.valid_to, b.heartbeat_interval_s, b.gateway_id,
             b.probe) for b in bindings))
        _check_registry(conn, problems)
        # No raise yet: applying inside the transaction lets the overlap check below report its problems
        # in the same list; any problem then rolls everything back.
        count.add("added", [r["device_id"] for r in conn.execute(_ADD_DEVICES)])
        count.add("changed", [r["id"] for r in conn.execute(_CHANGE)])
        count.add("added", [r["id"] for r in conn.execute(_ADD)])
        count.add("closed", [r["id"] for r in conn.execute(_CLOSE, {"effective": effective})])
        for r in overlapping_versions(conn, "staged_bindings", "bindings", "device_id"):
            where = f"row {r['other_row']}" if r["other_row"] is not None else \
                f"{format_instant(r['valid_from'], zone)}–" \
                f"{format_instant(r['valid_to'], zone) if r['valid_to'] else '…'}, in the registry"
            problems.add(r["row"], "valid_from", f"{r['device_id']} is already bound to {r['point_id']} then "
                         f"({where}); a device is in one place at a time")
        _check_gateway_ids(conn, problems)
        problems.raise_if_any()
        # Delivered at commit only: a dry run or a refused file rolls it back with everything else.
        conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(REGISTRY_CHANGED_CHANNEL)))
        conn.execute("DROP TABLE pg_temp.staged_bindings")
        if dry_run:
            raise psycopg.Rollback(tx)
    return count


def _check_registry(conn: psycopg.Connection, problems: Problems) -> None:
    for r in conn.execute(_KIND_CHANGED):
        problems.add(r["row"], "kind", f"{r['device_id']} is registered as {r['kind']}; a device's kind does "
                     "not change")
    for r in conn.execute(_UNKNOWN_POINT):
        problems.add(r["row"], "point_id", f"unknown key point {r['point_id']!r}; import it with the points first")
    kinds = sorted(CATEGORY_SERVED_BY)
    for r in conn.execute(_WRONG_CATEGORY, {"kinds": kinds, "categories": [CATEGORY_SERVED_BY[k] for k in kinds]}):
        held = ";".join(r["categories"]) if r["categories"] else "not in force while this binding holds"
        problems.add(r["row"], "kind", f"a {r['kind']} serves {r['category']} points; {r['point_id']} is {held}")


def _check_gateway_ids(conn: psycopg.Connection, problems: Problems) -> None:
    """Run on the applied result, so that devices and gateways of this file and of the registry all count."""
    for r in conn.execute(_GATEWAY_IS_A_DEVICE):
        problems.add(r["row"], "gateway_id", f"{r['gateway_id']} is a device id; a gateway needs an id of its own "
                     "(broker accounts are named by both)")
    for r in conn.execute(_DEVICE_IS_A_GATEWAY):
        problems.add(r["row"], "device_id", f"{r['device_id']} is a gateway id; a device needs an id of its own "
                     "(broker accounts are named by both)")
