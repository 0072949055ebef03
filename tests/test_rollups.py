"""The hourly and daily rollups: what they hold, how late data reaches them, and the zone they are built in."""

import json
import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from base import migrations
from base.db import connect
from base.settings import Settings
from citykpi.schema import SCHEMAS, migrate
from ingest.decode import DecodeStage, Limits
from ingest.message import Message
from ingest.sink.writer import HeartbeatSink
from kpi.indicators import sensor_value
from kpi.rollups import RollupZoneMismatch, apply_storage_policies
from tests.helpers import BACKENDS, wait_for
from tests.kpi_builders import (
    ZONE,
    beats,
    device,
    hours,
    local,
    materialise,
    point,
    run_refresh_policies,
    value_every_way,
)

DAY = date(2026, 11, 1)
LONG_AFTER = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The rollups' contract holds on plain PostgreSQL (trigger-kept tables) and on TimescaleDB (continuous
    aggregates, read here through real-time aggregation unless a test materialises them)."""
    return request.param


def _hourly(db: psycopg.Connection, device_id: str) -> list[tuple]:
    return [(r["bucket"].astimezone(ZONE).strftime("%d %H:%M"), r["healthy_count"], r["total_count"],
             r["first_seen"].astimezone(ZONE).strftime("%H:%M"), r["last_seen"].astimezone(ZONE).strftime("%H:%M"))
            for r in db.execute("SELECT * FROM heartbeats_hourly WHERE device_id = %s ORDER BY bucket", (device_id,))]


def _daily(db: psycopg.Connection, device_id: str) -> list[tuple]:
    return [(r["day"].astimezone(ZONE).strftime("%Y-%m-%d %H:%M"), r["up_hours"], r["healthy_count"],
             r["total_count"])
            for r in db.execute("SELECT * FROM heartbeats_daily WHERE device_id = %s ORDER BY day", (device_id,))]


def test_hourly_rollup_counts_healthy_and_all_heartbeats_per_local_hour(db: psycopg.Connection) -> None:
    beats(db, "cam-1", [local(DAY, 8, 5), local(DAY, 8, 50)])
    beats(db, "cam-1", [local(DAY, 8, 20)], healthy=False)
    beats(db, "cam-1", [local(DAY, 9, 0)], healthy=False)
    assert _hourly(db, "cam-1") == [("01 08:00", 2, 3, "08:05", "08:50"), ("01 09:00", 0, 1, "09:00", "09:00")]


def test_a_duplicate_heartbeat_is_counted_once(db: psycopg.Connection) -> None:
    beats(db, "cam-1", [local(DAY, 8, 5)])
    beats(db, "cam-1", [local(DAY, 8, 5), local(DAY, 8, 6)])   # the first is absorbed by the (device_id, ts) key
    assert _hourly(db, "cam-1") == [("01 08:00", 2, 2, "08:05", "08:06")]


def test_daily_rollup_is_the_local_day_and_counts_up_hours(db: psycopg.Connection) -> None:
    # 23:30 local on 1 Nov is 16:30 UTC the same day; 06:30 local on 2 Nov is 23:30 UTC on 1 Nov.
    beats(db, "cam-1", hours(DAY, 0, 7, 7, 23) + [local(DAY, 7, 45)])
    beats(db, "cam-1", hours(DAY, 12), healthy=False)
    beats(db, "cam-1", hours(DAY + timedelta(days=1), 6))
    assert _daily(db, "cam-1") == [("2026-11-01 00:00", 3, 4, 5), ("2026-11-02 00:00", 1, 1, 1)]


def test_an_hour_becoming_healthy_later_adds_one_up_hour_and_only_once(db: psycopg.Connection) -> None:
    beats(db, "cam-1", hours(DAY, 10), healthy=False)
    assert _daily(db, "cam-1") == [("2026-11-01 00:00", 0, 0, 1)]
    beats(db, "cam-1", [local(DAY, 10, 40)])
    beats(db, "cam-1", [local(DAY, 10, 50)])
    assert _daily(db, "cam-1") == [("2026-11-01 00:00", 1, 2, 3)]


@pytest.mark.parametrize("backend", ["postgresql"])   # the trigger's row locks; TimescaleDB has no such rows
def test_concurrent_writers_of_one_day_lose_no_up_hour(database_url: str) -> None:
    """Two transactions write different hours of the same day; the second waits on the first's row lock."""
    with connect(database_url) as first, connect(database_url) as second:
        beats(first, "cam-1", hours(DAY, 1))                      # holds the day's row, uncommitted
        blocked_pid = second.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        writer = threading.Thread(target=lambda: (beats(second, "cam-1", hours(DAY, 2)), second.commit()))
        writer.start()
        with connect(database_url, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                             (blocked_pid,)).fetchone()["wait_event_type"] == "Lock",
                     what="the second writer to wait for the first's lock")
        first.commit()
        writer.join(timeout=30)
        assert _daily(first, "cam-1") == [("2026-11-01 00:00", 2, 2, 2)]


