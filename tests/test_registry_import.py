from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from registry.devices import import_devices, parse_devices_csv
from registry.points import import_points, parse_points_csv
from registry.validation import RegistryFileError

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
HEADER = "point_id,name,categories,admin_unit,lat,lon,valid_from,valid_to\n"
DEVICES_HEADER = "device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_bad_row_is_reported_as_file_row_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "points.csv", HEADER
                  + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                  + "SEC-2,Chợ Lớn,security_pont,540,13.77,109.22,2025-01-01,\n"
                  + "SEC-3,Cầu Đôi,security_point,540,95.3,109.22,2025-01-01,\n"
                  + "SEC-4,Bến xe,security_point,540,13.77,109.22,2025-01-01,2024-12-31\n"
                  + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_points_csv(path, ZONE)
    assert raised.value.problems == [
        f"{path}:3:categories: unknown category 'security_pont'; expected some of "
        "security_point;public_place;transit_stop;water_source;air_hotspot;wastewater_facility",
        f"{path}:4:lat: 95.3 is outside Vietnam (6.0–24.0)",
        f"{path}:5:valid_to: 2024-12-31 is not after valid_from 2025-01-01",
        f"{path}:6:point_id: SEC-1 from 2025-01-01 already on row 2",
    ]


def test_non_utf8_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    # "Ngã" as a legacy Windows code page writes it: 0xE3 is not valid UTF-8 here.
    path.write_bytes(HEADER.encode() + b"SEC-1,Ng\xe3,security_point,540,13.7,109.2,2025-01-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_points_csv(path, ZONE)
    assert raised.value.problems[0].startswith(f"{path}:2:-: not UTF-8")


def test_reimporting_the_same_file_changes_nothing(db: psycopg.Connection, tmp_path: Path) -> None:
    path = _write(tmp_path, "points.csv", "\ufeff" + HEADER
                  + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                  + "SEC-2,Quảng trường,security_point;public_place,540,13.77,109.22,2025-01-01,\n")
    effective = datetime(2026, 1, 1, tzinfo=UTC)
    first = import_points(db, parse_points_csv(path, ZONE), effective=effective)
    again = import_points(db, parse_points_csv(path, ZONE), effective=effective)
    assert (first.added, first.total) == (2, 2)
    assert str(again).startswith("0 changed")


def test_a_point_missing_from_a_newer_list_is_closed_not_deleted(db: psycopg.Connection, tmp_path: Path) -> None:
    old = _write(tmp_path, "old.csv", HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Chợ Lớn,security_point,540,13.77,109.22,2025-01-01,\n")
    new = _write(tmp_path, "new.csv", HEADER + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n")
    import_points(db, parse_points_csv(old, ZONE), effective=datetime(2025, 1, 1, tzinfo=UTC))
    count = import_points(db, parse_points_csv(new, ZONE), effective=datetime(2026, 3, 1, tzinfo=ZONE))
    rows = db.execute("SELECT point_id, valid_to FROM key_points ORDER BY point_id").fetchall()
    assert count.closed == 1
    assert [(r["point_id"], r["valid_to"]) for r in rows] == [
        ("SEC-1", None), ("SEC-2", datetime(2026, 3, 1, tzinfo=ZONE))]


def test_device_file_problems_name_row_and_column(db: psycopg.Connection, tmp_path: Path) -> None:
    path = _write(tmp_path, "devices.csv", DEVICES_HEADER
                  + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                  + "cam-1,cctv,SEC-2,2025-05-01,,60\n"
                  + "cam-2,cctv,SEC-404,2025-01-01,,60\n"
                  + "cam-3,camera,SEC-1,2025-01-01,,-5\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_devices_csv(path, ZONE, {"SEC-1", "SEC-2"}, {})
    assert raised.value.problems == [
        f"{path}:4:point_id: unknown key point 'SEC-404'; import it with the points first",
        f"{path}:5:kind: unknown kind 'camera'; expected one of air_monitor, water_monitor, "
        "wastewater_station, cctv, wifi_ap, bus_display",
        f"{path}:5:heartbeat_interval_s: '-5' is not a positive whole number of seconds",
        f"{path}:3:valid_from: cam-1 is already bound to SEC-1 then (row 2); a device is in one place at a time",
    ]


def test_a_moved_device_keeps_both_bindings(db: psycopg.Connection, tmp_path: Path) -> None:
    points = _write(tmp_path, "points.csv", HEADER
                    + "SEC-1,A,security_point,540,13.77,109.22,2025-01-01,\n"
                    + "SEC-2,B,security_point,540,13.77,109.22,2025-01-01,\n")
    devices = _write(tmp_path, "devices.csv", DEVICES_HEADER
                     + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                     + "cam-1,cctv,SEC-2,2025-06-01,,60\n")
    effective = datetime(2026, 1, 1, tzinfo=UTC)
    import_points(db, parse_points_csv(points, ZONE), effective=effective)
    count = import_devices(db, parse_devices_csv(devices, ZONE, {"SEC-1", "SEC-2"}, {}), effective=effective)
    again = import_devices(db, parse_devices_csv(devices, ZONE, {"SEC-1", "SEC-2"}, {"cam-1": "cctv"}),
                           effective=effective)
    assert count.added == 3  # the device and its two bindings
    assert again.total == 0
