"""Keeps the point rollups (`point_daily`, `point_monthly`) in step with heartbeats and the registry.

The tables and the staleness marks are defined in kpi/migrations/030_point_rollups.sql. Readers never
depend on this having run: a stale day is computed from heartbeats_daily instead (kpi/coverage.py), so
refreshing only moves work from the reads to here.
"""

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kpi.catalog import Catalog
from kpi.rollups import refresh_recent_rollups

log = logging.getLogger(__name__)

# Any constant; only one refresher at a time may recompute months, or two of them could each recompute a
# month without the other's days and the last to commit would win.
_REFRESH_LOCK = 0x706F696E74

# A point-day's bits, as kpi/coverage.py's full query computes them for a day inside a period: the union of
# the up hours of the devices of the kind bound to the point, each cut to the buckets in which the binding
# and a version of the point in the category are both in force. Spans are clipped to the days refreshed,
# which changes no bit of those days.
_COMPUTE_DAYS = """
WITH pairs AS (
    SELECT * FROM unnest(%(categories)s::text[], %(kinds)s::text[]) AS p(category, kind)
),
versions AS (
    SELECT p.category, p.kind, kp.point_id,
           greatest(kp.valid_from, %(first)s) AS s, least(coalesce(kp.valid_to, 'infinity'), %(last_end)s) AS e
    FROM key_points kp
    JOIN pairs p ON p.category = ANY (kp.categories)
    WHERE kp.valid_from < %(last_end)s AND (kp.valid_to IS NULL OR kp.valid_to > %(first)s)
),
spans AS (
    SELECT category, kind, point_id, min(s) AS s, max(e) AS e
    FROM (SELECT category, kind, point_id, s, e,
                 sum(CASE WHEN earlier_e >= s THEN 0 ELSE 1 END)
                     OVER (PARTITION BY category, point_id ORDER BY s, e) AS island
          FROM (SELECT category, kind, point_id, s, e,
                       max(e) OVER (PARTITION BY category, point_id ORDER BY s, e
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_e
                FROM versions) ordered) islands
    GROUP BY category, kind, point_id, island
),
bound AS MATERIALIZED (
    SELECT sp.category, sp.kind, sp.point_id, bd.device_id, greatest(bd.valid_from, sp.s) AS s,
           least(coalesce(bd.valid_to, 'infinity'), sp.e) AS e
    FROM spans sp
    JOIN bindings bd ON bd.point_id = sp.point_id AND bd.valid_from < sp.e
                    AND (bd.valid_to IS NULL OR bd.valid_to > sp.s)
    JOIN devices d ON d.device_id = bd.device_id AND d.kind = sp.kind
),
point_days AS (
    SELECT b.category, b.kind, h.day, b.point_id, bit_or(h.up_mask & kpi_hour_mask(h.day, b.s, b.e)) AS up_mask
    FROM bound b
    JOIN heartbeats_daily h ON h.device_id = b.device_id AND h.day = ANY (%(days)s)
                           AND h.day > b.s - interval '25 hours' AND h.day < b.e
    GROUP BY 1, 2, 3, 4
)
INSERT INTO point_daily (category, kind, day, point_id, up_mask, up_hours)
SELECT category, kind, day, point_id, up_mask, bit_count(up_mask::bit(64))
FROM point_days
WHERE up_mask <> 0
"""

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


@dataclass(frozen=True)
class RefreshResult:
    days: int
    months: int
    point_days: int
    skipped_busy: bool = False


def stale_days(conn: psycopg.Connection) -> list[datetime]:
    return [r["day"] for r in conn.execute("SELECT day FROM point_rollup_stale ORDER BY day")]


def _pairs(catalog: Catalog) -> tuple[list[str], list[str]]:
    specs = [i.sensor for i in catalog.sensor_indicators()]
    return [s.category for s in specs], [s.device_kind for s in specs]


def _by_month(marks: list[dict]) -> Iterable[list[dict]]:
    """A month per transaction: its point_monthly rows are recomputed once, after all its days."""
    for _, chunk in itertools.groupby(marks, key=lambda m: m["month"]):
        yield list(chunk)


def refresh(conn: psycopg.Connection, catalog: Catalog, *, lateness_window: timedelta = timedelta(days=7),
            progress: Callable[[int, int], None] | None = None) -> RefreshResult:
    """Recompute every stale point-day, and the months holding them, for the catalog's sensor indicators.

    The stale days of one month are one transaction: its point_daily rows, its months' point_monthly rows, and the
    clearing of the marks it read (only those whose generation has not moved since). Returns at once,
    with skipped_busy, when another refresher holds the lock. On a connection outside autocommit the
    chunks are savepoints and the caller commits.
    """
    categories, kinds = _pairs(catalog)
    first_stale = conn.execute("SELECT min(day) AS day FROM point_rollup_stale").fetchone()["day"]
    if first_stale is None:
        return RefreshResult(0, 0, 0)
    # TimescaleDB: a late heartbeat below the continuous aggregates' watermark is not in heartbeats_daily
    # until they are refreshed (kpi/rollups.py); no-op on plain PostgreSQL, where the trigger keeps them exact.
    refresh_recent_rollups(conn, first_stale, datetime.now(UTC), lateness_window=lateness_window)
    marks = conn.execute("SELECT day, generation, kpi_local_month(day) AS month FROM point_rollup_stale"
                         " ORDER BY day").fetchall()
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
            point_days += conn.execute(_COMPUTE_DAYS, {"categories": categories, "kinds": kinds, "days": days,
                                                       "first": first, "last_end": last_end}).rowcount
            months = conn.execute(_MONTHS_OF_DAYS, (days,)).fetchone()["months"]
            conn.execute("DELETE FROM point_monthly WHERE month = ANY (%s)", (months,))
            conn.execute(_RECOMPUTE_MONTHS, {"months": months})
            # A mark whose generation moved was re-marked by a write this transaction may not have seen.
            conn.execute("DELETE FROM point_rollup_stale s USING unnest(%s::timestamptz[], %s::bigint[]) AS m(day, g)"
                         " WHERE s.day = m.day AND s.generation = m.g",
                         (days, [m["generation"] for m in chunk]))
            done_days += len(days)
            done_months += len(months)
        if progress:
            progress(done_days, len(marks))
    return RefreshResult(done_days, done_months, point_days)


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
        self.refreshes = 0
        self.failures = 0
        self.last_seconds: float | None = None
        self.stale_days: int | None = None

    def start(self) -> None:
        # A new thread per start: an app's lifespan may run more than once (tests drive it repeatedly).
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="point-rollup-refresher",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, stop: threading.Event) -> None:
        from citykpi.db import connect

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
