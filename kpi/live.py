"""Live coverage for Prometheus and the IOC screen, read at scrape time from the rollups' last-seen state.

DESIGN: "a point is covered now if a bound device of the kind sent a healthy heartbeat within 3 × its
heartbeat interval" — the binding's heartbeat_interval_s, else the kind's default from the settings.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg.types.json import Jsonb

from base.settings import Settings
from catalog import Catalog, load_catalog, percent
from kpi.rollups import check_rollup_zone
from kpi.units import points_by_unit
from registry.tree import unit_tree

log = logging.getLogger(__name__)

# Each device bound now, with whether it is up now. The last healthy heartbeat comes from the hourly
# rollup rows that can still hold one inside the device's window (its last few hours, by the primary key),
# never from raw heartbeats.
_DEVICES_NOW = """
WITH bound AS (
    -- "A point, binding or unit is in force ... when it is in force at the bucket's start": here, at now.
    SELECT bd.device_id, bd.point_id, d.kind,
           make_interval(secs => 3 * coalesce(bd.heartbeat_interval_s, (%(defaults)s::jsonb ->> d.kind)::int))
               AS window
    FROM bindings bd
    JOIN devices d ON d.device_id = bd.device_id
    WHERE bd.valid_from <= %(now)s AND (bd.valid_to IS NULL OR bd.valid_to > %(now)s)
)
SELECT b.device_id, b.point_id, b.kind, last.healthy_at,
       -- "sent a healthy heartbeat within 3 × its heartbeat interval"
       coalesce(last.healthy_at >= %(now)s - b.window, false) AS up
FROM bound b
LEFT JOIN LATERAL (
    SELECT max(h.last_healthy) AS healthy_at
    FROM heartbeats_hourly h
    WHERE h.device_id = b.device_id AND h.bucket > %(now)s - b.window - interval '1 hour' AND h.healthy_count > 0
) last ON true
"""
# The bound devices silent the longest: each one's last heartbeat, healthy or not (a device reporting a fault is
# talking), is the last_seen of its latest hourly rollup row, one step back along the primary key; never raw
# heartbeats. A device bound now that never sent anything has been silent since its binding began. A device bound
# to two points at once is one device, one series.
_SILENT_NOW = """
WITH bound AS (
    SELECT bd.device_id, d.kind, string_agg(bd.point_id, ',' ORDER BY bd.point_id) AS point_id,
           min(bd.valid_from) AS bound_since
    FROM bindings bd
    JOIN devices d ON d.device_id = bd.device_id
    WHERE bd.valid_from <= %(now)s AND (bd.valid_to IS NULL OR bd.valid_to > %(now)s)
    GROUP BY bd.device_id, d.kind
)
SELECT b.device_id, b.kind, b.point_id,
       -- A clock a little ahead (within the accepted tolerance) is not silence below zero.
       greatest(extract(epoch FROM %(now)s - coalesce(last.seen, b.bound_since)), 0)::float8 AS silent_s
