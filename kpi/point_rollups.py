"""Keeps the point rollups (`point_daily`, `point_monthly`, `point_device_monthly`) in step with heartbeats
and the registry.

The tables and the staleness marks are defined in kpi/migrations/030_point_rollups.sql and
050_device_months.sql. Readers never depend on this having run: a stale day, or a month whose device hours
are not done, is computed from device_up_rows instead (kpi/coverage.py), so refreshing only moves work from
the reads to here.
"""

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from psycopg import sql

from base.time import local_midnight
from catalog import Catalog
from kpi.availability import extend_open_availability
from kpi.coverage import BOUND, DEVICE_DAYS, POINT_DAYS, POINTS, month_days
from kpi.rollups import refresh_recent_rollups

log = logging.getLogger(__name__)

# Any constant; only one refresher at a time may recompute months, or two of them could each recompute a
# month without the other's days and the last to commit would win.
_REFRESH_LOCK = 0x706F696E74

# What `refresh` reports progress as, named for the terminal (officials' and operators' language).
REFRESH_STAGE_LABELS = {"days": "Tổng hợp theo điểm (ngày)", "device months": "Giờ hoạt động thiết bị (tháng)"}

# A point-day's bits as a read computes a stale day (kpi/coverage.py: the same CTEs, one indicator at a time),
# for the points of the category in force in [first, last_end): the spans clipped to the days refreshed
# change no bit of those days.
_COMPUTE_DAYS = sql.Composed([sql.SQL(q) for q in (POINTS, BOUND, POINT_DAYS)] + [sql.SQL("""
INSERT INTO point_daily (category, kind, day, point_id, up_mask, up_hours)
SELECT %(category)s, %(kind)s, day, point_id, up, bit_count(up::bit(64))
FROM point_days
WHERE up <> 0
""")])

_MONTHS_OF_DAYS = "SELECT array_agg(DISTINCT kpi_local_month(d)) AS months FROM unnest(%s::timestamptz[]) AS d"

_RECOMPUTE_MONTHS = """
WITH months AS (
    SELECT unnest(%(months)s::timestamptz[]) AS month
)
INSERT INTO point_monthly (category, kind, month, point_id, up_hours)
SELECT pd.category, pd.kind, m.month, pd.point_id, sum(pd.up_hours)
FROM months m
JOIN point_daily pd ON pd.day >= m.month AND pd.day < kpi_next_local_month(m.month)
GROUP BY 1, 2, 3, 4
"""


# Each device's hours at each point over one closed month, per device-day as a read computes them.
_COMPUTE_DEVICE_MONTH = sql.Composed([sql.SQL(q) for q in (POINTS, BOUND, DEVICE_DAYS)] + [sql.SQL("""
INSERT INTO point_device_monthly (category, kind, month, point_id, device_id, up_hours, availability_hours)
SELECT %(category)s, %(kind)s, %(start)s, point_id, device_id, up_hours, availability_hours
FROM device_days
WHERE up_hours > 0
""")])


@dataclass(frozen=True)
class RefreshResult:
    days: int
    months: int
    point_days: int
    skipped_busy: bool = False
    device_months: int = 0


def stale_days(conn: psycopg.Connection) -> list[datetime]:
    return [r["day"] for r in conn.execute("SELECT day FROM point_rollup_stale ORDER BY day")]


def _pairs(catalog: Catalog) -> list[tuple[str, str]]:
    return [(i.sensor.category, i.sensor.device_kind) for i in catalog.sensor_indicators()]


def _by_month(marks: list[dict]) -> Iterable[list[dict]]:
    """A month per transaction: its point_monthly rows are recomputed once, after all its days."""
    for _, chunk in itertools.groupby(marks, key=lambda m: m["month"]):
        yield list(chunk)


