"""Availability messages as up hours (kpi/migrations/060_availability.sql): which hours an online state makes up,
late and out-of-order changes, open states reaching "now", the registry's kind rules, and the evidence — the
same on plain PostgreSQL and TimescaleDB, and the same every way a value can be read."""

from datetime import UTC, date, datetime

import psycopg
import pytest

from tests.helpers import BACKENDS
from tests.kpi_builders import ZONE, availability, beats, device, hours, local, point, value_every_way

NOVEMBER = date(2026, 11, 1)
DECEMBER = date(2026, 12, 1)
SECOND = date(2026, 11, 2)
THIRD = date(2026, 11, 3)
LONG_AFTER = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _up_hours(db: psycopg.Connection, device_id: str) -> dict[date, list[int]]:
    """The device's hours of each local day in availability_daily, as hour numbers."""
    rows = db.execute("SELECT day, up_mask FROM availability_daily WHERE device_id = %s ORDER BY day",
                      (device_id,)).fetchall()
    return {r["day"].astimezone(ZONE).date(): [k for k in range(25) if r["up_mask"] >> k & 1] for r in rows}


def _camera(db: psycopg.Connection, device_id: str = "cam-a", point_id: str = "SEC-A") -> None:
    point(db, point_id, ["security_point"])
    device(db, device_id, point_id)


def test_an_hour_is_up_when_the_device_was_online_at_an_instant_of_it(db: psycopg.Connection) -> None:
    _camera(db)
    availability(db, "cam-a", [(local(SECOND, 8, 10), True), (local(SECOND, 10, 5), False),
                               (local(SECOND, 13, 59), True), (local(SECOND, 14, 0), False)])
    assert _up_hours(db, "cam-a") == {SECOND: [8, 9, 10, 13]}
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    [evidence] = value.evidence
    assert (evidence.buckets_up, evidence.device_up_hours, evidence.device_online_only_hours) == \
        (4, {"cam-a": 4}, {"cam-a": 4})


def test_evidence_says_which_hours_only_availability_made_up(db: psycopg.Connection) -> None:
    _camera(db)
    beats(db, "cam-a", hours(SECOND, 8, 9))
    availability(db, "cam-a", [(local(SECOND, 8, 0), True), (local(SECOND, 12, 0), False)])
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    [evidence] = value.evidence
    # 8–11 up; 8 and 9 had healthy heartbeats too, so two hours came from availability alone.
    assert (evidence.buckets_up, evidence.device_up_hours, evidence.device_online_only_hours) == \
        (4, {"cam-a": 4}, {"cam-a": 2})
    assert evidence.as_dict()["devices"] == [{"device_id": "cam-a", "up_hours": 4, "online_only_hours": 2}]


def test_late_and_out_of_order_changes_give_what_in_order_changes_give(db: psycopg.Connection) -> None:
    _camera(db, "cam-a", "SEC-A")
    _camera(db, "cam-b", "SEC-B")
    changes = [(local(SECOND, 6, 0), True), (local(SECOND, 9, 30), False), (local(SECOND, 22, 0), True),
               (local(THIRD, 3, 10), False), (local(THIRD, 5, 0), True), (local(THIRD, 5, 20), False)]
    availability(db, "cam-a", changes)
    # cam-b hears of them one statement at a time, the newest first, as after an outage of its VMS's link.
    for change in reversed(changes):
        availability(db, "cam-b", [change])
    assert _up_hours(db, "cam-a") == {SECOND: [6, 7, 8, 9, 22, 23], THIRD: [0, 1, 2, 3, 5]}
    assert _up_hours(db, "cam-b") == _up_hours(db, "cam-a")
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert {e.point_id: e.buckets_up for e in value.evidence} == {"SEC-A": 11, "SEC-B": 11}


def test_a_late_offline_cuts_an_online_state_already_counted_up_to_now(db: psycopg.Connection) -> None:
    _camera(db)
    availability(db, "cam-a", [(local(SECOND, 20, 0), True)])
    now = local(THIRD, 2, 15)
    # Read at 02:15 on the 3rd: online since 20:00, so 20–23 and 00–01 have ended up; 02 is not over yet.
    value = value_every_way(db, "17", SECOND, date(2026, 11, 4), now=now)
    assert value.evidence[0].buckets_up == 6
    assert _up_hours(db, "cam-a") == {SECOND: [20, 21, 22, 23], THIRD: [0, 1, 2]}
    # The VMS's log, delivered late: the camera dropped at 22:40.
    availability(db, "cam-a", [(local(SECOND, 22, 40), False)])
    assert _up_hours(db, "cam-a") == {SECOND: [20, 21, 22]}
    value = value_every_way(db, "17", SECOND, date(2026, 11, 4), now=now)
    assert value.evidence[0].buckets_up == 3


def test_an_open_online_state_counts_up_to_the_hour_of_now_never_ahead(db: psycopg.Connection) -> None:
    _camera(db)
    availability(db, "cam-a", [(local(SECOND, 9, 45), True)])
    assert _up_hours(db, "cam-a") == {}, "nothing is written before a read or a refresh says what now is"
    value_every_way(db, "17", SECOND, THIRD, now=local(SECOND, 11, 5))
    assert _up_hours(db, "cam-a") == {SECOND: [9, 10, 11]}
    # An earlier "now" (a read of the past) takes back nothing.
    value_every_way(db, "17", SECOND, THIRD, now=local(SECOND, 10, 0))
    assert _up_hours(db, "cam-a") == {SECOND: [9, 10, 11]}
    value = value_every_way(db, "17", SECOND, THIRD, now=local(THIRD, 0, 30))
    assert _up_hours(db, "cam-a")[SECOND] == list(range(9, 24))
    assert value.evidence[0].buckets_up == 15


def test_a_monitor_must_still_measure_unless_the_registry_says_otherwise(db: psycopg.Connection) -> None:
    point(db, "WAT-A", ["water_source"])
    device(db, "wq-a", "WAT-A", kind="water_monitor")
    availability(db, "wq-a", [(local(SECOND, 0, 0), True), (local(THIRD, 0, 0), False)])
    value = value_every_way(db, "18", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert (value.evidence[0].buckets_up, value.evidence[0].device_up_hours) == (0, {})
    # The rule is the registry's; changing it redoes every day, so no stale rollup keeps the old answer.
    db.execute("UPDATE kind_rules SET availability_counts = true WHERE kind = 'water_monitor'")
    value = value_every_way(db, "18", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert (value.evidence[0].buckets_up, value.evidence[0].device_online_only_hours) == (24, {"wq-a": 24})


def test_a_repeated_state_changes_nothing_and_a_change_for_an_unbound_device_counts_nowhere(
        db: psycopg.Connection) -> None:
    _camera(db)
    availability(db, "cam-a", [(local(SECOND, 8, 0), True), (local(SECOND, 8, 30), True),
                               (local(SECOND, 9, 10), False), (local(SECOND, 9, 50), False)])
    availability(db, "cam-unknown", [(local(SECOND, 8, 0), True), (local(SECOND, 12, 0), False)])
    assert _up_hours(db, "cam-a") == {SECOND: [8, 9]}
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert [(e.point_id, e.buckets_up) for e in value.evidence] == [("SEC-A", 2)]
