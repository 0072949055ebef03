"""Sensor-driven indicators: the share of key points whose devices were up often enough over a period.

Computed from the rollups (`heartbeats_daily.up_mask`, the local day's up hours of `heartbeats_hourly` as
bits, and where the registry lets availability count, `availability_daily`'s, both read through the view
`device_up_rows`), so a period older than raw retention computes the same as yesterday.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from base.time import local_midnight
from catalog import percent

# One row per key point of the category in force in at least one completed bucket of the period, read
# from the rollups only (never raw heartbeats, which may be past retention): heartbeats_daily.up_mask holds
# each local day's up hours of heartbeats_hourly as bits, so a year reads 365 rows per device, and the
# union of several devices' hours is a bit_or. Bit k of a day is the bucket starting k hours after its
# local midnight; kpi_hour_mask (kpi/migrations/001_rollups.sql) gives the bits of the buckets starting
# inside an interval. Buckets of the period are %(start)s + k hours before %(end)s (its ends are local
# midnights, or the last bucket ended by now): exact for zones whose offset changes by whole hours.
# Each CTE quotes the sentence of DESIGN.md ("What a coverage number means") it implements.
POINTS = """
WITH versions AS (
    -- Each version of a point of the category, clipped to the period.
    SELECT point_id, name, admin_unit, lat, lon, valid_from,
           greatest(valid_from, %(start)s) AS s, least(coalesce(valid_to, 'infinity'), %(end)s) AS e
    FROM key_points
    WHERE %(category)s = ANY (categories) AND valid_from < %(end)s AND (valid_to IS NULL OR valid_to > %(start)s)
),
spans AS (
    -- Overlapping or touching versions merge, so that no bucket counts twice for a point or a device.
    SELECT point_id, min(s) AS s, max(e) AS e
    FROM (SELECT point_id, s, e, sum(CASE WHEN earlier_e >= s THEN 0 ELSE 1 END)
                                     OVER (PARTITION BY point_id ORDER BY s, e) AS island
          FROM (SELECT point_id, s, e,
                       max(e) OVER (PARTITION BY point_id ORDER BY s, e
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier_e
                FROM versions) ordered) islands
    GROUP BY point_id, island
),
in_force AS (
    -- "A point, binding or unit is in force in a bucket when it is in force at the bucket's start":
    -- the buckets %(start)s + k h that start inside one of its spans.
    SELECT point_id,
           sum(ceil(date_part('epoch', e - %(start)s) / 3600) - ceil(date_part('epoch', s - %(start)s) / 3600))::int
               AS buckets_in_force
    FROM spans
    GROUP BY point_id
)
"""

BOUND = """,
bound AS MATERIALIZED (
    -- (Materialized: seen through, the devices join adds a second, redundant condition on the daily
    -- rollup's key, and each binding's range scan becomes a slower BitmapAnd.)
    -- Bindings of the indicator's kind (the registry's kind, not the heartbeat's), each cut to the spans
    -- of its point: bucket by bucket, the binding and the point are both in force.
    SELECT bd.device_id, sp.point_id, greatest(bd.valid_from, sp.s) AS s,
           least(coalesce(bd.valid_to, 'infinity'), sp.e) AS e
    FROM bindings bd
    JOIN devices d ON d.device_id = bd.device_id AND d.kind = %(kind)s
    JOIN spans sp ON sp.point_id = bd.point_id AND bd.valid_from < sp.e
                 AND (bd.valid_to IS NULL OR bd.valid_to > sp.s)
)
"""

# Each point's up hours from the point rollups (kpi/migrations/030_point_rollups.sql) where they are fresh:
# whole months from point_monthly, other days from point_daily, and the days marked stale (and a last day cut
# by "now") computed from device_up_rows (heartbeats_daily, and availability_daily where it counts).
# A point's up bits on each day of %(computed_days)s, computed per device-day: "A key point is up in a bucket if
# any device bound to it in that bucket, of the indicator's kind (the registry's kind), is up" — the union
# (bit_or) of its bound devices' bits ("a device is up in a bucket if it sent at least one healthy heartbeat in
# it", or was online in it where its kind's availability counts: its bits in device_up_rows), each cut to the
# buckets in which the binding and the point are both in force. One index range per binding; the day before
# the binding's start only ever contributes zero bits. The live part of a read, and what a refresh of the point
# rollups stores (kpi/point_rollups.py).
POINT_DAYS = """,
point_days AS (
    SELECT b.point_id, h.day, bit_or((h.heartbeat_mask | h.availability_mask) & kpi_hour_mask(h.day, b.s, b.e)) AS up
    FROM bound b
    JOIN device_up_rows h ON h.device_id = b.device_id AND h.day = ANY (%(computed_days)s)
                          AND h.day > b.s - interval '25 hours' AND h.day < b.e
    GROUP BY 1, 2
)
"""

_LIVE = """,
live AS (
    SELECT point_id, sum(bit_count(up::bit(64)))::int AS buckets_up FROM point_days GROUP BY point_id
)
"""

_ROLLED = """,
rolled AS (
    SELECT point_id, up_hours FROM point_monthly
    WHERE category = %(category)s AND kind = %(kind)s AND month = ANY (%(months)s)
    UNION ALL
    SELECT point_id, up_hours FROM point_daily
    WHERE category = %(category)s AND kind = %(kind)s AND day = ANY (%(days)s)
)
"""

_PARTS_WITH_LIVE = """,
parts AS (SELECT point_id, buckets_up FROM live UNION ALL SELECT point_id, up_hours FROM rolled)
"""

# Without live days (a closed period whose days are all fresh) the bindings are not even read.
_PARTS_ROLLED = """,
parts AS (SELECT point_id, up_hours AS buckets_up FROM rolled)
"""

_AVAILABILITY_TAIL = """,
point_up AS (
    SELECT point_id, sum(buckets_up)::int AS buckets_up FROM parts GROUP BY point_id
),
latest AS (
    SELECT DISTINCT ON (point_id) point_id, name, admin_unit, lat, lon FROM versions ORDER BY point_id, valid_from DESC
)
SELECT f.point_id, l.name, l.admin_unit, l.lat, l.lon, f.buckets_in_force, coalesce(pu.buckets_up, 0) AS buckets_up
FROM in_force f
JOIN latest l ON l.point_id = f.point_id
LEFT JOIN point_up pu ON pu.point_id = f.point_id
WHERE f.buckets_in_force > 0
ORDER BY f.point_id
"""

_AVAILABILITY = sql.Composed([sql.SQL(q) for q in (POINTS, BOUND, POINT_DAYS, _LIVE, _ROLLED, _PARTS_WITH_LIVE,
                                                   _AVAILABILITY_TAIL)])
_AVAILABILITY_ROLLED = sql.Composed([sql.SQL(q) for q in (POINTS, _ROLLED, _PARTS_ROLLED, _AVAILABILITY_TAIL)])

# Each device's up hours at each point on the days of %(device_days)s, per device-day: its bits cut to the
# buckets in which its binding and the point are both in force. A device's cut bindings never overlap in
# time, so its bits on different days (and months) are disjoint and add up. What a read computes for the days
# no closed month holds, and what a refresh stores per closed month (kpi/migrations/050_device_months.sql).
# (One aggregate per cut binding, over its index range, rather than a join sorted by point and device; a day
# that lies wholly inside the cut binding keeps all its bits, which spares the mask arithmetic on all but the
# edge days. 25 hours is the longest local day.)
DEVICE_DAYS = """,
device_days AS (
    SELECT b.point_id, b.device_id, sum(per_binding.up_hours)::int AS up_hours,
           sum(per_binding.availability_hours)::int AS availability_hours
    FROM bound b
    CROSS JOIN LATERAL (
        SELECT sum(CASE WHEN h.day >= b.s AND h.day + interval '25 hours' <= b.e THEN bit_count(h.up::bit(64))
                        ELSE bit_count((h.up & kpi_hour_mask(h.day, b.s, b.e))::bit(64)) END) AS up_hours,
               sum(bit_count((h.availability_only & kpi_hour_mask(h.day, b.s, b.e))::bit(64))) AS availability_hours
        FROM (SELECT r.day, bit_or(r.heartbeat_mask | r.availability_mask) AS up,
                     bit_or(r.availability_mask) & ~bit_or(r.heartbeat_mask) AS availability_only
              FROM device_up_rows r
              WHERE r.device_id = b.device_id AND r.day = ANY (%(device_days)s)
                AND r.day > b.s - interval '25 hours' AND r.day < b.e
              GROUP BY r.day) h
    ) per_binding
    GROUP BY 1, 2
)
"""

_DEVICE_MONTHS = """
SELECT point_id, device_id, up_hours, availability_hours FROM point_device_monthly
WHERE category = %(category)s AND kind = %(kind)s AND month = ANY (%(device_months)s)
"""

_DEVICE_HOURS = sql.Composed([sql.SQL(q) for q in (POINTS, BOUND, DEVICE_DAYS)] + [sql.SQL("""
SELECT point_id, device_id, sum(up_hours)::int AS up_hours, sum(availability_hours)::int AS availability_hours
FROM (SELECT point_id, device_id, up_hours, availability_hours FROM device_days UNION ALL"""), sql.SQL(_DEVICE_MONTHS),
                                                                                   sql.SQL(""") parts
GROUP BY 1, 2
HAVING sum(up_hours) > 0
""")])


@dataclass(frozen=True)
class PointEvidence:
    """Why one key point counts, or does not."""

    point_id: str
    name: str
    admin_unit: str | None
    buckets_in_force: int
    buckets_up: int
    device_up_hours: dict[str, int]
    covered: bool
    # Where its last version in force stands (WGS 84): the map of the evidence page.
    lat: float | None = None
    lon: float | None = None
    # Of each device's up hours, those only its availability messages made up (no healthy heartbeat in them).
    device_online_only_hours: dict[str, int] = field(default_factory=dict)

    @property
    def availability(self) -> Fraction:
        return Fraction(self.buckets_up, self.buckets_in_force)

    def as_dict(self) -> dict[str, object]:
        return {
            "point_id": self.point_id, "name": self.name, "admin_unit": self.admin_unit,
            "buckets_in_force": self.buckets_in_force, "buckets_up": self.buckets_up,
            "availability": f"{self.buckets_up}/{self.buckets_in_force}",
            "availability_percent": float(percent(self.buckets_up, self.buckets_in_force)),
            "covered": self.covered,
            "devices": [{"device_id": d, "up_hours": h, "online_only_hours": self.device_online_only_hours.get(d, 0)}
                        for d, h in sorted(self.device_up_hours.items())],
            "lat": self.lat, "lon": self.lon,
        }


@dataclass(frozen=True)
class CoverageValue:
    code: str
    name_vi: str
    unit: str
    period_from: date
    period_to: date
    numerator: int
    denominator: int
    value: Decimal | None
    status: str
    theta: Decimal
    evidence: list[PointEvidence] = field(default_factory=list)
    admin_unit: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The DESIGN contract's fields, in its order; `admin_unit` follows when the value is for one unit."""
        shown: dict[str, object] = {
            "code": self.code, "name_vi": self.name_vi, "unit": self.unit,
            "from": self.period_from.isoformat(), "to": self.period_to.isoformat(),
            "numerator": self.numerator, "denominator": self.denominator,
            "value": None if self.value is None else float(self.value), "status": self.status,
        }
        if self.admin_unit is not None:
            shown["admin_unit"] = self.admin_unit
        return shown


def completed_end(start: datetime, end: datetime, now: datetime) -> datetime:
    """The end of the last bucket of [start, end) that has ended by `now` (start itself if none has)."""
    if now <= start:
        return start
    # In UTC: an aware datetime plus a timedelta is wall-clock arithmetic, wrong across a DST change.
    return min(end, start.astimezone(UTC) + timedelta(hours=(now - start) // timedelta(hours=1)))


def value_status(denominator: int, period_end: datetime, now: datetime, lateness_window: timedelta) -> str:
    """DESIGN: final once late heartbeats can no longer change the value, provisional before."""
    if denominator == 0:
        return "insufficient_data"
    return "final" if now >= period_end + lateness_window else "provisional"


@dataclass(frozen=True)
class RollupPlan:
    """Where each day of a period is read from: whole fresh months, other fresh days, days computed live."""

    months: list[datetime]
    days: list[datetime]
    live_days: list[datetime]


def rollup_plan(conn: psycopg.Connection, start: datetime, end: datetime, zone: ZoneInfo) -> RollupPlan:
    """Split [start, end) — a local midnight to a local midnight or a bucket end — by freshness.

    A day marked stale, or cut short by `end`, is computed live; a calendar month whose days are all in
    the period and fresh comes from point_monthly; any other day from point_daily.
    """
    first = start.astimezone(zone).date()
    end_local = end.astimezone(zone)
    whole_days_end = end_local.date()
    days = [local_midnight(first + timedelta(days=k), zone) for k in range((whole_days_end - first).days)]
    stale = {r["day"] for r in conn.execute(
        "SELECT day FROM point_rollup_stale WHERE day >= %s AND day < %s", (start, end))}
    live = [d for d in days if d in stale]
    if end_local.time() != time(0):
        live.append(local_midnight(whole_days_end, zone))
    fresh = [d for d in days if d not in stale]
    by_month: dict[date, list[datetime]] = {}
    for d in fresh:
        by_month.setdefault(d.date().replace(day=1), []).append(d)
    months, other_days = [], []
    for month, month_days in by_month.items():
        next_month = (month + timedelta(days=32)).replace(day=1)
        if len(month_days) == (next_month - month).days:
            months.append(local_midnight(month, zone))
        else:
            other_days.extend(month_days)
    return RollupPlan(months, other_days, live)


def point_evidence(conn: psycopg.Connection, *, category: str, device_kind: str, theta: Decimal, start: datetime,
                   end: datetime, zone: ZoneInfo, devices: bool = False) -> list[PointEvidence]:
    """Every key point of `category` in force in a bucket of [start, end), with its availability.

    `start` is a local midnight; `end` the end of a bucket (a local midnight, or "now" cut to the hour).
    With `devices`, each point also lists its devices' up hours: closed months from the monthly device
    rollups where a refresh has computed them, every other day per device-day from device_up_rows; and how
    many of those hours only availability messages made up.
    """
    if end <= start:
        return []
    params = {"start": start, "end": end, "category": category, "kind": device_kind}
    if conn.autocommit:
        # One snapshot for the staleness marks and the rollups they vouch for.
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows, hours, online_only = _read(conn, params, start, end, zone, devices)
    else:
        rows, hours, online_only = _read(conn, params, start, end, zone, devices)
    threshold = Fraction(theta)
    # "covered over P when its availability ≥ θ, compared exactly": up / in_force ≥ n / d, in integers.
    n, d = threshold.numerator, threshold.denominator
    return [
        PointEvidence(r["point_id"], r["name"], r["admin_unit"], r["buckets_in_force"], r["buckets_up"],
                      hours.get(r["point_id"], {}), r["buckets_up"] * d >= n * r["buckets_in_force"],
                      r["lat"], r["lon"], online_only.get(r["point_id"], {}))
        for r in rows
    ]


def _read(conn: psycopg.Connection, params: dict, start: datetime, end: datetime, zone: ZoneInfo,
          devices: bool) -> tuple[list, dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    plan = rollup_plan(conn, start, end, zone)
    query = _AVAILABILITY if plan.live_days else _AVAILABILITY_ROLLED
    rows = conn.execute(query, {**params, "months": plan.months, "days": plan.days,
                                "computed_days": plan.live_days}).fetchall()
    hours: dict[str, dict[str, int]] = {}
    online_only: dict[str, dict[str, int]] = {}
    if devices:
        for r in _device_hours(conn, params, plan, zone):
            hours.setdefault(r["point_id"], {})[r["device_id"]] = r["up_hours"]
            if r["availability_hours"]:
                online_only.setdefault(r["point_id"], {})[r["device_id"]] = r["availability_hours"]
    return rows, hours, online_only


def _device_hours(conn: psycopg.Connection, params: dict, plan: RollupPlan, zone: ZoneInfo) -> list:
    """Each point's devices and their up hours over the plan's period (only devices with an up hour)."""
    done = {r["month"] for r in conn.execute(
        "SELECT month FROM point_device_month_done WHERE month = ANY (%s)", (plan.months,))}
    device_months = [m for m in plan.months if m in done]
    device_days = sorted(plan.days + plan.live_days + [d for m in plan.months if m not in done
                                                       for d in month_days(m, zone)])
    if not device_days:
        return conn.execute(_DEVICE_MONTHS, {**params, "device_months": device_months}).fetchall()
    return conn.execute(_DEVICE_HOURS, {**params, "device_months": device_months,
                                        "device_days": device_days}).fetchall()


def month_days(month: datetime, zone: ZoneInfo) -> list[datetime]:
    """The local midnights of the local month starting at `month`."""
    first = month.astimezone(zone).date()
    next_month = (first + timedelta(days=32)).replace(day=1)
    return [local_midnight(first + timedelta(days=k), zone) for k in range((next_month - first).days)]


def summarise(*, code: str, name_vi: str, unit: str, theta: Decimal, period_from: date, period_to: date,
              evidence: list[PointEvidence], period_end: datetime, now: datetime, lateness_window: timedelta,
              admin_unit: str | None = None) -> CoverageValue:
    """"Indicator value over P = 100 × covered points / points in force in at least one bucket of P";
    "No points → numerator 0, denominator 0, value null, status insufficient_data"."""
    numerator = sum(1 for e in evidence if e.covered)
    denominator = len(evidence)
    value = percent(numerator, denominator) if denominator else None
    return CoverageValue(code, name_vi, unit, period_from, period_to, numerator, denominator, value,
                         value_status(denominator, period_end, now, lateness_window), theta, evidence, admin_unit)
