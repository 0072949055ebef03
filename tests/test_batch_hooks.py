"""Who hears of a batch the ingest sink stores (ingest/migrations/003_batch_hooks.sql): the KPI engine's point
rollups learn of its local days on both backends — a trigger on plain PostgreSQL, the hook it registered on
TimescaleDB — and the sink calls every registered hook, knowing none of them."""

import json
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from base.db import connect
from citykpi.schema import migrate
from ingest.decode import DecodeStage, Limits
from ingest.message import Message
from ingest.sink import HeartbeatSink
from tests.helpers import BACKENDS
from tests.kpi_builders import ZONE, device, point


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _message(device_id: str, ts: datetime) -> Message:
    payload = json.dumps({"device_id": device_id, "kind": "cctv", "ts": ts.isoformat()}).encode()
    return DecodeStage(Limits()).message(source="mqtt", origin=f"devices/{device_id}/heartbeat", payload=payload,
                                         received_at=datetime.now(UTC), expected_device_id=device_id,
                                         allow_array=False, acknowledge=lambda: None)


def _write(database_url: str, messages: list[Message]) -> None:
    sink = HeartbeatSink(database_url)
    try:
        assert sink.write(messages).stored == len(messages)
    finally:
        sink.close()


def _stale(db: psycopg.Connection) -> list[date]:
    return [r["day"].astimezone(ZONE).date() for r in db.execute("SELECT day FROM point_rollup_stale ORDER BY day")]


def test_a_batch_through_the_sink_marks_its_local_days_stale(backend: str, database_url: str,
                                                              db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    db.execute("DELETE FROM point_rollup_stale")
    db.commit()
    late = datetime.now(ZONE).replace(hour=23, minute=30, second=0, microsecond=0) - timedelta(days=2)
    # 23:30 local is 16:30 UTC, and 00:10 local the next day is 17:10 UTC of the same UTC day: the local days count.
    _write(database_url, [_message("cam-a", late), _message("cam-a", late + timedelta(minutes=40))])
    assert _stale(db) == [late.date(), late.date() + timedelta(days=1)]


@pytest.mark.parametrize("backend", ["timescaledb"])
def test_the_sink_calls_every_registered_hook_with_the_hours_of_its_batch(database_url: str,
                                                                         db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE hours_heard (hour timestamptz)")
    db.execute("CREATE FUNCTION test_hear_hours(hours timestamptz[]) RETURNS void LANGUAGE sql AS"
               " $$ INSERT INTO hours_heard SELECT unnest(hours) $$")
    db.execute("INSERT INTO heartbeat_batch_hooks (function_name) VALUES ('test_hear_hours')")
    db.commit()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    _write(database_url, [_message("cam-x", hour + timedelta(minutes=minute)) for minute in (5, 50, 61)])
    heard = [r["hour"] for r in db.execute("SELECT hour FROM hours_heard ORDER BY hour")]
    assert heard == [hour, hour + timedelta(hours=1)]
    assert [r["hooks"] for r in db.execute("SELECT count(*) AS hooks FROM heartbeat_batch_hooks")] == [2]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_hour_that_spans_two_local_days_marks_both(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn, timezone="Asia/Kolkata")                  # UTC+05:30: local midnight is 18:30 UTC
        conn.execute("DELETE FROM point_rollup_stale")
        conn.execute("SELECT kpi_heartbeat_hours_stored(%s)", ([datetime(2026, 11, 1, 18, tzinfo=UTC),
                                                                 datetime(2026, 11, 3, 5, tzinfo=UTC)],))
        days = [r["day"] for r in conn.execute("SELECT day FROM point_rollup_stale ORDER BY day")]
    kolkata_midnights = [datetime(2026, 10, 31, 18, 30, tzinfo=UTC), datetime(2026, 11, 1, 18, 30, tzinfo=UTC),
                         datetime(2026, 11, 2, 18, 30, tzinfo=UTC)]
    assert days == kolkata_midnights
