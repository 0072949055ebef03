"""Importing devices and their bindings: checked against the file and the registry, all-or-nothing."""

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from registry.devices import parse_devices_csv, read_devices
from registry.devices_import import import_devices
from registry.points import parse_points
from registry.points_import import import_points
from registry.validation import Problems, RegistryFileError
from tests.registry_files import DEVICES_HEADER, POINTS_HEADER, ZONE, seed_units, write

EFFECTIVE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def points(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    path = write(tmp_path, "points.csv", POINTS_HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Quảng trường,security_point;public_place,540,13.77,109.22,2025-01-01,\n"
                 + "WAT-1,Sông Hà Thanh,water_source,540,13.75,109.2,2025-01-01,\n")
    import_points(db, parse_points(path, ZONE), effective=EFFECTIVE)


def _import(db: psycopg.Connection, path: Path):
    problems = Problems(str(path))
    return import_devices(db, read_devices(path, ZONE, problems), effective=EFFECTIVE, problems=problems, zone=ZONE)


def test_file_problems_name_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                 + "cam-3,camera,SEC-1,2025-01-01,,-5\n"
                 + "cam-1,wifi_ap,SEC-2,2025-07-01,,60\n"
                 + "cam-1,cctv,SEC-2,2025-01-01,,60\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_devices_csv(path, ZONE)
    assert raised.value.problems == [
        f"{path}:3:kind: unknown kind 'camera'; expected one of air_monitor, water_monitor, "
        "wastewater_station, cctv, wifi_ap, bus_display",
        f"{path}:3:heartbeat_interval_s: '-5' is not a positive whole number of seconds",
        f"{path}:4:kind: cam-1 is cctv on row 2; a device's kind does not change",
        f"{path}:5:valid_from: cam-1 from 2025-01-01 already on row 2",
    ]


def test_ids_a_broker_account_cannot_bear_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "citykpi-ingest,cctv,SEC-1,2025-01-01,,60\n"
                 + "cam:1,cctv,SEC-1,2025-01-01,,60\n")
    gateways = write(tmp_path, "gateways.csv", DEVICES_HEADER.rstrip("\n") + ",gateway_id\n"
                     + "cam-1,cctv,SEC-1,2025-01-01,,60,citykpi-vms\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_devices_csv(path, ZONE)
    with pytest.raises(RegistryFileError) as raised_gateway:
        parse_devices_csv(gateways, ZONE)
    assert raised.value.problems == [
        f"{path}:2:device_id: 'citykpi-ingest' begins with 'citykpi-', which the service's own broker accounts use",
        f"{path}:3:device_id: 'cam:1' is not an id ([A-Za-z0-9._-], 1–64 chars)"]
    assert raised_gateway.value.problems == [
        f"{gateways}:2:gateway_id: 'citykpi-vms' begins with 'citykpi-', which the service's own broker accounts "
        "use"]


def test_registry_problems_are_listed_together_and_nothing_is_written(db: psycopg.Connection, points: None,
                                                                      tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                 + "cam-1,cctv,SEC-2,2025-05-01,,60\n"
                 + "cam-2,cctv,SEC-404,2025-01-01,,60\n"
                 + "ap-1,wifi_ap,SEC-1,2025-01-01,,300\n"
                 + "wq-1,water_monitor,WAT-1,2025-01-01,,notanumber\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:3:valid_from: cam-1 is already bound to SEC-1 then (row 2); a device is in one place at a time",
        f"{path}:4:point_id: unknown key point 'SEC-404'; import it with the points first",
        f"{path}:5:kind: a wifi_ap serves public_place points; SEC-1 is security_point",
        f"{path}:6:heartbeat_interval_s: 'notanumber' is not a positive whole number of seconds",
    ]
    assert db.execute("SELECT count(*) AS n FROM bindings").fetchone()["n"] == 0


def test_a_device_bound_to_two_points_at_overlapping_times_is_refused(db: psycopg.Connection, points: None,
                                                                      tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                 + "cam-1,cctv,SEC-2,2025-05-01,,60\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:3:valid_from: cam-1 is already bound to SEC-1 then (row 2); a device is in one place at a time"]
    assert db.execute("SELECT count(*) AS n FROM devices").fetchone()["n"] == 0


def test_an_overlap_with_a_binding_of_another_file_is_refused(db: psycopg.Connection, points: None,
                                                              tmp_path: Path) -> None:
    _import(db, write(tmp_path, "sec1.csv", DEVICES_HEADER + "cam-1,cctv,SEC-1,2025-01-01,,60\n"))
    path = write(tmp_path, "sec2.csv", DEVICES_HEADER + "cam-1,cctv,SEC-2,2025-05-01,,60\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:2:valid_from: cam-1 is already bound to SEC-1 then (2025-01-01–…, in the registry); "
        "a device is in one place at a time"]


def test_a_registered_device_cannot_change_kind(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "first.csv", DEVICES_HEADER + "dev-1,cctv,SEC-2,2025-01-01,,60\n"))
    path = write(tmp_path, "second.csv", DEVICES_HEADER + "dev-1,wifi_ap,SEC-2,2025-01-01,,60\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [f"{path}:2:kind: dev-1 is registered as cctv; a device's kind does not change"]


def test_a_moved_device_keeps_both_bindings(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60\n"
                 + "cam-1,cctv,SEC-2,2025-06-01,,60\n")
    count = _import(db, path)
    again = _import(db, path)
    assert count.added_ids == ["cam-1", "cam-1@SEC-1", "cam-1@SEC-2"]  # the device and its two bindings
    assert again.total == 0


def test_a_binding_missing_from_a_newer_list_is_closed(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "old.csv", DEVICES_HEADER
                      + "cam-1,cctv,SEC-1,2025-01-01,,60\n" + "cam-2,cctv,SEC-1,2025-01-01,,60\n"))
    count = _import(db, write(tmp_path, "new.csv", DEVICES_HEADER + "cam-1,cctv,SEC-1,2025-01-01,,60\n"))
    closed = db.execute("SELECT valid_to FROM bindings WHERE device_id = 'cam-2'").fetchone()["valid_to"]
    assert (count.closed_ids, closed) == (["cam-2@SEC-1"], EFFECTIVE)