def refresh(conn: psycopg.Connection, catalog: Catalog, *, lateness_window: timedelta = timedelta(days=7),
            progress: Callable[[str, int, int], None] | None = None, now: datetime | None = None) -> RefreshResult:
    """Recompute every stale point-day, and the months holding them, for the catalog's sensor indicators;
    then the device hours of each month closed for longer than the lateness window and not done yet.

    The stale days of one month are one transaction: its point_daily rows, its months' point_monthly rows,
    the removal of their device hours' done mark, and the clearing of the marks it read (only those whose
    generation has not moved since). A month of device hours is one transaction too. Returns at once, with
    skipped_busy, when another refresher holds the lock. On a connection outside autocommit the chunks are
    savepoints and the caller commits.
    """
    now = now or datetime.now(UTC)
    # Open online states first: the hours they reach mark their days, which this refresh then redoes.
    extend_open_availability(conn, now)
    marks = conn.execute("SELECT day, generation, kpi_local_month(day) AS month FROM point_rollup_stale"
                         " ORDER BY day").fetchall()
    days_result = _refresh_stale_days(conn, catalog, marks, lateness_window, progress) if marks \
        else RefreshResult(0, 0, 0)
    if days_result.skipped_busy:
        return days_result
    device_months = _refresh_device_months(conn, catalog, closed_before=now - lateness_window, progress=progress)
    if device_months is None:
        return RefreshResult(days_result.days, days_result.months, days_result.point_days, skipped_busy=True)
    return RefreshResult(days_result.days, days_result.months, days_result.point_days, device_months=device_months)


def _refresh_stale_days(conn: psycopg.Connection, catalog: Catalog, marks: list[dict], lateness_window: timedelta,
                        progress: Callable[[str, int, int], None] | None) -> RefreshResult:
    pairs = _pairs(catalog)
    # TimescaleDB: a late heartbeat below the continuous aggregates' watermark is not in heartbeats_daily
    # until they are refreshed (kpi/rollups.py); no-op on plain PostgreSQL, where the trigger keeps them exact.
    # After reading the marks is enough: a write committed since has moved its mark's generation.
    refresh_recent_rollups(conn, marks[0]["day"], datetime.now(UTC), lateness_window=lateness_window)
    done_days = done_months = point_days = 0
    for chunk in _by_month(marks):
        with conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_REFRESH_LOCK,)).fetchone()["got"]:
                return RefreshResult(done_days, done_months, point_days, skipped_busy=True)
            days = [m["day"] for m in chunk]
            first, last = days[0], days[-1]
            last_end = conn.execute("SELECT kpi_local_day(%s::timestamptz + interval '25 hours') AS e",
                                    (last,)).fetchone()["e"]
            conn.execute("DELETE FROM point_daily WHERE day = ANY (%s)", (days,))
            for category, kind in pairs:
                point_days += conn.execute(_COMPUTE_DAYS, {"category": category, "kind": kind, "computed_days": days,
                                                           "start": first, "end": last_end}).rowcount
            months = conn.execute(_MONTHS_OF_DAYS, (days,)).fetchone()["months"]
            conn.execute("DELETE FROM point_monthly WHERE month = ANY (%s)", (months,))
            conn.execute(_RECOMPUTE_MONTHS, {"months": months})
            # Their device hours may be out of date now: read per device-day until recomputed.
            conn.execute("DELETE FROM point_device_month_done WHERE month = ANY (%s)", (months,))
            # A mark whose generation moved was re-marked by a write this transaction may not have seen.
            conn.execute("DELETE FROM point_rollup_stale s USING unnest(%s::timestamptz[], %s::bigint[]) AS m(day, g)"
                         " WHERE s.day = m.day AND s.generation = m.g",
                         (days, [m["generation"] for m in chunk]))
            done_days += len(days)
            done_months += len(months)
        if progress:
            progress("days", done_days, len(marks))
    return RefreshResult(done_days, done_months, point_days)


