"""Sensor-driven indicators: the share of key points whose devices were up often enough over a period.

Computed from raw heartbeats; the rollups of the coverage engine will feed the same evidence query.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import psycopg

# One row per key point of the category in force in at least one completed bucket of the period.
# Each CTE quotes the sentence of DESIGN.md ("What a coverage number means") that it implements.
_EVIDENCE = """
WITH buckets AS (
    -- "Time buckets are one hour, aligned to the province's local time."
    SELECT local_hour AT TIME ZONE %(tz)s AS bucket_start
    FROM generate_series(%(from_local)s::timestamp, %(to_local)s::timestamp - interval '1 hour',
                         interval '1 hour') AS local_hour
    WHERE (local_hour + interval '1 hour') AT TIME ZONE %(tz)s <= %(now)s
),
point_buckets AS (
    -- "A point, binding or unit is in force in a bucket when it is in force at the bucket's start."
    SELECT DISTINCT p.point_id, b.bucket_start
    FROM key_points p
    JOIN buckets b ON p.valid_from <= b.bucket_start AND (p.valid_to IS NULL OR p.valid_to > b.bucket_start)
    WHERE %(category)s = ANY (p.categories)
),
device_up AS (
    -- "A device is up in a bucket if it sent at least one healthy heartbeat in it."
    SELECT h.device_id, date_trunc('hour', h.ts AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS bucket_start
    FROM heartbeats h
    WHERE h.healthy AND h.ts >= %(from_ts)s AND h.ts < %(to_ts)s
      AND h.device_id IN (SELECT device_id FROM devices WHERE kind = %(kind)s)
    GROUP BY 1, 2
),
bound_up AS (
    -- "A key point is up in a bucket if any device bound to it in that bucket, of the indicator's kind
    -- (the registry's kind), is up."
    SELECT pb.point_id, pb.bucket_start, du.device_id
    FROM point_buckets pb
    JOIN bindings bd ON bd.point_id = pb.point_id AND bd.valid_from <= pb.bucket_start
                    AND (bd.valid_to IS NULL OR bd.valid_to > pb.bucket_start)
    JOIN devices d ON d.device_id = bd.device_id AND d.kind = %(kind)s
    JOIN device_up du ON du.device_id = bd.device_id AND du.bucket_start = pb.bucket_start
),
point_summary AS (
    SELECT pb.point_id, count(*) AS buckets_in_force,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM bound_up bu WHERE bu.point_id = pb.point_id
                                                                     AND bu.bucket_start = pb.bucket_start))
               AS buckets_up
    FROM point_buckets pb
    GROUP BY pb.point_id
),
device_hours AS (
    SELECT point_id, device_id, count(*) AS up_hours FROM bound_up GROUP BY point_id, device_id
)
SELECT ps.point_id, ps.buckets_in_force, ps.buckets_up,
       coalesce(jsonb_object_agg(dh.device_id, dh.up_hours) FILTER (WHERE dh.device_id IS NOT NULL), '{}')
           AS device_up_hours
FROM point_summary ps
LEFT JOIN device_hours dh ON dh.point_id = ps.point_id
GROUP BY ps.point_id, ps.buckets_in_force, ps.buckets_up
ORDER BY ps.point_id
"""


@dataclass(frozen=True)
class PointEvidence:
    """Why one key point counts, or does not."""

    point_id: str
    buckets_in_force: int
    buckets_up: int
    device_up_hours: dict[str, int]
    covered: bool

    @property
    def availability(self) -> Fraction:
        return Fraction(self.buckets_up, self.buckets_in_force)


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

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code, "name_vi": self.name_vi, "unit": self.unit,
            "from": self.period_from.isoformat(), "to": self.period_to.isoformat(),
            "numerator": self.numerator, "denominator": self.denominator,
            "value": None if self.value is None else float(self.value), "status": self.status,
        }


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def value_status(denominator: int, period_end: datetime, now: datetime, lateness_window: timedelta) -> str:
    """DESIGN: final once late heartbeats can no longer change the value, provisional before."""
    if denominator == 0:
        return "insufficient_data"
    return "final" if now >= period_end + lateness_window else "provisional"


def coverage(conn: psycopg.Connection, *, code: str, name_vi: str, unit: str, category: str, device_kind: str,
             theta: Decimal, period_from: date, period_to: date, zone: ZoneInfo, now: datetime,
             lateness_window: timedelta) -> CoverageValue:
    """Indicator value over the half-open local-date period [period_from, period_to).

    Only buckets that have ended by `now` count, so the current month reads as "so far", not as a month
    whose future hours were all down.
    """
    if period_to <= period_from:
        raise ValueError(f"period end {period_to} must be after its start {period_from}")
    start, end = local_midnight(period_from, zone), local_midnight(period_to, zone)
    rows = conn.execute(_EVIDENCE, {
        "tz": zone.key, "from_local": start.replace(tzinfo=None), "to_local": end.replace(tzinfo=None),
        "from_ts": start, "to_ts": end, "now": now, "category": category, "kind": device_kind,
    }).fetchall()
    threshold = Fraction(theta)
    evidence = [
        PointEvidence(r["point_id"], r["buckets_in_force"], r["buckets_up"], dict(r["device_up_hours"]),
                      # "covered over P when its availability ≥ θ, compared exactly"
                      Fraction(r["buckets_up"], r["buckets_in_force"]) >= threshold)
        for r in rows
    ]
    numerator = sum(1 for e in evidence if e.covered)
    denominator = len(evidence)
    value = None
    if denominator:
        value = (Decimal(100 * numerator) / Decimal(denominator)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return CoverageValue(code, name_vi, unit, period_from, period_to, numerator, denominator, value,
                         value_status(denominator, end, now, lateness_window), theta, evidence)
