"""The rollup-based evidence agrees with DESIGN's rules applied literally, hour by hour, to raw heartbeats.

The reference below is deliberately naive (Python loops over every bucket); random registries with moved
devices, reopened points, mid-hour validity and unhealthy heartbeats must give the same evidence.
"""

import random
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from base.db import timescaledb_in_use
from tests.helpers import BACKENDS
from tests.kpi_builders import ZONE, beats, device, local, materialise, point, value_every_way


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param


DAY = date(2026, 11, 1)
DAYS = 3


def _reference(db: psycopg.Connection, category: str, kind: str, first: date,
               days: int) -> dict[str, tuple[int, int, dict[str, int]]]:
    start = local(first, 0, 0)
    buckets = [start + timedelta(hours=k) for k in range(24 * days)]
    points = db.execute("SELECT point_id, valid_from, valid_to FROM key_points WHERE %s = ANY (categories)",
                        (category,)).fetchall()
    bindings = db.execute("SELECT b.device_id, b.point_id, b.valid_from, b.valid_to FROM bindings b"
                          " JOIN devices d USING (device_id) WHERE d.kind = %s", (kind,)).fetchall()
    healthy = {(r["device_id"], r["bucket"]) for r in db.execute(
        "SELECT DISTINCT device_id, date_trunc('hour', ts) AS bucket FROM heartbeats WHERE healthy")}

    def in_force(row: dict, at: datetime) -> bool:
        return row["valid_from"] <= at and (row["valid_to"] is None or row["valid_to"] > at)

    result = {}
    for point_id in sorted({p["point_id"] for p in points}):
        versions = [p for p in points if p["point_id"] == point_id]
        forced = [b for b in buckets if any(in_force(v, b) for v in versions)]
        if not forced:
            continue
        up, device_hours = 0, {}
        for b in forced:
            devices = {x["device_id"] for x in bindings if x["point_id"] == point_id and in_force(x, b)}
            up_now = {d for d in devices if (d, b) in healthy}
            up += bool(up_now)
            for d in up_now:
                device_hours[d] = device_hours.get(d, 0) + 1
        result[point_id] = (up, len(forced), device_hours)
    return result


def _random_city(db: psycopg.Connection, rng: random.Random, first: date, days: int) -> None:
    """Points with versions opening and closing at random minutes, devices moved between points mid-period,
    healthy and unhealthy heartbeats at random instants from half a day before to half a day after."""
    start = local(first, 0, 0)

    def moment() -> datetime:
        return start + timedelta(minutes=rng.randrange(-12 * 60, (24 * days + 12) * 60))

    for p in range(8):
        a, b = sorted((moment(), moment()))
        point(db, f"SEC-{p}", ["security_point"], valid_from=a if rng.random() < 0.5 else start - timedelta(days=9),
              valid_to=b if rng.random() < 0.5 else None)
        if rng.random() < 0.3:  # a later, possibly overlapping, version
            point(db, f"SEC-{p}", ["security_point"], valid_from=b + timedelta(minutes=rng.choice([-90, 0, 45])))
    for d in range(12):
        kind = "cctv" if d < 10 else "wifi_ap"
        cut = moment()
        first_point, second_point = rng.sample(range(8), 2)
        device(db, f"dev-{d}", f"SEC-{first_point}", kind, valid_from=start - timedelta(days=9), valid_to=cut)
        device(db, f"dev-{d}", f"SEC-{second_point}", kind, valid_from=cut)
        times = sorted({moment() for _ in range(rng.randrange(20 * days // 3, 90 * days // 3))})
        good = [t for t in times if rng.random() < 0.85]
        beats(db, f"dev-{d}", good, kind=kind)
        beats(db, f"dev-{d}", [t for t in times if t not in good], healthy=False, kind=kind)
    db.commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_evidence_equals_the_rules_applied_to_raw_heartbeats(db: psycopg.Connection, seed: int) -> None:
    _random_city(db, random.Random(seed), DAY, DAYS)
    value = value_every_way(db, "17", DAY, DAY + timedelta(days=DAYS), now=datetime(2026, 12, 1, tzinfo=UTC))
    computed = {e.point_id: (e.buckets_up, e.buckets_in_force, e.device_up_hours) for e in value.evidence}
    assert computed == _reference(db, "security_point", "cctv", DAY, DAYS)
    assert ZONE.key == "Asia/Ho_Chi_Minh"  # whole-hour offset: local hours start on UTC hours


def test_a_closed_months_stored_device_hours_equal_the_rules_applied_to_raw_heartbeats(
        db: psycopg.Connection) -> None:
    """A whole month read after the refresh has stored its device hours (`value_every_way` refreshes at a
    `now` past the lateness window), against the same naive reference."""
    november = date(2026, 11, 1)
    _random_city(db, random.Random(4), november, 30)
    if timescaledb_in_use(db):
        # Weeks back, below the refresh policies' reach: materialised by hand, as a backfill would be.
        materialise(db.info.dsn, local(date(2026, 10, 31), 0, 0), local(date(2026, 12, 2), 0, 0))
    value = value_every_way(db, "17", november, date(2026, 12, 1), now=datetime(2027, 1, 1, tzinfo=UTC))
    assert local(november, 0, 0) in {r["month"] for r in db.execute("SELECT month FROM point_device_month_done")}
    computed = {e.point_id: (e.buckets_up, e.buckets_in_force, e.device_up_hours) for e in value.evidence}
    assert computed == _reference(db, "security_point", "cctv", november, 30)
