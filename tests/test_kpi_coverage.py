"""Indicator #17 over hand-built registries and heartbeats, with expectations computed by hand."""

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.helpers import BACKENDS
from tests.kpi_builders import mark_written_days, value_every_way


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param


ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = date(2026, 11, 1)
LONG_AFTER = datetime(2026, 12, 1, tzinfo=UTC)  # past the 7-day lateness window of every period here


def _local(day: date, hour: int, minute: int = 30) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def _point(db: psycopg.Connection, point_id: str, categories: list[str], valid_from: datetime,
           valid_to: datetime | None = None) -> None:
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to)"
               " VALUES (%s, %s, %s, '540', 13.77, 109.22, %s, %s)",
               (point_id, f"Điểm {point_id}", categories, valid_from, valid_to))


def _device(db: psycopg.Connection, device_id: str, point_id: str, kind: str = "cctv",
            valid_from: datetime = datetime(2026, 1, 1, tzinfo=ZONE), valid_to: datetime | None = None) -> None:
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s) ON CONFLICT DO NOTHING", (device_id, kind))
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from, valid_to) VALUES (%s, %s, %s, %s)",
               (device_id, point_id, valid_from, valid_to))


def _beats(db: psycopg.Connection, device_id: str, times: list[datetime], *, status: str = "ok",
           kind: str = "cctv") -> None:
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO heartbeats (device_id, ts, kind, healthy, status, source, received_at)"
            " VALUES (%s, %s, %s, %s, %s, 'test', %s)",
            [(device_id, ts, kind, status != "fault", status, ts) for ts in times])
    mark_written_days(db, times)


def _hours(*hours: int, day: date = DAY) -> list[datetime]:
    return [_local(day, h) for h in hours]


def _value(db: psycopg.Connection, period_from: date, period_to: date, now: datetime = LONG_AFTER):
    return value_every_way(db, "17", period_from, period_to, now=now)


def _build_day(db: psycopg.Connection) -> None:
    since = datetime(2026, 1, 1, tzinfo=ZONE)
    _point(db, "SEC-A", ["security_point"], since)
    _device(db, "cam-a", "SEC-A")
    _beats(db, "cam-a", _hours(*range(24)))                     # 24/24, the last at 23:30 local
    _point(db, "SEC-B", ["security_point"], since)
    _device(db, "cam-b", "SEC-B")
    _beats(db, "cam-b", _hours(*range(21))                      # 21/24 = 0.875
           + [_local(DAY - timedelta(days=1), 23), _local(DAY + timedelta(days=1), 0)])  # outside the period
    _point(db, "SEC-C", ["security_point", "public_place"], since)
    _device(db, "cam-c1", "SEC-C")
    _device(db, "cam-c2", "SEC-C")
    _beats(db, "cam-c1", _hours(*range(12)))                    # together 24/24
    _beats(db, "cam-c2", _hours(*range(12, 24)))
    _point(db, "SEC-D", ["security_point"], since)             # no device: 0/24
    _point(db, "SEC-E", ["security_point"], _local(DAY, 12, 0))  # opened at noon: 12 buckets in force
    _device(db, "cam-e", "SEC-E")
    _beats(db, "cam-e", _hours(*range(12, 23)))                 # 11/12 = 0.9167
    _point(db, "SEC-F", ["security_point"], since)
    _device(db, "cam-f", "SEC-F")
    _beats(db, "cam-f", _hours(0, 1, 2), status="fault")        # talking, but not healthy
    _beats(db, "cam-f", _hours(*range(3, 24)))                  # 21/24 = 0.875
    _point(db, "PUB-G", ["public_place"], since)               # #22's, not #17's
    _device(db, "wifi-g", "PUB-G", kind="wifi_ap")
    _beats(db, "wifi-g", _hours(*range(24)), kind="wifi_ap")
    _point(db, "SEC-H", ["security_point"], since, _local(DAY - timedelta(days=1), 0, 0))  # closed before


def test_indicator_17_counts_points_covered_at_least_theta_of_their_hours(db: psycopg.Connection) -> None:
    _build_day(db)
    value = _value(db, DAY, DAY + timedelta(days=1))
    by_point = {e.point_id: (e.buckets_up, e.buckets_in_force, e.covered) for e in value.evidence}
    assert by_point == {
        "SEC-A": (24, 24, True), "SEC-B": (21, 24, False), "SEC-C": (24, 24, True), "SEC-D": (0, 24, False),
        "SEC-E": (11, 12, True), "SEC-F": (21, 24, False),
    }
    assert value.as_dict() == {
        "code": "17", "name_vi": "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng", "unit": "%",
        "from": "2026-11-01", "to": "2026-11-02", "numerator": 3, "denominator": 6, "value": 50.0,
        "status": "final",
    }


def test_two_devices_of_one_point_are_credited_with_their_own_hours(db: psycopg.Connection) -> None:
    _build_day(db)
    evidence = {e.point_id: e for e in _value(db, DAY, DAY + timedelta(days=1)).evidence}
    assert evidence["SEC-C"].device_up_hours == {"cam-c1": 12, "cam-c2": 12}


def test_availability_of_exactly_theta_is_covered(db: psycopg.Connection) -> None:
    since = datetime(2026, 1, 1, tzinfo=ZONE)
    five_days = [DAY + timedelta(days=d) for d in range(5)]
    all_hours = [_local(d, h) for d in five_days for h in range(24)]
    _point(db, "SEC-108", ["security_point"], since)
    _device(db, "cam-108", "SEC-108")
    _beats(db, "cam-108", all_hours[:108])                      # 108/120 = 0.90 exactly
    _point(db, "SEC-107", ["security_point"], since)
    _device(db, "cam-107", "SEC-107")
    _beats(db, "cam-107", all_hours[:107])                      # 107/120 < 0.90
    value = _value(db, DAY, DAY + timedelta(days=5))
    assert [(e.point_id, e.covered) for e in value.evidence] == [("SEC-107", False), ("SEC-108", True)]
    assert (value.numerator, value.denominator, value.value) == (1, 2, Decimal("50.00"))


def test_a_value_is_provisional_until_the_lateness_window_has_passed(db: psycopg.Connection) -> None:
    _build_day(db)
    period_end = _local(DAY + timedelta(days=1), 0, 0)
    assert _value(db, DAY, DAY + timedelta(days=1), now=period_end + timedelta(days=7)).status == "final"
    assert _value(db, DAY, DAY + timedelta(days=1),
                  now=period_end + timedelta(days=7) - timedelta(seconds=1)).status == "provisional"


def test_no_key_points_means_insufficient_data(db: psycopg.Connection) -> None:
    value = _value(db, DAY, DAY + timedelta(days=1))
    assert (value.numerator, value.denominator, value.value, value.status) == (0, 0, None, "insufficient_data")


def test_kpi_show_prints_the_contract_json(database_url: str, db: psycopg.Connection) -> None:
    _build_day(db)
    db.commit()
    result = subprocess.run(
        [sys.executable, "-m", "citykpi.cli", "kpi", "show", "17", "--from", "2026-11-01", "--to", "2026-11-02",
         "--json"], capture_output=True, text=True, env={"CITYKPI_DATABASE_URL": database_url}, check=True)
    printed = json.loads(result.stdout)
    assert list(printed) == ["code", "name_vi", "unit", "from", "to", "numerator", "denominator", "value",
                             "status"]
    assert (printed["numerator"], printed["denominator"], printed["value"]) == (3, 6, 50.0)
