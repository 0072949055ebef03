"""The rollups' contract with their readers: which zone they are bucketed in, and their storage policies.

The rollup relations themselves (`heartbeats_hourly`, `heartbeats_daily`) are created by
`kpi/migrations/001_rollups.sql`: continuous aggregates on TimescaleDB, trigger-maintained tables on
plain PostgreSQL, with the same columns either way. On TimescaleDB a KPI read refreshes the recent part
of its period first (refresh_recent_rollups) so that both give the same numbers at every moment.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import psycopg
from psycopg import errors, pq
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from base.db import timescaledb_in_use

# The refresh policies' windows reach this far past the lateness window (a heartbeat accepted late lands
# inside them); the retention of raw heartbeats must exceed the daily one (see apply_storage_policies).
HOURLY_REFRESH_MARGIN = timedelta(days=2)
DAILY_REFRESH_MARGIN = timedelta(days=3)
# A concurrent refresh of an overlapping window (a policy, another reader) makes ours fail at once;
# we retry until it is done, for at most this long.
REFRESH_WAIT_S = 120.0


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
    hourly_start = lateness_window + HOURLY_REFRESH_MARGIN
    daily_start = lateness_window + DAILY_REFRESH_MARGIN
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


# From the later of the period's start and the policies' reach, up to the running hour / day (never into it:
# a bucket materialised early would hide heartbeats that arrive after it from real-time aggregation), in
# whole local hours / days of the rollups' zone; nothing when the period ends before the policies' reach.
# Up to now rather than to the period's end: every read of a real-time aggregate also aggregates everything
# after its watermark, whatever period it asks for, so a watermark kept close to now keeps reads cheap.
_REFRESH_WINDOWS = """
SELECT greatest(%(start)s, date_trunc('hour', now() - %(hourly_back)s, z.timezone)) AS hourly_from,
       CASE WHEN %(end)s > date_trunc('hour', now() - %(hourly_back)s, z.timezone)
            THEN date_trunc('hour', now(), z.timezone) END AS hourly_to,
       greatest(%(start)s, date_trunc('day', now() - %(daily_back)s, z.timezone)) AS daily_from,
       CASE WHEN %(end)s > date_trunc('day', now() - %(daily_back)s, z.timezone)
            THEN date_trunc('day', now(), z.timezone) END AS daily_to
FROM rollup_config z
"""


def refresh_recent_rollups(conn: psycopg.Connection, start: datetime, end: datetime, *,
                           lateness_window: timedelta) -> None:
    """TimescaleDB: materialise the continuous aggregates over the recent part of [start, end) before a KPI read.

    Real-time aggregation only covers buckets after a continuous aggregate's watermark; a heartbeat that
    arrives late for a bucket already materialised is only in the invalidation log until the next refresh
    (policies: every 15 minutes hourly, every hour daily). Refreshing here, hourly then daily, makes a late
    heartbeat change the KPI as soon as it is stored, as the trigger does on plain PostgreSQL. Only inside
    the policies' windows: older buckets are final (no heartbeat that late is accepted), and a refresh over
    chunks dropped by retention would empty their buckets (drop_chunks records them as invalidated).

    `start` is a local midnight, `end` a local hour. A refresh cannot run in a transaction: an idle
    connection is switched to autocommit for it, one inside a transaction gets a second connection (the
    refresh commits, and the caller's next statement sees it under READ COMMITTED). No-op on plain PostgreSQL,
    and on a read-only session (`citykpi serve`'s API): there the point-rollup refresher of the same process
    refreshes them with its own connection every CITYKPI_POINT_ROLLUP_REFRESH_S, whenever the ingest sink
    has marked a day, so an API read lags a late heartbeat by that interval at most.
    """
    with _outside_transaction(conn) as refresher:
        if not timescaledb_in_use(refresher) or refresher.execute(
                "SELECT current_setting('transaction_read_only') = 'on' AS read_only").fetchone()["read_only"]:
            return
        w = refresher.execute(_REFRESH_WINDOWS, {"start": start, "end": end,
                                                 "hourly_back": lateness_window + HOURLY_REFRESH_MARGIN,
                                                 "daily_back": lateness_window + DAILY_REFRESH_MARGIN}).fetchone()
        for view, a, b in (("heartbeats_hourly", w["hourly_from"], w["hourly_to"]),
                           ("heartbeats_daily", w["daily_from"], w["daily_to"])):
            if b is not None and a < b:
                _refresh(refresher, view, a, b)


@contextmanager
def _outside_transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    if conn.autocommit:
        yield conn
    elif conn.info.transaction_status == pq.TransactionStatus.IDLE:
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.autocommit = False
    else:
        with psycopg.connect(make_conninfo(conn.info.dsn, password=conn.info.password), autocommit=True,
                             row_factory=dict_row) as side:
            yield side


def materialise_history(conn: psycopg.Connection) -> None:
    """TimescaleDB, once, right after the rollups' migration: materialise every ended bucket of the heartbeats
    already stored (the migration cannot: a refresh does not run in a transaction). Otherwise the first
    policy run would move the watermark past them and they would vanish from the rollups, the policies never
    reaching that far back. Needs an autocommit connection; no-op on plain PostgreSQL (the migration fills
    the tables) and on an empty table."""
    if not timescaledb_in_use(conn) or conn.execute("SELECT NOT EXISTS (SELECT 1 FROM heartbeats) AS empty"
                                                    ).fetchone()["empty"]:
        return
    ends = conn.execute("SELECT date_trunc('hour', now(), timezone) AS hour, date_trunc('day', now(), timezone) AS day"
                        " FROM rollup_config").fetchone()
    _refresh(conn, "heartbeats_hourly", None, ends["hour"])
    _refresh(conn, "heartbeats_daily", None, ends["day"])


def _refresh(conn: psycopg.Connection, view: str, start: datetime | None, end: datetime) -> None:
    deadline = time.monotonic() + REFRESH_WAIT_S
    pause = 0.05
    while True:
        try:
            conn.execute("CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)", (view, start, end))
            return
        except errors.LockNotAvailable:
            # "due to a concurrent refresh": a policy or another reader is refreshing an overlapping window.
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
