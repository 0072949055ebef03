"""Point rollups (kpi/migrations/030_point_rollups.sql): which writes mark days stale, what a refresh leaves,
and that the reads agree with the per-device computation however fresh the rollups are."""

import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from base.db import connect, timescaledb_in_use
from base.settings import Settings
from catalog import load_catalog
from kpi.coverage import rollup_plan
from kpi.indicators import sensor_value
from kpi.point_rollups import PointRollupRefresher, refresh
from tests.helpers import BACKENDS, wait_for
from tests.kpi_builders import ZONE, beats, device, every_hour, hours, local, materialise, point, value_every_way


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The marks, the refresh and the reads behave the same on plain PostgreSQL and on TimescaleDB (where
    the test's writes mark their days as the ingest sink does)."""
    return request.param


NOVEMBER = date(2026, 11, 1)
DECEMBER = date(2026, 12, 1)
LONG_AFTER = datetime(2027, 1, 1, tzinfo=UTC)


def _settle(db: psycopg.Connection) -> None:
    """Commit; on TimescaleDB also materialise the continuous aggregates over the weeks these tests write,
    which lie before the refresh policies' reach (as a backfill would, by hand)."""
    db.commit()
    if timescaledb_in_use(db):
        materialise(db.info.dsn, local(date(2026, 10, 31), 0, 0), local(date(2027, 1, 2), 0, 0))


def _stale(db: psycopg.Connection) -> list[date]:
    return [r["day"].astimezone(ZONE).date() for r in db.execute("SELECT day FROM point_rollup_stale ORDER BY day")]


def _month_of_cameras(db: psycopg.Connection) -> None:
    """SEC-A up every hour of November; SEC-B's camera down on the 10th and 11th (672/720 = 0.933)."""
    point(db, "SEC-A", ["security_point"])
    point(db, "SEC-B", ["security_point"])
    device(db, "cam-a", "SEC-A")
    device(db, "cam-b", "SEC-B")
    beats(db, "cam-a", every_hour(NOVEMBER, 30))
    beats(db, "cam-b", every_hour(NOVEMBER, 9) + every_hour(date(2026, 11, 12), 19))
    _settle(db)


def test_heartbeats_mark_their_local_days_and_a_refresh_clears_them(db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    # 23:30 local on the 1st is 16:30 UTC: the local day, not the UTC one, is marked.
    beats(db, "cam-a", [local(NOVEMBER, 23, 30), local(date(2026, 11, 3), 0, 10)])
    _settle(db)
    assert _stale(db) == [date(2026, 11, 1), date(2026, 11, 3)]
    result = refresh(db, load_catalog())
    db.commit()
    assert (result.days, result.months, _stale(db)) == (2, 1, [])
    assert db.execute("SELECT day, point_id, up_hours, up_mask FROM point_daily ORDER BY day").fetchall() == [
        {"day": local(NOVEMBER, 0, 0), "point_id": "SEC-A", "up_hours": 1, "up_mask": 1 << 23},
        {"day": local(date(2026, 11, 3), 0, 0), "point_id": "SEC-A", "up_hours": 1, "up_mask": 1}]
    assert db.execute("SELECT month, up_hours FROM point_monthly").fetchall() == [
        {"month": local(NOVEMBER, 0, 0), "up_hours": 2}]


def test_a_refreshed_whole_month_is_read_from_the_monthly_rollup(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert [(e.point_id, e.buckets_up, e.buckets_in_force, e.covered) for e in value.evidence] == [
        ("SEC-A", 720, 720, True), ("SEC-B", 672, 720, True)]
    plan = rollup_plan(db, local(NOVEMBER, 0, 0), local(DECEMBER, 0, 0), ZONE)
    assert (plan.months, plan.days, plan.live_days) == ([local(NOVEMBER, 0, 0)], [], [])


def _device_months(db: psycopg.Connection) -> list[tuple]:
    return [(r["month"].astimezone(ZONE).date(), r["point_id"], r["device_id"], r["up_hours"]) for r in db.execute(
        "SELECT m.month, point_id, device_id, up_hours FROM point_device_monthly m"
        " JOIN point_device_month_done USING (month) ORDER BY 1, 2, 3")]


def test_a_month_keeps_each_devices_hours_once_its_lateness_window_has_passed(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    assert refresh(db, load_catalog(), now=local(date(2026, 12, 7), 23, 0)).device_months == 0
    db.commit()
    assert _device_months(db) == []
    assert refresh(db, load_catalog(), now=local(date(2026, 12, 8), 0, 0)).device_months == 1
    db.commit()
    assert _device_months(db) == [(NOVEMBER, "SEC-A", "cam-a", 720), (NOVEMBER, "SEC-B", "cam-b", 672)]


def test_the_evidence_of_a_done_month_reads_the_device_hours_it_stored(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    refresh(db, load_catalog(), now=LONG_AFTER)
    # Altered behind the refresher's back, the stored hours show: the read took them, not the device-days.
    db.execute("UPDATE point_device_monthly SET up_hours = 5 WHERE device_id = 'cam-a'")
    db.commit()
    value = sensor_value(db, "17", NOVEMBER, DECEMBER, settings=Settings(), now=LONG_AFTER, devices=True)
    assert [e.device_up_hours for e in value.evidence] == [{"cam-a": 5}, {"cam-b": 672}]


def test_a_late_heartbeat_undoes_a_months_device_hours_until_the_next_refresh(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    refresh(db, load_catalog(), now=LONG_AFTER)
    beats(db, "cam-b", hours(date(2026, 11, 10), *range(24)))
    _settle(db)
    value = sensor_value(db, "17", NOVEMBER, DECEMBER, settings=Settings(), now=LONG_AFTER, devices=True)
    assert [e.device_up_hours for e in value.evidence] == [{"cam-a": 720}, {"cam-b": 696}]
    result = refresh(db, load_catalog(), now=LONG_AFTER)
    db.commit()
    assert (result.days, result.device_months) == (1, 1)
    assert _device_months(db) == [(NOVEMBER, "SEC-A", "cam-a", 720), (NOVEMBER, "SEC-B", "cam-b", 696)]


def test_a_backdated_binding_undoes_a_months_device_hours(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    refresh(db, load_catalog(), now=LONG_AFTER)
    db.execute("UPDATE bindings SET valid_to = %s WHERE device_id = 'cam-a'", (local(date(2026, 11, 20), 0, 0),))
    device(db, "cam-a", "SEC-B", valid_from=local(date(2026, 11, 20), 0, 0))
    db.commit()
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert [e.device_up_hours for e in value.evidence] == [{"cam-a": 456}, {"cam-a": 264, "cam-b": 672}]
    assert _device_months(db) == [(NOVEMBER, "SEC-A", "cam-a", 456), (NOVEMBER, "SEC-B", "cam-a", 264),
                                  (NOVEMBER, "SEC-B", "cam-b", 672)]


def test_a_late_heartbeat_after_a_refresh_is_read_live_until_the_next(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    beats(db, "cam-b", hours(date(2026, 11, 10), *range(24)))     # SEC-B's 10th arrives late
    _settle(db)
    assert _stale(db) == [date(2026, 11, 10)]
    plan = rollup_plan(db, local(NOVEMBER, 0, 0), local(DECEMBER, 0, 0), ZONE)
    assert (plan.months, len(plan.days), plan.live_days) == ([], 29, [local(date(2026, 11, 10), 0, 0)])
    fast = sensor_value(db, "17", NOVEMBER, DECEMBER, settings=Settings(), now=LONG_AFTER)
    assert [e.buckets_up for e in fast.evidence] == [720, 696]
    value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)   # refreshes, and agrees both ways


def test_a_backdated_registry_change_marks_the_days_from_when_it_applies(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    # The importer closes a binding at its effective date: here the 20th, recorded later.
    db.execute("UPDATE bindings SET valid_to = %s WHERE device_id = 'cam-a'", (local(date(2026, 11, 20), 0, 0),))
    db.commit()
    assert _stale(db) == [date(2026, 11, d) for d in range(20, 31)]
    fast = sensor_value(db, "17", NOVEMBER, DECEMBER, settings=Settings(), now=LONG_AFTER)
    assert [(e.point_id, e.buckets_up, e.covered) for e in fast.evidence] == [("SEC-A", 456, False),
                                                                             ("SEC-B", 672, True)]
    value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    # A new point in force from the 25th marks from the 25th; a renamed version (same validity) marks nothing.
    point(db, "SEC-C", ["security_point"], valid_from=local(date(2026, 11, 25), 0, 0))
    db.execute("UPDATE key_points SET name = 'Ngã tư' WHERE point_id = 'SEC-A'")
    db.commit()
    assert _stale(db) == [date(2026, 11, d) for d in range(25, 31)]
    value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)


def test_registry_rows_written_before_any_heartbeat_mark_nothing(db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"], valid_from=datetime(1990, 1, 1, tzinfo=ZONE))
    device(db, "cam-a", "SEC-A", valid_from=datetime(1990, 1, 1, tzinfo=ZONE))
    db.commit()
    assert _stale(db) == []


def test_a_write_that_commits_while_a_refresh_runs_leaves_its_day_stale(database_url: str,
                                                                          db: psycopg.Connection) -> None:
    """The refresher read the day's mark, then a writer marked it again and held it: the refresher may not
    clear the mark (its computation did not see the write), so the write is read live, then refreshed."""
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(NOVEMBER, 1))
    _settle(db)
    with connect(database_url) as writer, connect(database_url, autocommit=True) as refresher:
        beats(writer, "cam-a", hours(NOVEMBER, 2))        # marks the day again: holds the mark's row lock
        refresher_pid = refresher.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        outcome: list = []
        thread = threading.Thread(target=lambda: outcome.append(refresh(refresher, load_catalog())))
        thread.start()
        wait_for(lambda: db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                    (refresher_pid,)).fetchone()["wait_event_type"] == "Lock",
                 what="the refresher to wait for the writer's mark")
        db.commit()
        writer.commit()
        thread.join(timeout=30)
    assert outcome and outcome[0].days == 1
    assert _stale(db) == [NOVEMBER]
    assert db.execute("SELECT up_hours FROM point_daily").fetchone()["up_hours"] == 1   # without the write
    _settle(db)
    value = value_every_way(db, "17", NOVEMBER, date(2026, 11, 2), now=LONG_AFTER)
    assert value.evidence[0].buckets_up == 2


def test_a_period_ending_now_reads_its_last_day_live(db: psycopg.Connection) -> None:
    _month_of_cameras(db)
    refresh(db, load_catalog())
    db.commit()
    now = local(date(2026, 11, 15), 10, 0)
    plan = rollup_plan(db, local(NOVEMBER, 0, 0), now, ZONE)
    assert (plan.months, len(plan.days), plan.live_days) == ([], 14, [local(date(2026, 11, 15), 0, 0)])
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=now)
    assert [(e.buckets_up, e.buckets_in_force) for e in value.evidence] == [(346, 346), (298, 346)]
    assert value.status == "provisional"


def test_serve_refreshes_in_the_background_and_reports_it(database_url: str, db: psycopg.Connection) -> None:
    from fastapi.testclient import TestClient

    from web.app import create_app

    _month_of_cameras(db)
    settings = Settings(database_url=database_url, point_rollup_refresh_s=0.2)
    with TestClient(create_app(settings, database_url)) as client, \
            connect(database_url, autocommit=True) as watcher:
        wait_for(lambda: not _stale(watcher), what="the refresher to clear every mark")
        wait_for(lambda: "citykpi_point_rollup_stale_days 0.0" in client.get("/metrics").text,
                 what="the refresher's gauge")
        # The API's sessions are read-only: on TimescaleDB a read over recent days must not try to refresh
        # the continuous aggregates itself (the refresher does).
        answer = client.get(f"/v1/kpis/17?from={NOVEMBER}&to={DECEMBER}")
        assert (answer.status_code, answer.json()["denominator"]) == (200, 2)
    assert db.execute("SELECT count(*) AS n FROM point_monthly").fetchone()["n"] == 2


def test_overlapping_lifespans_leave_no_refresher_thread_behind(database_url: str) -> None:
    """A test client inside another (schemathesis inside a TestClient) starts the refresher twice: the
    thread must stop with the last stop, not be orphaned by a second start."""
    refresher = PointRollupRefresher(database_url, load_catalog(), 60)
    refresher.start()
    refresher.start()
    refresher.stop()
    assert refresher.running  # the outer lifespan still holds it
    refresher.stop()
    assert not refresher.running


def test_point_rollups_measure_the_local_day_at_a_zone_boundary(db: psycopg.Connection) -> None:
    """A heartbeat at 23:30 local on the last day belongs to that day and that month, not the next."""
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", [local(date(2026, 11, 30), 23, 30), local(DECEMBER, 0, 30)])
    _settle(db)
    value = value_every_way(db, "17", NOVEMBER, DECEMBER, now=LONG_AFTER)
    assert value.evidence[0].buckets_up == 1
    assert [r["month"].astimezone(ZONE).date() for r in db.execute("SELECT month FROM point_monthly ORDER BY 1")] \
        == [NOVEMBER, DECEMBER]
    assert timedelta(hours=7) == local(NOVEMBER, 0, 0).utcoffset()
