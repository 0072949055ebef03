"""Hand-built registries and heartbeats for the KPI tests, written with plain SQL as an importer would leave them."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from base.db import timescaledb_in_use

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SINCE = datetime(2026, 1, 1, tzinfo=ZONE)


def local(day: date, hour: int, minute: int = 30) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def hours(day: date, *hours_of_day: int) -> list[datetime]:
    return [local(day, h) for h in hours_of_day]


def every_hour(first_day: date, days: int) -> list[datetime]:
    return [local(first_day + timedelta(days=d), h) for d in range(days) for h in range(24)]


def unit(db: psycopg.Connection, code: str, parent: str | None, level: str, *, valid_from: datetime | None = None,
         valid_to: datetime | None = None, successors: tuple[str, ...] = (), name: str | None = None) -> None:
    db.execute("INSERT INTO admin_units (code, name, parent_code, level, valid_from, valid_to, successor_codes)"
               " VALUES (%s, %s, %s, %s, coalesce(%s, '-infinity'::timestamptz), %s, %s)",
               (code, name or f"Đơn vị {code}", parent, level, valid_from, valid_to, list(successors)))


def point(db: psycopg.Connection, point_id: str, categories: list[str], *, admin_unit: str = "540",
          valid_from: datetime = SINCE, valid_to: datetime | None = None, name: str | None = None) -> None:
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to)"
               " VALUES (%s, %s, %s, %s, 13.77, 109.22, %s, %s)",
               (point_id, name or f"Điểm {point_id}", categories, admin_unit, valid_from, valid_to))


def device(db: psycopg.Connection, device_id: str, point_id: str, kind: str = "cctv", *,
           valid_from: datetime = SINCE, valid_to: datetime | None = None, interval_s: int | None = None) -> None:
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s) ON CONFLICT DO NOTHING", (device_id, kind))
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from, valid_to, heartbeat_interval_s)"
               " VALUES (%s, %s, %s, %s, %s)", (device_id, point_id, valid_from, valid_to, interval_s))


def beats(db: psycopg.Connection, device_id: str, times: list[datetime], *, healthy: bool = True,
          kind: str = "cctv") -> None:
    """One INSERT statement for all of them, as the ingest sink does per batch."""
    if not times:
        return
    db.execute(
        "INSERT INTO heartbeats (device_id, ts, kind, healthy, status, source, received_at)"
        " SELECT %s, ts, %s, %s, %s, 'test', ts FROM unnest(%s::timestamptz[]) AS ts"
        " ON CONFLICT (device_id, ts) DO NOTHING",
        (device_id, kind, healthy, "ok" if healthy else "fault", times))
    mark_written_days(db, times)


def mark_written_days(db: psycopg.Connection, times: list[datetime]) -> None:
    """TimescaleDB: no trigger sees a hypertable statement's rows, so a writer other than the ingest sink
    marks the days it wrote for the point rollups (once their migration has run)."""
    if timescaledb_in_use(db) and db.execute(
            "SELECT to_regprocedure('kpi_mark_stale_days(timestamptz[])') IS NOT NULL AS ok").fetchone()["ok"]:
        db.execute("SELECT kpi_mark_stale_days(ARRAY(SELECT DISTINCT kpi_local_day(t)"
                   " FROM unnest(%s::timestamptz[]) AS t))", (times,))


def _summary(value) -> tuple:
    return (value.numerator, value.denominator, value.value, value.status,
            [(e.point_id, e.admin_unit, e.buckets_up, e.buckets_in_force, e.covered) for e in value.evidence])


def _device_hours(value) -> list:
    return [(e.point_id, sorted(e.device_up_hours.items()), sorted(e.device_online_only_hours.items()))
            for e in value.evidence]


def per_device_day(db: psycopg.Connection, read):
    """`read()` with every day marked stale and no month of device hours done, so that everything is computed
    per device-day from device_up_rows; rolled back after."""
    db.commit()
    db.execute("SELECT kpi_mark_stale_days(ARRAY(SELECT day FROM heartbeats_daily"
               " UNION SELECT day FROM availability_daily))")
    db.execute("DELETE FROM point_device_month_done")
    try:
        return read()
    finally:
        db.rollback()


def value_every_way(db: psycopg.Connection, code: str, period_from: date, period_to: date, *, now: datetime,
                    admin_unit: str | None = None, settings=None):
    """The indicator computed per device-day, from the point rollups as they are (stale days computed live),
    and after a refresh at `now` (which also stores the device hours of closed months): all must agree, each
    device's hours included. Returns the first."""
    from base.settings import Settings
    from catalog import load_catalog
    from kpi.indicators import sensor_value
    from kpi.point_rollups import refresh

    settings = settings or Settings()
    db.commit()

    def read(devices: bool):
        return sensor_value(db, code, period_from, period_to, settings=settings, now=now, admin_unit=admin_unit,
                            devices=devices)

    full = per_device_day(db, lambda: read(True))
    as_they_are, from_stale = read(True), read(False)
    refresh(db, load_catalog(), now=now)
    db.commit()
    assert db.execute("SELECT count(*) AS n FROM point_rollup_stale").fetchone()["n"] == 0
    from_rollups, refreshed = read(False), read(True)
    assert _summary(from_stale) == _summary(full), "stale days computed live disagree with the full query"
    assert _summary(from_rollups) == _summary(full), "point rollups disagree with the full query"
    assert _summary(refreshed) == _summary(full), "evidence after a refresh disagrees with the full query"
    assert _device_hours(as_they_are) == _device_hours(full), "device hours before a refresh disagree"
    assert _device_hours(refreshed) == _device_hours(full), "device hours from the monthly rollups disagree"
    return full


def availability(db: psycopg.Connection, device_id: str, changes: list[tuple[datetime, bool]], *,
                 retained: bool = False) -> None:
    """Online (True) / offline (False) state changes, in one INSERT statement as the ingest sink writes them."""
    db.execute("INSERT INTO availability_events (device_id, ts, online, retained, source, origin, received_at)"
               " SELECT %s, c.ts, c.online, %s, 'test', 'test', c.ts FROM unnest(%s::timestamptz[], %s::boolean[])"
               " AS c(ts, online) ON CONFLICT (device_id, ts) DO NOTHING",
               (device_id, retained, [c[0] for c in changes], [c[1] for c in changes]))


def materialise(database_url: str, start: datetime, end: datetime) -> None:
    """TimescaleDB: refresh both continuous aggregates over [start, end) (local midnights), as the refresh
    policies did while those days were recent: their buckets are then read from the materialisation."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for view in ("heartbeats_hourly", "heartbeats_daily"):
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", (view, start, end))


def run_refresh_policies(database_url: str) -> None:
    """TimescaleDB: run the refresh policies now, hourly then daily, as the job scheduler would."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        jobs = conn.execute("SELECT job_id FROM timescaledb_information.jobs"
                            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
                            " ORDER BY hypertable_name = 'heartbeats_daily'").fetchall()
        assert len(jobs) == 2, jobs
        for (job_id,) in jobs:
            conn.execute("CALL run_job(%s)", (job_id,))