FROM bound b
LEFT JOIN LATERAL (
    SELECT h.last_seen AS seen
    FROM heartbeats_hourly h
    WHERE h.device_id = b.device_id
    ORDER BY h.bucket DESC
    LIMIT 1
) last ON true
ORDER BY silent_s DESC, b.device_id
LIMIT %(limit)s
"""
_POINTS_NOW = """
SELECT DISTINCT ON (point_id) point_id, categories, admin_unit
FROM key_points
WHERE valid_from <= %(now)s AND (valid_to IS NULL OR valid_to > %(now)s)
ORDER BY point_id, valid_from DESC
"""


@dataclass(frozen=True)
class LivePoint:
    point_id: str
    admin_unit: str | None
    covered: bool


@dataclass(frozen=True)
class LiveIndicator:
    code: str
    name_vi: str
    device_kind: str
    points: list[LivePoint]
    by_unit: dict[str, list[LivePoint]]

    @property
    def covered(self) -> int:
        return sum(p.covered for p in self.points)


@dataclass(frozen=True)
class LiveCoverage:
    at: datetime
    indicators: list[LiveIndicator]
    devices: dict[str, dict[str, int]]  # kind → {"up": n, "down": n}, devices bound now

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "indicators": [{
                "code": i.code, "name_vi": i.name_vi, "device_kind": i.device_kind, "points": len(i.points),
                "covered": i.covered, "value": float(percent(i.covered, len(i.points))) if i.points else None,
                "by_admin_unit": {code: {"points": len(ps), "covered": sum(p.covered for p in ps)}
                                  for code, ps in i.by_unit.items()},
            } for i in self.indicators],
            "devices": self.devices,
        }


def live_coverage(conn: psycopg.Connection, *, settings: Settings, catalog: Catalog | None = None,
                  now: datetime | None = None) -> LiveCoverage:
    catalog = catalog or load_catalog()
    now = now or datetime.now(UTC)
    check_rollup_zone(conn, settings.timezone)
    devices = conn.execute(_DEVICES_NOW, {"now": now, "defaults": Jsonb(settings.heartbeat_interval_s)}).fetchall()
    points = conn.execute(_POINTS_NOW, {"now": now}).fetchall()
    tree = unit_tree(conn, now)

    up_by_point_kind: set[tuple[str, str]] = {(d["point_id"], d["kind"]) for d in devices if d["up"]}
    indicators = []
    for indicator in catalog.sensor_indicators():
        spec = indicator.sensor
        # "a point is covered now if a bound device of the kind ..." — the registry's kind.
        live = [LivePoint(p["point_id"], p["admin_unit"], (p["point_id"], spec.device_kind) in up_by_point_kind)
                for p in points if spec.category in p["categories"]]
        indicators.append(LiveIndicator(indicator.code, indicator.name_vi, spec.device_kind, live,
                                        points_by_unit(live, tree)))
    counts: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for d in devices:
        if d["device_id"] in seen:  # a device bound to two points at once is one device
            continue
        seen.add(d["device_id"])
        counts.setdefault(d["kind"], {"up": 0, "down": 0})["up" if d["up"] else "down"] += 1
    return LiveCoverage(now, indicators, counts)


@dataclass(frozen=True)
class SilentDevice:
    device_id: str
    kind: str
    point_id: str  # the points it is bound to now, comma-separated when several
    silent_s: float


def silent_devices(conn: psycopg.Connection, *, now: datetime, limit: int) -> list[SilentDevice]:
    """The `limit` devices bound at `now` whose last heartbeat is oldest, longest silence first."""
    rows = conn.execute(_SILENT_NOW, {"now": now, "limit": limit}).fetchall()
    return [SilentDevice(r["device_id"], r["kind"], r["point_id"], r["silent_s"]) for r in rows]


class LiveCoverageCollector(Collector):
    """Prometheus gauges computed at scrape time; a scrape that cannot read the database reports that."""

    def __init__(self, connection: Callable[[], AbstractContextManager[psycopg.Connection]], settings: Settings,
                 *, catalog: Catalog | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self._connection = connection
        self._settings = settings
        self._catalog = catalog or load_catalog()
        self._clock = clock or (lambda: datetime.now(UTC))

    def describe(self) -> list:
        # Registering must not read the database; the families are only known at scrape time.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("citykpi_live_read_ok", "1 when the last scrape read live coverage from the database")
        try:
            now = self._clock()
            with self._connection() as conn:
                live = live_coverage(conn, settings=self._settings, catalog=self._catalog, now=now)
                silent = silent_devices(conn, now=now, limit=self._settings.live_silent_devices)
        except Exception:  # noqa: BLE001 - a scrape reports failure as a metric, never as an exception
            log.exception("live coverage could not be read")
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from _families(live)
        yield _silent_family(silent)


def _families(live: LiveCoverage) -> Iterator[GaugeMetricFamily]:
    points = GaugeMetricFamily("citykpi_live_points", "Key points of the indicator's category in force now",
                               labels=["indicator"])
    covered = GaugeMetricFamily("citykpi_live_points_covered", "Of those, points covered now",
                                labels=["indicator"])
    ratio = GaugeMetricFamily("citykpi_live_coverage_ratio", "Covered / in force now (absent with no points)",
                              labels=["indicator"])
    unit_points = GaugeMetricFamily("citykpi_live_unit_points", "Points in force now in a unit and its descendants",
                                    labels=["indicator", "admin_unit"])
    unit_covered = GaugeMetricFamily("citykpi_live_unit_points_covered", "Of those, points covered now",
                                     labels=["indicator", "admin_unit"])
    unit_ratio = GaugeMetricFamily("citykpi_live_unit_coverage_ratio", "Covered / in force now, per unit",
                                   labels=["indicator", "admin_unit"])
    for i in live.indicators:
        points.add_metric([i.code], len(i.points))
        covered.add_metric([i.code], i.covered)
        if i.points:
            ratio.add_metric([i.code], i.covered / len(i.points))
        for code, ps in i.by_unit.items():
            n_covered = sum(p.covered for p in ps)
            unit_points.add_metric([i.code, code], len(ps))
            unit_covered.add_metric([i.code, code], n_covered)
            if ps:
                unit_ratio.add_metric([i.code, code], n_covered / len(ps))
    devices = GaugeMetricFamily("citykpi_live_devices", "Devices bound now, up (healthy heartbeat within 3 × "
                                "interval) or down", labels=["kind", "state"])
    for kind, states in sorted(live.devices.items()):
        for state in ("up", "down"):
            devices.add_metric([kind, state], states[state])
    yield from (points, covered, ratio, unit_points, unit_covered, unit_ratio, devices)


def _silent_family(silent: list[SilentDevice]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "citykpi_live_device_silent_seconds",
        "Seconds since the last heartbeat (healthy or not) of the bound devices silent the longest, as many as "
        "CITYKPI_LIVE_SILENT_DEVICES; a device bound now that never sent one counts from the start of its binding",
        labels=["device_id", "kind", "point_id"])
    for d in silent:
        family.add_metric([d.device_id, d.kind, d.point_id], d.silent_s)
    return family
