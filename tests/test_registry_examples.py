"""The shipped examples (deploy/examples/) replay the 2025 reform: Bình Định's districts, then Gia Lai's
communes and wards directly under the province, with every key point re-parented by a new version."""

from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from registry.devices import read_devices
from registry.devices_import import import_devices
from registry.points import read_points
from registry.points_import import import_points
from registry.queries import points_at
from registry.units import import_units, read_units
from registry.validation import Problems, RegistryFileError
from tests.registry_files import ZONE

EXAMPLES = Path(__file__).parents[1] / "deploy" / "examples"
REFORM = datetime(2025, 7, 1, tzinfo=ZONE)
BEFORE, AFTER = datetime(2024, 12, 31, tzinfo=ZONE), datetime(2026, 1, 1, tzinfo=ZONE)


def _load(db: psycopg.Connection, what: str, name: str, effective: datetime):
    path = EXAMPLES / name
    problems = Problems(str(path))
    read, load = {"units": (read_units, import_units), "points": (read_points, import_points),
                  "devices": (read_devices, import_devices)}[what]
    return load(db, read(path, ZONE, problems), effective=effective, problems=problems, zone=ZONE)


@pytest.fixture
def province(db: psycopg.Connection) -> None:
    _load(db, "units", "units-binh-dinh-2024.csv", datetime(2024, 1, 1, tzinfo=ZONE))
    _load(db, "units", "units-gia-lai-2025.csv", REFORM)
    _load(db, "points", "points.csv", AFTER)
    _load(db, "devices", "devices.csv", AFTER)


def test_the_2025_units_file_closes_the_old_tree_and_adds_the_new(db: psycopg.Connection) -> None:
    _load(db, "units", "units-binh-dinh-2024.csv", datetime(2024, 1, 1, tzinfo=ZONE))
    count = _load(db, "units", "units-gia-lai-2025.csv", REFORM)
    assert (count.added, count.changed, count.closed) == (18, 40, 0)  # GL and 17 new units; 40 old ones ended


def test_points_of_the_new_units_need_the_2025_units(db: psycopg.Connection) -> None:
    _load(db, "units", "units-binh-dinh-2024.csv", datetime(2024, 1, 1, tzinfo=ZONE))
    with pytest.raises(RegistryFileError) as raised:
        _load(db, "points", "points.csv", AFTER)
    assert raised.value.problems[0] == (f"{EXAMPLES / 'points.csv'}:3:admin_unit: unknown administrative unit "
                                        "'N004'; import it with the units first")


def test_2024_transit_stops_listed_by_old_district(db: psycopg.Connection, province: None) -> None:
    rows = points_at(db, BEFORE, category="transit_stop", admin_unit="540")
    assert [r["point_id"] for r in rows] == ["BUS-005", "BUS-008", "BUS-012", "BUS-014", "BUS-017", "BUS-019",
                                             "BUS-028", "BUS-034", "BUS-041"]


def test_2026_transit_stops_listed_by_new_ward(db: psycopg.Connection, province: None) -> None:
    rows = points_at(db, AFTER, category="transit_stop", admin_unit="N001")
    assert [r["point_id"] for r in rows] == ["BUS-005", "BUS-012", "BUS-014", "BUS-019", "BUS-057"]


def test_a_point_is_re_parented_across_the_reform(db: psycopg.Connection, province: None) -> None:
    before = points_at(db, BEFORE, admin_unit="52")
    after = points_at(db, AFTER, admin_unit="GL")
    assert [(r["admin_unit"]) for r in before if r["point_id"] == "SEC-001"] == ["S54006"]
    assert [(r["admin_unit"]) for r in after if r["point_id"] == "SEC-001"] == ["N004"]
    assert (len(before), len(after)) == (287, 290)


def test_the_abolished_district_holds_nothing_after_the_reform(db: psycopg.Connection, province: None) -> None:
    assert points_at(db, AFTER, admin_unit="540") == []


def test_every_example_reimports_to_0_changed(db: psycopg.Connection, province: None) -> None:
    for what, name in (("units", "units-gia-lai-2025.csv"), ("points", "points.csv"), ("devices", "devices.csv")):
        assert _load(db, what, name, AFTER).total == 0, name


def test_a_point_version_in_an_abolished_commune_names_the_successor(db: psycopg.Connection, province: None,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_text("point_id,name,categories,admin_unit,lat,lon,valid_from,valid_to\n"
                    "SEC-999,Nút giao giả lập số 999,security_point,S54001,13.77,109.22,2025-08-01,\n",
                    encoding="utf-8")
    with pytest.raises(RegistryFileError) as raised:
        _load(db, "points", str(path), AFTER)
    assert raised.value.problems == [
        f"{path}:2:admin_unit: administrative unit S54001 (Phường Trần Phú) is not in force on 2025-08-01; "
        "it was succeeded by N001"]


def test_no_example_point_is_left_in_an_abolished_unit(db: psycopg.Connection, province: None) -> None:
    from registry.queries import points_outliving_their_unit

    assert points_outliving_their_unit(db) == []


def test_the_cameras_of_old_quy_nhon_report_through_the_city_vms(db: psycopg.Connection, province: None) -> None:
    rows = db.execute("SELECT d.kind, b.gateway_id, count(*) AS n FROM bindings b JOIN devices d USING (device_id)"
                      " WHERE b.gateway_id IS NOT NULL GROUP BY 1, 2").fetchall()
    assert [tuple(r.values()) for r in rows] == [("cctv", "vms-quy-nhon", 18)]
