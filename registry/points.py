"""Key points, the denominators: reading and checking a file (CSV or GeoJSON) row by row.

Checks that need the database (the administrative unit, versions already registered) run at import, in
`registry.points_import`.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from base.vocabulary import CATEGORIES, VIETNAM_BOX, Bounds
from registry.geojson import read_geojson_points
from registry.validation import Problems, bulk_allocation, filled, read_csv, valid_id, validity

COLUMNS = ["point_id", "name", "categories", "admin_unit", "lat", "lon", "valid_from", "valid_to"]
GEOJSON_SUFFIXES = (".geojson", ".json")
_SINGLE = frozenset(CATEGORIES)


@dataclass(frozen=True, slots=True)
class KeyPoint:
    """One version of a key point, in force over [valid_from, valid_to); `row` is where the file holds it."""

    point_id: str
    name: str
    categories: tuple[str, ...]
    admin_unit: str
    lat: float
    lon: float
    valid_from: datetime
    valid_to: datetime | None
    row: int = field(default=0, compare=False)


def read_points(path: Path, zone: ZoneInfo, problems: Problems, *, bounds: Bounds = VIETNAM_BOX) -> list[KeyPoint]:
    """The points of a CSV or GeoJSON file (by suffix) that passed every row check; the others are in
    `problems`, which the caller raises once the database checks have added theirs."""
    with bulk_allocation():
        return _read_points(path, zone, problems, bounds)


def _read_points(path: Path, zone: ZoneInfo, problems: Problems, bounds: Bounds) -> list[KeyPoint]:
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        rows = read_geojson_points(path, COLUMNS, problems)
    else:
        rows = read_csv(path, COLUMNS, problems, optional=("valid_to",))
    points: list[KeyPoint] = []
    seen: dict[tuple[str, datetime], int] = {}
    for number, row in rows:
        point = _check_row(number, row, problems, zone, bounds)
        if point is None:
            continue
        key = (point.point_id, point.valid_from)
        if key in seen:
            problems.add(number, "point_id", f"{point.point_id} from {row['valid_from']} already on row {seen[key]}")
            continue
        seen[key] = number
        points.append(point)
    return points


def parse_points(path: Path, zone: ZoneInfo, *, bounds: Bounds = VIETNAM_BOX) -> list[KeyPoint]:
    """Every row of a CSV or GeoJSON file checked; raises RegistryFileError listing every problem when any
    row is bad. Database checks are left to `import_points`."""
    problems = Problems(str(path))
    points = read_points(path, zone, problems, bounds=bounds)
    problems.raise_if_any()
    return points



def _check_row(number: int, row: dict[str, str], problems: Problems, zone: ZoneInfo,
               bounds: Bounds) -> KeyPoint | None:
    ok = valid_id(row["point_id"], number, "point_id", problems)
    ok = filled(row, number, "name", problems) and ok
    text = row["categories"]
    if text in _SINGLE:  # the common case, without splitting
        categories: tuple[str, ...] = (text,)
    else:
        categories = tuple(dict.fromkeys(c.strip() for c in text.split(";") if c.strip()))
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        problems.add(number, "categories",
                     f"unknown category {', '.join(unknown)!r}; expected some of {';'.join(CATEGORIES)}")
        ok = False
    elif not categories:
        problems.add(number, "categories", f"empty; expected some of {';'.join(CATEGORIES)}")
        ok = False
    if not row["admin_unit"]:
        problems.add(number, "admin_unit", "empty; name the commune, ward, district or province by its code")
        ok = False
    area = "Vietnam" if bounds == VIETNAM_BOX else "the configured box"  # CITYKPI_REGISTRY_BOUNDS
    lat = _coordinate(row, "lat", bounds.lat_min, bounds.lat_max, area, number, problems)
    lon = _coordinate(row, "lon", bounds.lon_min, bounds.lon_max, area, number, problems)
    valid_from, valid_to = validity(row, number, problems, zone)
    if not ok or lat is None or lon is None or valid_from is None or (row["valid_to"] and valid_to is None) \
            or (valid_to is not None and valid_to <= valid_from):
        return None
    return KeyPoint(row["point_id"], row["name"], categories, row["admin_unit"], lat, lon, valid_from, valid_to,
                    number)


def _coordinate(row: dict[str, str], column: str, low: float, high: float, area: str, number: int,
                problems: Problems) -> float | None:
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        problems.add(number, column, f"{text!r} is not a number")
        return None
    if not math.isfinite(value) or not low <= value <= high:
        problems.add(number, column, f"{text} is outside {area} ({low}–{high})")
        return None
    return value
