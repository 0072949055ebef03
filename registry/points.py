"""Key points: the denominators. Import from CSV; a file is the complete list for the categories it covers."""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from registry.changes import ChangeCount
from registry.validation import VIETNAM_BOX, Problems, read_csv, validity

COLUMNS = ["point_id", "name", "categories", "admin_unit", "lat", "lon", "valid_from", "valid_to"]
CATEGORIES = ("security_point", "public_place", "transit_stop", "water_source", "air_hotspot",
              "wastewater_facility")
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True)
class KeyPoint:
    point_id: str
    name: str
    categories: tuple[str, ...]
    admin_unit: str | None
    lat: float
    lon: float
    valid_from: datetime
    valid_to: datetime | None


def parse_points_csv(path: Path, zone: ZoneInfo) -> list[KeyPoint]:
    """Every row checked; raises RegistryFileError listing every problem when any row is bad."""
    problems = Problems(str(path))
    points: list[KeyPoint] = []
    seen: dict[tuple[str, datetime], int] = {}
    lat_min, lat_max, lon_min, lon_max = VIETNAM_BOX
    for number, row in read_csv(path, COLUMNS, problems):
        ok = True
        if not ID_PATTERN.match(row["point_id"]):
            problems.add(number, "point_id", f"{row['point_id']!r} is not an id ([A-Za-z0-9._:-], 1–64 chars)")
            ok = False
        if not row["name"]:
            problems.add(number, "name", "empty")
            ok = False
        categories = tuple(c.strip() for c in row["categories"].split(";") if c.strip())
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            problems.add(number, "categories",
                         f"unknown category {', '.join(unknown)!r}; expected some of {';'.join(CATEGORIES)}")
            ok = False
        elif not categories:
            problems.add(number, "categories", "empty")
            ok = False
        coordinates = []
        for column, low, high in (("lat", lat_min, lat_max), ("lon", lon_min, lon_max)):
            try:
                value = float(row[column])
                if not low <= value <= high:
                    problems.add(number, column, f"{row[column]} is outside Vietnam ({low}–{high})")
                    ok = False
                coordinates.append(value)
            except ValueError:
                problems.add(number, column, f"{row[column]!r} is not a number")
                ok = False
        valid_from, valid_to = validity(row, number, problems, zone)
        if valid_from is not None:
            key = (row["point_id"], valid_from)
            if key in seen:
                problems.add(number, "point_id",
                             f"{row['point_id']} from {row['valid_from']} already on row {seen[key]}")
                ok = False
            seen[key] = number
        if ok and valid_from is not None:
            points.append(KeyPoint(row["point_id"], row["name"], categories, row["admin_unit"] or None,
                                   coordinates[0], coordinates[1], valid_from, valid_to))
    problems.raise_if_any()
    return points


def import_points(conn: psycopg.Connection, points: list[KeyPoint], *, effective: datetime,
                  categories: set[str] | None = None) -> ChangeCount:
    """Apply a complete list in one transaction. Points of the covered categories that the list no longer
    holds are closed at `effective`, never deleted, so past periods keep their denominators."""
    covered = sorted(categories or {c for p in points for c in p.categories})
    count = ChangeCount()
    with conn.transaction():
        existing = {(r["point_id"], r["valid_from"]): r for r in conn.execute(
            "SELECT point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to FROM key_points"
            " WHERE categories && %s::text[]", (covered,))}
        for p in points:
            current = existing.get((p.point_id, p.valid_from))
            fields = (p.name, list(p.categories), p.admin_unit, p.lat, p.lon, p.valid_to)
            if current is None:
                conn.execute(
                    "INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (p.point_id, p.name, list(p.categories), p.admin_unit, p.lat, p.lon, p.valid_from, p.valid_to))
                count.added += 1
            elif fields != (current["name"], current["categories"], current["admin_unit"], current["lat"],
                            current["lon"], current["valid_to"]):
                conn.execute(
                    "UPDATE key_points SET name = %s, categories = %s, admin_unit = %s, lat = %s, lon = %s,"
                    " valid_to = %s WHERE point_id = %s AND valid_from = %s", (*fields, p.point_id, p.valid_from))
                count.changed += 1
        listed = sorted({p.point_id for p in points})
        closed = conn.execute(
            "UPDATE key_points SET valid_to = %s WHERE categories && %s::text[] AND NOT (point_id = ANY(%s))"
            " AND valid_from < %s AND (valid_to IS NULL OR valid_to > %s)",
            (effective, covered, listed, effective, effective))
        count.closed += closed.rowcount
    return count