def _late_message(device_id: str, ts: datetime, received_at: datetime) -> Message:
    payload = json.dumps({"device_id": device_id, "kind": "cctv", "ts": ts.isoformat()}).encode()
    return DecodeStage(Limits()).message(source="mqtt", origin=f"devices/{device_id}/heartbeat", payload=payload,
                                         received_at=received_at, expected_device_id=device_id, allow_array=False,
                                         acknowledge=lambda: None)


def test_a_heartbeat_two_days_late_through_the_sink_changes_its_hour_its_day_and_the_kpi(
        backend: str, database_url: str, db: psycopg.Connection) -> None:
    # Days relative to the real clock: TimescaleDB's refresh policies and the KPI read's refresh go by it.
    day = (datetime.now(ZONE) - timedelta(days=3)).date()
    later = datetime.now(UTC) + timedelta(days=30)              # the KPI's clock: the whole day has ended
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(day, *range(21)))                  # 21/24 = 0.875: not covered
    db.commit()
    if backend == "timescaledb":
        run_refresh_policies(database_url)                      # the day is materialised, as in production
    closed = value_every_way(db, "17", day, day + timedelta(days=1), now=later)  # leaves point rollups fresh
    assert (closed.numerator, closed.denominator) == (0, 1)

    received = local(day + timedelta(days=2), 23)               # the day closed two days earlier
    sink = HeartbeatSink(database_url)
    try:
        result = sink.write([_late_message("cam-a", local(day, h), received) for h in (21, 22)])
    finally:
        sink.close()
    assert result.stored == 2

    db.rollback()
    if backend == "timescaledb":
        # Stored, but below the continuous aggregates' watermark: only in the invalidation log until a refresh.
        # (and the read below runs inside this open transaction: its refresh takes a second connection)
        assert _daily(db, "cam-a") == [(f"{day} 00:00", 21, 21, 21)]
    reopened = sensor_value(db, "17", day, day + timedelta(days=1), settings=Settings(), now=later)
    assert (reopened.numerator, reopened.denominator, reopened.evidence[0].buckets_up) == (1, 1, 23)
    assert _daily(db, "cam-a") == [(f"{day} 00:00", 23, 23, 23)]  # 23/24 = 0.958
    # The sink's write marked the day stale: the point rollup's 21 hours are not read any more.
    assert value_every_way(db, "17", day, day + timedelta(days=1), now=later).numerator == 1


def test_kpis_still_compute_after_raw_heartbeats_are_dropped(backend: str, database_url: str,
                                                            db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(DAY, *range(22)))                  # 22/24 = 0.9167
    db.commit()
    if backend == "timescaledb":
        # As in production: the refresh policy materialised the day long before the retention policy
        # drops its chunk (drop_chunks marks the chunk's range invalidated; no refresh reaches back that far).
        materialise(database_url, local(DAY, 0, 0), local(DAY + timedelta(days=1), 0, 0))
        dropped = db.execute("SELECT count(*) AS n FROM drop_chunks('heartbeats', older_than => %s)",
                             (LONG_AFTER,)).fetchone()["n"]
        assert dropped == 1
    else:
        db.execute("DELETE FROM heartbeats")                    # as a retention policy would
    db.commit()
    assert db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"] == 0
    db.commit()
    value = sensor_value(db, "17", DAY, DAY + timedelta(days=1), settings=Settings(), now=LONG_AFTER)
    assert (value.numerator, value.denominator, value.evidence[0].buckets_up) == (1, 1, 22)


def test_rollups_built_in_one_zone_refuse_to_serve_another(db: psycopg.Connection) -> None:
    with pytest.raises(RollupZoneMismatch, match="bucketed in Asia/Ho_Chi_Minh, but CITYKPI_TIMEZONE is Asia/Kolkata"):
        sensor_value(db, "17", DAY, DAY + timedelta(days=1), settings=Settings(timezone="Asia/Kolkata"),
                     now=LONG_AFTER)


def test_migration_buckets_by_the_configured_zone(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn, timezone="Asia/Kolkata")                  # UTC+05:30: local hours start at :30 UTC
        conn.autocommit = False
        beats(conn, "cam-1", [datetime(2026, 11, 1, 10, 45, tzinfo=UTC)])
        hourly = conn.execute("SELECT bucket FROM heartbeats_hourly").fetchone()["bucket"]
        daily = conn.execute("SELECT day FROM heartbeats_daily").fetchone()["day"]
        assert conn.execute("SELECT timezone FROM rollup_config").fetchone()["timezone"] == "Asia/Kolkata"
    assert hourly == datetime(2026, 11, 1, 10, 30, tzinfo=UTC)
    assert daily == datetime(2026, 10, 31, 18, 30, tzinfo=UTC)


