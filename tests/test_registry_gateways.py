"""The gateway a camera reports through: an optional column of devices.csv, kept on the binding."""

import io
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from registry.devices import read_devices
from registry.devices_import import import_devices
from registry.export import export_devices_csv
from registry.points import parse_points
from registry.points_import import import_points
from registry.validation import Problems, RegistryFileError
from tests.registry_files import DEVICES_HEADER, POINTS_HEADER, ZONE, seed_units, write

EFFECTIVE = datetime(2026, 1, 1, tzinfo=UTC)
WITH_GATEWAY = DEVICES_HEADER.rstrip("\n") + ",gateway_id\n"


@pytest.fixture
def points(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    path = write(tmp_path, "points.csv", POINTS_HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Quảng trường,security_point;public_place,540,13.77,109.22,2025-01-01,\n")
    import_points(db, parse_points(path, ZONE), effective=EFFECTIVE)


def _import(db: psycopg.Connection, path: Path):
    problems = Problems(str(path))
    return import_devices(db, read_devices(path, ZONE, problems), effective=EFFECTIVE, problems=problems, zone=ZONE)


def _gateways(db: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    rows = db.execute("SELECT device_id, valid_from, gateway_id FROM bindings ORDER BY device_id, valid_from")
    return [(r["device_id"], r["valid_from"].astimezone(ZONE).date().isoformat(), r["gateway_id"]) for r in rows]


def test_the_gateway_of_each_binding_is_stored(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    count = _import(db, write(tmp_path, "devices.csv", WITH_GATEWAY
                              + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60,vms-1\n"
                              + "cam-1,cctv,SEC-1,2025-06-01,,60,VMS.02.north_b\n"
                              + "cam-2,cctv,SEC-2,2025-01-01,,60,\n"))
    assert count.added == 5  # two devices, three bindings
    assert _gateways(db) == [("cam-1", "2025-01-01", "vms-1"), ("cam-1", "2025-06-01", "VMS.02.north_b"),
                             ("cam-2", "2025-01-01", None)]


def test_a_file_without_the_column_imports_as_before(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    count = _import(db, write(tmp_path, "devices.csv", DEVICES_HEADER + "cam-1,cctv,SEC-1,2025-01-01,,60\n"))
    assert (count.added_ids, _gateways(db)) == (["cam-1", "cam-1@SEC-1"], [("cam-1", "2025-01-01", None)])


def test_a_bad_gateway_id_names_file_row_and_column(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", WITH_GATEWAY
                 + "cam-1,cctv,SEC-1,2025-01-01,,60,vms-1\n"
                 + "cam-2,cctv,SEC-1,2025-01-01,,60,vms/2\n"
                 + "cam-3,cctv,SEC-2,2025-01-01,,60," + "v" * 65 + "\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:3:gateway_id: 'vms/2' is not an id ([A-Za-z0-9._-], 1–64 chars)",
        f"{path}:4:gateway_id: '{'v' * 65}' is not an id ([A-Za-z0-9._-], 1–64 chars)",
    ]
    assert db.execute("SELECT count(*) AS n FROM bindings").fetchone()["n"] == 0


def test_a_gateway_may_not_share_an_id_with_a_device(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "first.csv", WITH_GATEWAY + "cam-1,cctv,SEC-1,2025-01-01,,60,vms-1\n"))
    path = write(tmp_path, "second.csv", WITH_GATEWAY
                 + "cam-2,cctv,SEC-2,2025-01-01,,60,cam-1\n"
                 + "vms-1,cctv,SEC-2,2025-01-01,,60,\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:2:gateway_id: cam-1 is a device id; a gateway needs an id of its own (broker accounts are named "
        "by both)",
        f"{path}:3:device_id: vms-1 is a gateway id; a device needs an id of its own (broker accounts are named "
        "by both)",
    ]


def test_changing_only_the_gateway_is_a_change(db: psycopg.Connection, points: None, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "old.csv", WITH_GATEWAY + "cam-1,cctv,SEC-1,2025-01-01,,60,vms-1\n"))
    moved = _import(db, write(tmp_path, "new.csv", WITH_GATEWAY + "cam-1,cctv,SEC-1,2025-01-01,,60,vms-2\n"))
    direct = _import(db, write(tmp_path, "direct.csv", WITH_GATEWAY + "cam-1,cctv,SEC-1,2025-01-01,,60,\n"))
    assert (moved.changed_ids, moved.total) == (["cam-1@SEC-1"], 1)
    assert (direct.changed_ids, direct.total) == (["cam-1@SEC-1"], 1)
    assert _gateways(db) == [("cam-1", "2025-01-01", None)]


def test_an_export_with_gateways_reimports_to_0_changed(db: psycopg.Connection, points: None,
                                                        tmp_path: Path) -> None:
    _import(db, write(tmp_path, "devices.csv", WITH_GATEWAY
                      + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01T08:30:00+07:00,60,vms-1\n"
                      + "cam-1,cctv,SEC-1,2025-06-01T08:30:00+07:00,,,vms-2\n"
                      + "cam-2,cctv,SEC-2,2025-01-01,,30,\n"))
    out = io.StringIO()
    assert export_devices_csv(db, out, ZONE) == 3
    exported = write(tmp_path, "exported.csv", out.getvalue())
    assert out.getvalue().splitlines() == [
        "device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s,gateway_id,probe",
        "cam-1,cctv,SEC-1,2025-01-01,2025-06-01T08:30:00+07:00,60,vms-1,",
        "cam-1,cctv,SEC-1,2025-06-01T08:30:00+07:00,,,vms-2,",
        "cam-2,cctv,SEC-2,2025-01-01,,30,,",
    ]
    assert str(_import(db, exported)) == "0 changed (0 added, 0 changed, 0 closed)"


def test_an_export_at_a_date_holds_the_bindings_in_force_then(db: psycopg.Connection, points: None,
                                                              tmp_path: Path) -> None:
    _import(db, write(tmp_path, "devices.csv", WITH_GATEWAY
                      + "cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60,vms-1\n"
                      + "cam-1,cctv,SEC-1,2025-06-01,,60,vms-2\n"))
    out = io.StringIO()
    export_devices_csv(db, out, ZONE, at=datetime(2025, 3, 1, tzinfo=UTC))
    assert out.getvalue().splitlines()[1:] == ["cam-1,cctv,SEC-1,2025-01-01,2025-06-01,60,vms-1,"]
