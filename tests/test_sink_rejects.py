"""When the database refuses data, only the offending heartbeats are dead-lettered; when it is broken, nothing is."""

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.decode import DecodeStage, Limits
from ingest.message import Message
from ingest.sink import HeartbeatSink
from tests.helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param



class Acknowledgements:
    def __init__(self) -> None:
        self.origins: list[str] = []

    def message(self, origin: str, body: dict | list) -> Message:
        return DecodeStage(Limits()).message(
            source="mqtt", origin=origin, payload=json.dumps(body).encode(), received_at=datetime.now(UTC),
            expected_device_id=None, allow_array=isinstance(body, list),
            acknowledge=lambda: self.origins.append(origin))


def _heartbeat(device_id: str, minutes_ago: int, **fields: object) -> dict:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {"device_id": device_id, "kind": "cctv", "ts": ts.isoformat(), **fields}


# PostgreSQL's jsonb cannot hold U+0000, which JSON (and so our schema) allows in a key: a real row the
# database refuses with SQLSTATE 22P05 although every check of ours passed.
REFUSED_BY_THE_DATABASE = {"metrics": {"fps\u0000": 25}}


def test_a_heartbeat_the_database_refuses_is_dead_lettered_and_the_rest_of_the_batch_is_stored(
        database_url: str, db: psycopg.Connection) -> None:
    acks = Acknowledgements()
    batch = [acks.message(f"devices/cam-{n}/heartbeat", _heartbeat(f"cam-{n}", n)) for n in range(9)]
    batch.insert(4, acks.message("devices/cam-bad/heartbeat", _heartbeat("cam-bad", 1, **REFUSED_BY_THE_DATABASE)))
    sink = HeartbeatSink(database_url)
    result = sink.write(batch)
    sink.close()
    stored = [r["device_id"] for r in db.execute("SELECT device_id FROM heartbeats ORDER BY device_id")]
    letter = db.execute("SELECT origin, reason, detail FROM dead_letters").fetchall()
    assert stored == [f"cam-{n}" for n in range(9)]
    assert [(r["origin"], r["reason"]) for r in letter] == [("devices/cam-bad/heartbeat", "database_rejected")]
    assert letter[0]["detail"].startswith("device cam-bad ts ")
    assert "SQLSTATE 22P05" in letter[0]["detail"]
    assert (result.stored, result.dead_lettered, result.by_reason) == (9, 1, {"database_rejected": 1})
    assert sorted(acks.origins) == sorted(m.origin for m in batch)


def test_in_a_gateway_report_only_the_refused_camera_is_dead_lettered(database_url: str,
                                                                     db: psycopg.Connection) -> None:
    acks = Acknowledgements()
    report = [_heartbeat("cam-1", 1), _heartbeat("cam-2", 1, **REFUSED_BY_THE_DATABASE), _heartbeat("cam-3", 1)]
    sink = HeartbeatSink(database_url)
    sink.write([acks.message("gateways/vms-1/heartbeats", report)])
    sink.close()
    stored = [r["device_id"] for r in db.execute("SELECT device_id FROM heartbeats ORDER BY device_id")]
    reasons = [r["reason"] for r in db.execute("SELECT reason FROM dead_letters")]
    assert stored == ["cam-1", "cam-3"]
    assert reasons == ["database_rejected"]


def test_decoder_rejections_in_a_refused_batch_are_dead_lettered_once(database_url: str,
                                                                      db: psycopg.Connection) -> None:
    acks = Acknowledgements()
    batch = [acks.message("devices/cam-1/heartbeat", _heartbeat("cam-1", 1, kind="toaster")),
             acks.message("devices/cam-2/heartbeat", _heartbeat("cam-2", 1, **REFUSED_BY_THE_DATABASE)),
             acks.message("devices/cam-3/heartbeat", _heartbeat("cam-3", 1))]
    sink = HeartbeatSink(database_url)
    sink.write(batch)
    sink.close()
    reasons = [r["reason"] for r in db.execute("SELECT reason FROM dead_letters ORDER BY reason")]
    assert reasons == ["database_rejected", "schema"]
    assert db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"] == 1


def test_a_broken_schema_stops_the_sink_without_dead_lettering_or_acknowledging(
        database_url: str, db: psycopg.Connection) -> None:
    db.execute("DROP TABLE heartbeats CASCADE")              # with the rollups that read it
    db.commit()
    acks = Acknowledgements()
    sink = HeartbeatSink(database_url)
    with pytest.raises(psycopg.errors.UndefinedTable):
        sink.write([acks.message("devices/cam-1/heartbeat", _heartbeat("cam-1", 1))])
    sink.close()
    assert acks.origins == []
    assert db.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] == 0
