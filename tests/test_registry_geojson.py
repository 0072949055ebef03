"""Key points from GeoJSON: a QGIS export loads as is; problems name the feature index."""

import json
from pathlib import Path

import pytest

from base.time import parse_instant
from registry.points import KeyPoint, parse_points
from registry.validation import RegistryFileError
from tests.registry_files import ZONE

# As QGIS 3 writes a layer with "Export > Save Features As… > GeoJSON": a name, a CRS, integer fields as
# numbers, empty fields as null, and lat/lon copied into the properties by the CSV layer it came from.
QGIS_EXPORT = """{
"type": "FeatureCollection",
"name": "diem_trong_yeu",
"crs": { "type": "name", "properties": { "name": "urn:ogc:def:crs:OGC:1.3:CRS84" } },
"features": [
{ "type": "Feature", "properties": { "point_id": "SEC-1", "name": "Ngã tư Lê Lợi", "categories": "security_point",
  "admin_unit": 540, "lat": 13.77, "lon": 109.22, "valid_from": "2025-01-01", "valid_to": null },
  "geometry": { "type": "Point", "coordinates": [ 109.2234, 13.7712 ] } },
{ "type": "Feature", "properties": { "point_id": "BUS-7", "name": "Trạm dừng xe buýt số 7",
  "categories": "transit_stop;public_place", "admin_unit": "549", "valid_from": "2025-01-01T07:00:00+07:00",
  "valid_to": "2026-01-01" },
  "geometry": { "type": "Point", "coordinates": [ 109.1, 13.88, 12.5 ] } }
]
}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "points.geojson"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_qgis_export_loads_as_is(tmp_path: Path) -> None:
    points = parse_points(_write(tmp_path, QGIS_EXPORT), ZONE)
    assert points == [
        KeyPoint("SEC-1", "Ngã tư Lê Lợi", ("security_point",), "540", 13.7712, 109.2234,
                 parse_instant("2025-01-01", ZONE), None),
        KeyPoint("BUS-7", "Trạm dừng xe buýt số 7", ("transit_stop", "public_place"), "549", 13.88, 109.1,
                 parse_instant("2025-01-01T07:00:00+07:00", ZONE), parse_instant("2026-01-01", ZONE)),
    ]


def test_problems_use_the_feature_index_as_row(tmp_path: Path) -> None:
    document = json.loads(QGIS_EXPORT)
    document["features"][0]["properties"]["categories"] = "camera"
    document["features"][1]["geometry"] = {"type": "LineString", "coordinates": [[109.1, 13.88], [109.2, 13.9]]}
    path = _write(tmp_path, json.dumps(document))
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:0:categories: unknown category 'camera'; expected some of "
        "security_point;public_place;transit_stop;water_source;air_hotspot;wastewater_facility",
        f"{path}:1:geometry: not a Point with [longitude, latitude]",
    ]


def test_a_projected_crs_is_refused_with_what_to_do(tmp_path: Path) -> None:
    document = json.loads(QGIS_EXPORT)
    document["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG::9210"
    path = _write(tmp_path, json.dumps(document))
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:-:crs: coordinates are in urn:ogc:def:crs:EPSG::9210; export the layer as WGS 84 (EPSG:4326)"]


def test_a_file_that_is_not_json_is_refused_with_its_position(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"type": "FeatureCollection",\n "features": [}')
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [f"{path}:-:-: not JSON: Expecting value at line 2 column 15"]


def test_non_utf8_geojson_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "points.geojson"
    path.write_bytes(QGIS_EXPORT.replace("Ngã tư Lê Lợi", "Ng\udce3").encode("utf-8", "surrogateescape"))
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:-:-: not UTF-8 (invalid byte 0xe3 on line 6); save the file as UTF-8"]


def test_gdal_style_dates_are_read_as_iso(tmp_path: Path) -> None:
    document = json.loads(QGIS_EXPORT)
    document["features"][0]["properties"]["valid_from"] = "2025/01/01"
    document["features"][1]["properties"]["valid_from"] = "2025/01/01 07:00:00+07"
    points = parse_points(_write(tmp_path, json.dumps(document)), ZONE)
    assert [p.valid_from for p in points] == [parse_instant("2025-01-01", ZONE),
                                              parse_instant("2025-01-01T07:00:00+07:00", ZONE)]
