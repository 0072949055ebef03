"""The rollup-based evidence agrees with DESIGN's rules applied literally, hour by hour, to raw heartbeats.

The reference below is deliberately naive (Python loops over every bucket); random registries with moved
devices, reopened points, mid-hour validity and unhealthy heartbeats must give the same evidence.
"""

import random
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from tests.helpers import BACKENDS
from tests.kpi_builders import ZONE, beats, device, local, point, value_every_way


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param


DAY = date(2026, 11, 1)
DAYS = 3


def _reference(db: psycopg.Connection, category: str, kind: str) -> dict[str, tuple[int, int, dict[str, int]]]:
    start = local(DAY, 0, 0)
    buckets = [start + timedelta(hours=k) for k in range(24 * DAYS)]
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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_evidence_equals_the_rules_applied_to_raw_heartbeats(db: psycopg.Connection, seed: int) -> None:
    rng = random.Random(seed)
    start = local(DAY, 0, 0)

    def moment() -> datetime:
        return start + timedelta(minutes=rng.randrange(-12 * 60, (24 * DAYS + 12) * 60))

    for p in range(8):
        a, b = sorted((moment(), moment()))
        point(db, f"SEC-{p}", ["security_point"], valid_from=a if rng.random() < 0.5 else start - timedelta(days=9),
              valid_to=b if rng.random() < 0.5 else None)
        if rng.random() < 0.3:  # a later, possibly overlapping, version
            point(db, f"SEC-{p}", ["security_point"], valid_from=b + timedelta(minutes=rng.choice([-90, 0, 45])))
    for d in range(12):
        kind = "cctv" if d < 10 else "wifi_ap"
        cut = moment()
        first, second = rng.sample(range(8), 2)
        device(db, f"dev-{d}", f"SEC-{first}", kind, valid_from=start - timedelta(days=9), valid_to=cut)
        device(db, f"dev-{d}", f"SEC-{second}", kind, valid_from=cut)
        times = sorted({moment() for _ in range(rng.randrange(20, 90))})
        good = [t for t in times if rng.random() < 0.85]
        beats(db, f"dev-{d}", good, kind=kind)
        beats(db, f"dev-{d}", [t for t in times if t not in good], healthy=False, kind=kind)
    db.commit()

    value = value_every_way(db, "17", DAY, DAY + timedelta(days=DAYS), now=datetime(2026, 12, 1, tzinfo=UTC))
    computed = {e.point_id: (e.buckets_up, e.buckets_in_force, e.device_up_hours) for e in value.evidence}
    assert computed == _reference(db, "security_point", "cctv")
    assert ZONE.key == "Asia/Ho_Chi_Minh"  # whole-hour offset: local hours start on UTC hours
