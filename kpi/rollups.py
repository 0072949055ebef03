"""The rollups' contract with their readers: which zone they are bucketed in, and their storage policies.

The rollup relations themselves (`heartbeats_hourly`, `heartbeats_daily`) are created by
`kpi/migrations/001_rollups.sql`: continuous aggregates on TimescaleDB, trigger-maintained tables on
plain PostgreSQL, with the same columns either way.
"""

from datetime import timedelta

import psycopg

from citykpi.db import timescaledb_in_use


class RollupZoneMismatch(RuntimeError):
    """The rollups were bucketed in another time zone than the one configured: every hour would be wrong."""


def rollup_zone(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT timezone FROM rollup_config").fetchone()["timezone"]


def check_rollup_zone(conn: psycopg.Connection, zone: str) -> None:
    """Raise RollupZoneMismatch unless the rollups were built in `zone` (CITYKPI_TIMEZONE)."""
    built_in = rollup_zone(conn)
    if built_in != zone:
        raise RollupZoneMismatch(
            f"the rollups are bucketed in {built_in}, but CITYKPI_TIMEZONE is {zone}; set CITYKPI_TIMEZONE="
            f"{built_in}, or migrate a new database with the zone you want")


def apply_storage_policies(conn: psycopg.Connection, *, lateness_window: timedelta,
                           raw_retention: timedelta | None, compress_after: timedelta) -> list[str]:
    """Re-apply the TimescaleDB refresh, compression and retention policies from the settings.

    Returns what was set, one line each; on plain PostgreSQL returns a single line saying there is nothing
    to set (the trigger keeps the rollups exact and nothing is dropped). Raises ValueError when the
    retention would drop raw rows that a refresh window still reads.
    """
    if not timescaledb_in_use(conn):
        return ["plain PostgreSQL: rollups are kept by a trigger; no refresh, compression or retention policy"]
    hourly_start = lateness_window + timedelta(days=2)
    daily_start = lateness_window + timedelta(days=3)
    if raw_retention is not None and raw_retention <= daily_start:
        raise ValueError(f"raw retention {raw_retention} must exceed the refresh window {daily_start}: a refresh "
                         "over dropped raw rows would empty their buckets")
    with conn.transaction():
        for view, start, end, every in (("heartbeats_hourly", hourly_start, timedelta(hours=1), timedelta(minutes=15)),
                                        ("heartbeats_daily", daily_start, timedelta(days=1), timedelta(hours=1))):
            conn.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", (view,))
            conn.execute("SELECT add_continuous_aggregate_policy(%s, start_offset => %s, end_offset => %s,"
                         " schedule_interval => %s)", (view, start, end, every))
        conn.execute("SELECT remove_compression_policy('heartbeats', if_exists => true)")
        conn.execute("SELECT add_compression_policy('heartbeats', compress_after => %s)", (compress_after,))
        conn.execute("SELECT remove_retention_policy('heartbeats', if_exists => true)")
        if raw_retention is not None:
            conn.execute("SELECT add_retention_policy('heartbeats', drop_after => %s)", (raw_retention,))
    return [f"heartbeats_hourly refreshed over the last {hourly_start}",
            f"heartbeats_daily refreshed over the last {daily_start}",
            f"raw heartbeats compressed after {compress_after}",
            f"raw heartbeats dropped after {raw_retention}" if raw_retention else "raw heartbeats kept forever"]
