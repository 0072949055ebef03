"""Live coverage: computed at scrape time from the rollups, with the binding's or the kind's interval."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from base.db import connect
from base.settings import Settings
from kpi.live import LiveCoverageCollector, live_coverage
from tests.helpers import BACKENDS
from tests.kpi_builders import beats, device, local, materialise, point, unit


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param


NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def _city(db: psycopg.Connection) -> None:
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district")
    unit(db, "541", "52", "district")
    for point_id, unit_code in (("SEC-1", "540"), ("SEC-2", "540"), ("SEC-3", "541"), ("SEC-4", "541"),
                                ("SEC-5", "541")):
        point(db, point_id, ["security_point"], admin_unit=unit_code)
    device(db, "cam-fresh", "SEC-1")                            # cctv default 60 s: window 3 min
    beats(db, "cam-fresh", [NOW - timedelta(minutes=2)])
    device(db, "cam-stale", "SEC-2")
    beats(db, "cam-stale", [NOW - timedelta(minutes=3, seconds=1)])
    device(db, "cam-slow", "SEC-3", interval_s=600)             # its binding says 600 s: window 30 min
    beats(db, "cam-slow", [NOW - timedelta(minutes=20)])
    device(db, "cam-faulty", "SEC-4")                           # talking, but its last healthy beat is old
    beats(db, "cam-faulty", [NOW - timedelta(minutes=10)])
    beats(db, "cam-faulty", [NOW - timedelta(minutes=1)], healthy=False)
    point(db, "PUB-6", ["public_place"], admin_unit="540")
    device(db, "wifi-6", "PUB-6", kind="wifi_ap")
    beats(db, "wifi-6", [NOW - timedelta(hours=2)], kind="wifi_ap")  # wifi default 60 s: down
    db.commit()


def test_a_point_is_covered_now_when_a_bound_device_was_healthy_within_three_intervals(
        db: psycopg.Connection) -> None:
    _city(db)
    live = live_coverage(db, settings=Settings(), now=NOW).as_dict()
    cctv = next(i for i in live["indicators"] if i["code"] == "17")
    assert (cctv["points"], cctv["covered"], cctv["value"]) == (5, 2, 40.0)
    assert cctv["by_admin_unit"] == {"52": {"points": 5, "covered": 2}, "540": {"points": 2, "covered": 1},
                                     "541": {"points": 3, "covered": 1}}
    assert live["devices"] == {"cctv": {"up": 2, "down": 2}, "wifi_ap": {"up": 0, "down": 1}}


def _only_rollups_left(backend: str, database_url: str, db: psycopg.Connection, *, days_back: int) -> None:
    """Raw heartbeats gone: on TimescaleDB materialised first, then their chunks dropped, so that only the
    continuous aggregates can answer."""
    if backend == "timescaledb":
        day = NOW.date()
        materialise(database_url, local(day - timedelta(days=days_back), 0, 0), local(day + timedelta(days=1), 0, 0))
        db.execute("SELECT drop_chunks('heartbeats', older_than => %s)", (NOW + timedelta(days=30),))
    else:
        db.execute("DELETE FROM heartbeats")


def test_live_coverage_reads_the_rollups_not_raw_heartbeats(backend: str, database_url: str,
                                                            db: psycopg.Connection) -> None:
    _city(db)
    db.commit()
    _only_rollups_left(backend, database_url, db, days_back=1)
    assert db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"] == 0
    db.commit()
    cctv = live_coverage(db, settings=Settings(), now=NOW).indicators[1]
    assert (cctv.code, len(cctv.points), cctv.covered) == ("17", 5, 2)


def test_the_collector_exports_gauges_per_indicator_unit_and_kind(database_url: str,
                                                                  db: psycopg.Connection) -> None:
    _city(db)
    registry = CollectorRegistry()
    registry.register(LiveCoverageCollector(lambda: connect(database_url), Settings(), clock=lambda: NOW))
    sample = registry.get_sample_value
    assert sample("citykpi_live_read_ok") == 1
    assert sample("citykpi_live_coverage_ratio", {"indicator": "17"}) == 0.4
    assert sample("citykpi_live_points_covered", {"indicator": "17"}) == 2
    assert sample("citykpi_live_unit_coverage_ratio", {"indicator": "17", "admin_unit": "540"}) == 0.5
    assert sample("citykpi_live_unit_points", {"indicator": "22", "admin_unit": "52"}) == 1
    assert sample("citykpi_live_coverage_ratio", {"indicator": "9"}) is None    # no points: no ratio
    assert sample("citykpi_live_devices", {"kind": "cctv", "state": "down"}) == 2


def test_a_scrape_that_cannot_reach_the_database_says_so() -> None:
    @contextmanager
    def unreachable():
        raise psycopg.OperationalError("connection refused")
        yield

    registry = CollectorRegistry()
    registry.register(LiveCoverageCollector(unreachable, Settings(), clock=lambda: NOW))
    assert registry.get_sample_value("citykpi_live_read_ok") == 0


def test_the_kinds_default_interval_is_a_setting(db: psycopg.Connection) -> None:
    _city(db)
    settings = Settings(heartbeat_interval_s={"cctv": 30})      # window 90 s: cam-fresh (2 min) is now down
    cctv = live_coverage(db, settings=settings, now=NOW).indicators[1]
    assert (settings.heartbeat_interval_s["wifi_ap"], cctv.covered) == (60, 1)


def _silent(database_url: str, settings: Settings) -> list[tuple[str, str, str, float]]:
    registry = CollectorRegistry()
    registry.register(LiveCoverageCollector(lambda: connect(database_url), settings, clock=lambda: NOW))
    family = next(m for m in registry.collect() if m.name == "citykpi_live_device_silent_seconds")
    return [(s.labels["device_id"], s.labels["kind"], s.labels["point_id"], s.value) for s in family.samples]


def test_the_devices_silent_longest_are_exported_from_the_rollups(backend: str, database_url: str,
                                                                   db: psycopg.Connection) -> None:
    _city(db)
    # Bound to two points for two days and a day, never heard from: one device, silent since its first binding.
    device(db, "cam-new", "SEC-4", valid_from=NOW - timedelta(days=2))
    device(db, "cam-new", "SEC-5", valid_from=NOW - timedelta(days=1))
    # Unbound two days ago after a week of silence: no longer anyone's concern here.
    device(db, "cam-gone", "SEC-5", valid_to=NOW - timedelta(days=2))
    beats(db, "cam-gone", [NOW - timedelta(days=9)])
    db.commit()
    _only_rollups_left(backend, database_url, db, days_back=10)
    db.commit()

    assert _silent(database_url, Settings()) == [
        ("cam-new", "cctv", "SEC-4,SEC-5", 172800.0),   # 2 days since its first binding began
        ("wifi-6", "wifi_ap", "PUB-6", 7200.0),
        ("cam-slow", "cctv", "SEC-3", 1200.0),
        ("cam-stale", "cctv", "SEC-2", 181.0),
        ("cam-fresh", "cctv", "SEC-1", 120.0),
        ("cam-faulty", "cctv", "SEC-4", 60.0),          # its last beat was a fault: talking, not silent
    ]
    assert _silent(database_url, Settings(live_silent_devices=2)) == [
        ("cam-new", "cctv", "SEC-4,SEC-5", 172800.0), ("wifi-6", "wifi_ap", "PUB-6", 7200.0)]
    assert _silent(database_url, Settings(live_silent_devices=0)) == []


def test_how_many_silent_devices_are_listed_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Settings().live_silent_devices
    monkeypatch.setenv("CITYKPI_LIVE_SILENT_DEVICES", "5")
    assert (default, Settings().live_silent_devices) == (20, 5)