def test_migration_rolls_up_heartbeats_stored_before_it(backend: str, empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrations.migrate(conn, SCHEMAS[:2])                          # registry and ingest only
        beats(conn, "cam-1", hours(DAY, 3, 4) + [local(DAY, 4, 45)])
        recent = datetime.now(UTC) - timedelta(days=1)
        beats(conn, "cam-2", [recent])                                  # recent: inside the refresh policies
        assert [(m.package, m.name) for m in migrate(conn) if "rollups" in m.name] == [
            ("kpi", "001_rollups.sql"), ("kpi", "030_point_rollups.sql")]
        assert _daily(conn, "cam-1") == [("2026-11-01 00:00", 2, 3, 3)]
        # Their days wait for the point rollups' first refresh.
        recent_day = datetime.combine(recent.astimezone(ZONE).date(), datetime.min.time(), tzinfo=ZONE)
        assert [r["day"] for r in conn.execute("SELECT day FROM point_rollup_stale ORDER BY day")] == [
            local(DAY, 0, 0), recent_day]
        if backend == "timescaledb":
            # The first policy runs materialise cam-2's day, which moves the watermark past cam-1's weeks-old
            # heartbeats, out of the policies' reach: they stay only because the migration materialised them.
            run_refresh_policies(empty_database_url)
            assert _daily(conn, "cam-1") == [("2026-11-01 00:00", 2, 3, 3)]
            assert _hourly(conn, "cam-1") == [("01 03:00", 1, 1, "03:30", "03:30"),
                                              ("01 04:00", 2, 2, "04:30", "04:45")]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_storage_policies_are_a_no_op_on_plain_postgresql(db: psycopg.Connection) -> None:
    said = apply_storage_policies(db, lateness_window=timedelta(days=7), raw_retention=timedelta(days=400),
                                  compress_after=timedelta(days=14))
    assert said == ["plain PostgreSQL: rollups are kept by a trigger; no refresh, compression or retention policy"]


@pytest.mark.parametrize("backend", ["timescaledb"])
def test_rollups_are_continuous_aggregates_with_timescaledb(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn)
        views = {r["view_name"]: r["materialized_only"] for r in conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates")}
        policies = conn.execute("SELECT count(*) AS n FROM timescaledb_information.jobs"
                                " WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchone()["n"]
    assert views == {"heartbeats_hourly": False, "heartbeats_daily": False}
    assert policies == 2


def _policies(db: psycopg.Connection) -> dict[str, dict]:
    return {f"{r['proc_name']} {r['hypertable_name']}": r["config"] for r in db.execute(
        "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs"
        " WHERE hypertable_name IS NOT NULL")}


@pytest.mark.parametrize("backend", ["timescaledb"])
def test_storage_policies_follow_the_settings_on_timescaledb(db: psycopg.Connection) -> None:
    said = apply_storage_policies(db, lateness_window=timedelta(days=3), raw_retention=timedelta(days=30),
                                  compress_after=timedelta(days=6))
    assert said == ["heartbeats_hourly refreshed over the last 5 days, 0:00:00",
                    "heartbeats_daily refreshed over the last 6 days, 0:00:00",
                    "raw heartbeats compressed after 6 days, 0:00:00",
                    "raw heartbeats dropped after 30 days, 0:00:00"]
    policies = _policies(db)
    assert {k: (v.get("start_offset"), v.get("end_offset")) for k, v in policies.items()
            if k.startswith("policy_refresh")} == {
        "policy_refresh_continuous_aggregate heartbeats_hourly": ("5 days", "01:00:00"),
        "policy_refresh_continuous_aggregate heartbeats_daily": ("6 days", "1 day")}
    assert policies["policy_compression heartbeats"]["compress_after"] == "6 days"
    assert policies["policy_retention heartbeats"]["drop_after"] == "30 days"
    with pytest.raises(ValueError, match="must exceed the refresh window"):
        apply_storage_policies(db, lateness_window=timedelta(days=7), raw_retention=timedelta(days=10),
                               compress_after=timedelta(days=14))


@pytest.mark.parametrize("backend", ["timescaledb"])
def test_compressed_raw_chunks_give_the_same_numbers(database_url: str, db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(DAY, *range(22)))                  # 22/24, weeks old: past compress_after
    db.commit()
    with connect(database_url, autocommit=True) as jobs:
        job = jobs.execute("SELECT job_id FROM timescaledb_information.jobs"
                           " WHERE proc_name = 'policy_compression'").fetchone()["job_id"]
        jobs.execute("CALL run_job(%s)", (job,))
    assert db.execute("SELECT count(*) FILTER (WHERE is_compressed) AS n FROM timescaledb_information.chunks"
                      " WHERE hypertable_name = 'heartbeats'").fetchone()["n"] == 1
    db.commit()
    value = sensor_value(db, "17", DAY, DAY + timedelta(days=1), settings=Settings(), now=LONG_AFTER)
    assert (value.numerator, value.denominator, value.evidence[0].buckets_up) == (1, 1, 22)
    assert _daily(db, "cam-a") == [("2026-11-01 00:00", 22, 22, 22)]
