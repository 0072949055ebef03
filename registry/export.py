"""Exporting key points as CSV or GeoJSON, and device bindings as CSV, in exactly the form the importer reads
back: importing an export changes nothing (`import(export(x))` is "0 changed").

CSV cells a spreadsheet would run as formulas get a leading apostrophe (OWASP "CSV injection"); the
importer removes it again (`validation.unescape_cell`), which keeps the round trip lossless. A hand-made
file whose cell is meant to begin with an apostrophe followed by = + - @ loses that apostrophe on import,
exactly as a spreadsheet would treat it.
"""

import csv
import json
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

import psycopg

from base.time import format_instant
from registry.devices import COLUMNS as DEVICE_COLUMNS
from registry.devices import GATEWAY_COLUMN, PROBE_COLUMN
from registry.points import COLUMNS
from registry.validation import escape_cell

_ALL_VERSIONS = """
SELECT point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to FROM key_points
ORDER BY point_id, valid_from
"""
_IN_FORCE_AT = """
SELECT point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to FROM key_points
WHERE valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)
ORDER BY point_id, valid_from
"""


def _rows(conn: psycopg.Connection, at: datetime | None) -> list[dict]:
    """Every version (the full history, which re-imports to 0 changed) or those in force at `at`."""
    if at is None:
        return conn.execute(_ALL_VERSIONS).fetchall()
    return conn.execute(_IN_FORCE_AT, {"at": at}).fetchall()


def _properties(r: dict, zone: ZoneInfo) -> dict[str, str | None]:
    return {"point_id": r["point_id"], "name": r["name"], "categories": ";".join(r["categories"]),
            "admin_unit": r["admin_unit"] or "", "valid_from": format_instant(r["valid_from"], zone),
            "valid_to": format_instant(r["valid_to"], zone) if r["valid_to"] else None}


def export_points_csv(conn: psycopg.Connection, out: TextIO, zone: ZoneInfo, *, at: datetime | None = None) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = _rows(conn, at)
    for r in rows:
        p = _properties(r, zone)
        # repr() of a float is the shortest text that reads back as the same float: no drift on re-import.
        cells = [p["point_id"], p["name"], p["categories"], p["admin_unit"], repr(r["lat"]), repr(r["lon"]),
                 p["valid_from"], p["valid_to"] or ""]
        writer.writerow([escape_cell(c) for c in cells])
    return len(rows)


def export_points_geojson(conn: psycopg.Connection, out: TextIO, zone: ZoneInfo, *,
                          at: datetime | None = None) -> int:
    rows = _rows(conn, at)
    features = [{"type": "Feature", "properties": _properties(r, zone),
                 "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]}} for r in rows]
    json.dump({"type": "FeatureCollection", "name": "key_points", "features": features}, out, ensure_ascii=False,
              indent=1)
    out.write("\n")
    return len(rows)


_BINDINGS = """
SELECT b.device_id, d.kind, b.point_id, b.valid_from, b.valid_to, b.heartbeat_interval_s, b.gateway_id, b.probe
FROM bindings b JOIN devices d USING (device_id)
WHERE %(at)s::timestamptz IS NULL OR (b.valid_from <= %(at)s AND (b.valid_to IS NULL OR b.valid_to > %(at)s))
ORDER BY b.device_id, b.valid_from
"""


def export_devices_csv(conn: psycopg.Connection, out: TextIO, zone: ZoneInfo, *, at: datetime | None = None) -> int:
    """Every binding (or those in force at `at`) with the optional `gateway_id` and `probe` columns always
    written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*DEVICE_COLUMNS, GATEWAY_COLUMN, PROBE_COLUMN])
    rows = conn.execute(_BINDINGS, {"at": at}).fetchall()
    for r in rows:
        cells = [r["device_id"], r["kind"], r["point_id"], format_instant(r["valid_from"], zone),
                 format_instant(r["valid_to"], zone) if r["valid_to"] else "",
                 str(r["heartbeat_interval_s"]) if r["heartbeat_interval_s"] is not None else "", r["gateway_id"] or "",
                 r["probe"] or ""]
        writer.writerow([escape_cell(c) for c in cells])
    return len(rows)
