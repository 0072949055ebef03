"""Reading key points from GeoJSON, as QGIS and GDAL export them, into the rows the CSV reader gives.

A row is numbered by its feature index (`features[i]`); problems with the whole file use row `-`.
"""

import json
import math
import re
from pathlib import Path

from registry.validation import Problems, decode_utf8

# GeoJSON coordinates are longitude, latitude on WGS 84; these names say so (RFC 7946 and its predecessor).
_WGS84 = {"urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:OGC::CRS84", "EPSG:4326", "urn:ogc:def:crs:EPSG::4326",
          "urn:ogc:def:crs:EPSG:6.6:4326", "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
          "http://www.opengis.net/def/crs/EPSG/0/4326"}


# GDAL's own text form of Date and DateTime fields, which GDAL-based tools (QGIS among them) may write:
# "2025/01/01" and "2025/01/01 07:00:00+07" (an offset of whole hours). Read as their ISO equivalents.
_SLASHED_DATE = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2}")
_HOURS_OFFSET = re.compile(r"([+-][0-9]{2})$")


def read_geojson_points(path: Path, columns: list[str], problems: Problems) -> list[tuple[int, dict[str, str]]]:
    """Point features as rows of the CSV columns; `lat`/`lon` come from the geometry, not the properties."""
    text = decode_utf8(path.read_bytes(), problems, rows_are_lines=False)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add("-", "-", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        problems.raise_if_any()
    except (ValueError, RecursionError) as exc:
        problems.add("-", "-", f"not usable JSON ({type(exc).__name__}: {str(exc)[:80]})")
        problems.raise_if_any()
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection" \
            or not isinstance(document.get("features"), list):
        problems.add("-", "-", "not a GeoJSON FeatureCollection (expected {\"type\": \"FeatureCollection\", "
                     "\"features\": [...]})")
        problems.raise_if_any()
    _check_crs(document.get("crs"), problems)
    rows = []
    for index, feature in enumerate(document["features"]):
        row = _feature_row(index, feature, columns, problems)
        if row is not None:
            rows.append((index, row))
    return rows


def _check_crs(crs: object, problems: Problems) -> None:
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    if isinstance(name, str) and name in _WGS84:
        return
    described = name if isinstance(name, str) else repr(crs)[:100]
    problems.add("-", "crs", f"coordinates are in {described}; export the layer as WGS 84 (EPSG:4326)")
    problems.raise_if_any()


def _feature_row(index: int, feature: object, columns: list[str], problems: Problems) -> dict[str, str] | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.add(index, "-", "not a GeoJSON Feature")
        return None
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        problems.add(index, "properties", "not an object")
        return None
    row: dict[str, str] = {}
    ok = True
    for column in columns:
        if column in ("lat", "lon"):
            continue
        value = properties.get(column)
        text = _as_text(value)
        if column in ("valid_from", "valid_to") and text:
            text = _iso_instant(text)
        if text is None:
            problems.add(index, column, f"{value!r} is not text or a number")
            ok = False
        else:
            row[column] = text
    geometry = feature.get("geometry")
    coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if not isinstance(geometry, dict) or geometry.get("type") != "Point" or not isinstance(coordinates, list) \
            or len(coordinates) not in (2, 3) or not all(_is_number(c) for c in coordinates):
        problems.add(index, "geometry", "not a Point with [longitude, latitude]")
        return None
    row["lon"], row["lat"] = repr(float(coordinates[0])), repr(float(coordinates[1]))
    return row if ok else None


def _iso_instant(text: str) -> str:
    if not _SLASHED_DATE.match(text):
        return text
    day, rest = text[:10].replace("/", "-"), text[10:]
    return day + _HOURS_OFFSET.sub(r"\1:00", rest) if rest else day


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _as_text(value: object) -> str | None:
    """Properties as the CSV would hold them. QGIS writes integer fields as numbers (an admin_unit 540)
    and empty fields as null; lists of strings are accepted for `categories`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ";".join(v.strip() for v in value)
    return None