def _refresh_device_months(conn: psycopg.Connection, catalog: Catalog, *, closed_before: datetime,
                           progress: Callable[[str, int, int], None] | None) -> int | None:
    """Compute the device hours of every month that ended before `closed_before`, lies within the days ever
    marked, has no stale day and is not done. Returns how many, or None when another refresher holds the lock."""
    zone = ZoneInfo(conn.execute("SELECT timezone FROM rollup_config").fetchone()["timezone"])
    extent = conn.execute("SELECT first_day, last_day FROM point_rollup_extent").fetchone()
    if extent["first_day"] is None:
        return 0
    done = {r["month"] for r in conn.execute("SELECT month FROM point_device_month_done")}
    stale = {r["month"] for r in conn.execute("SELECT DISTINCT kpi_local_month(day) AS month FROM point_rollup_stale")}
    pending = [m for m in _months_between(extent["first_day"], extent["last_day"], zone)
               if m not in done and m not in stale and _month_end(m, zone) <= closed_before]
    pairs = _pairs(catalog)
    computed = 0
    for month in pending:
        days = month_days(month, zone)
        with conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_REFRESH_LOCK,)).fetchone()["got"]:
                return None
            # A day of the month marked since the set above was read: wait for its refresh.
            if conn.execute("SELECT 1 FROM point_rollup_stale WHERE day = ANY (%s)", (days,)).fetchone():
                continue
            conn.execute("DELETE FROM point_device_monthly WHERE month = %s", (month,))
            for category, kind in pairs:
                conn.execute(_COMPUTE_DEVICE_MONTH, {"category": category, "kind": kind, "start": month,
                                                     "end": _month_end(month, zone), "device_days": days})
            conn.execute("INSERT INTO point_device_month_done (month) VALUES (%s)", (month,))
        computed += 1
        if progress:
            progress("device months", computed, len(pending))
    return computed


def _month_end(month: datetime, zone: ZoneInfo) -> datetime:
    return local_midnight((month.astimezone(zone).date() + timedelta(days=32)).replace(day=1), zone)


def _months_between(first_day: datetime, last_day: datetime, zone: ZoneInfo) -> list[datetime]:
    """The local months from the one holding `first_day` to the one holding `last_day`, as local midnights."""
    month = first_day.astimezone(zone).date().replace(day=1)
    last = last_day.astimezone(zone).date().replace(day=1)
    months = []
    while month <= last:
        months.append(local_midnight(month, zone))
        month = (month + timedelta(days=32)).replace(day=1)
    return months


class PointRollupRefresher:
    """Refreshes the point rollups every `interval_s` on a thread of `citykpi serve`, with its own connection.

    A failed refresh is logged and retried at the next tick: readers stay exact meanwhile, only slower.
    """

    def __init__(self, database_url: str, catalog: Catalog, interval_s: float, *,
                 lateness_window: timedelta = timedelta(days=7)) -> None:
        self._database_url = database_url
        self._lateness_window = lateness_window
        self._catalog = catalog
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Lifespans that started us and have not stopped us yet: they may overlap (a test client inside
        # another), and the thread must end with the last of them, not be orphaned by the first.
        self._holders = 0
        self._holders_lock = threading.Lock()
        self.refreshes = 0
        self.failures = 0
        self.last_seconds: float | None = None
        self.stale_days: int | None = None

    def start(self) -> None:
        with self._holders_lock:
            self._holders += 1
            if self._holders > 1:
                return
            # A new thread per first start: an app's lifespan may run more than once (tests drive it repeatedly).
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="point-rollup-refresher",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._holders_lock:
            self._holders = max(0, self._holders - 1)
            if self._holders > 0 or self._thread is None:
                return
            self._stop.set()
            thread = self._thread
        thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        from base.db import connect

        while not stop.is_set():
            started = time.monotonic()
            try:
                with connect(self._database_url, autocommit=True) as conn:
                    refresh(conn, self._catalog, lateness_window=self._lateness_window)
                    self.stale_days = conn.execute("SELECT count(*) AS n FROM point_rollup_stale").fetchone()["n"]
                self.refreshes += 1
                self.last_seconds = time.monotonic() - started
            except psycopg.Error as exc:
                self.failures += 1
                log.warning("point rollup refresh failed, retrying in %.0f s: %s", self._interval_s, exc)
            stop.wait(self._interval_s)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Prometheus: how far behind the point rollups are, and whether refreshing works."""
        stale = GaugeMetricFamily("citykpi_point_rollup_stale_days",
                                  "days whose point rollups wait for a refresh (computed per device meanwhile)")
        if self.stale_days is not None:
            stale.add_metric([], self.stale_days)
        yield stale
        seconds = GaugeMetricFamily("citykpi_point_rollup_refresh_seconds", "duration of the last refresh")
        if self.last_seconds is not None:
            seconds.add_metric([], self.last_seconds)
        yield seconds
        yield CounterMetricFamily("citykpi_point_rollup_refreshes", "refreshes completed", value=self.refreshes)
        yield CounterMetricFamily("citykpi_point_rollup_refresh_failures", "refreshes failed", value=self.failures)
