"""The staging COPY is built by hand (ingest/sink/rows.py): what a device may legally put in a name or a
number reaches the database exactly as decoded."""

import json
from datetime import UTC, datetime, timedelta

import psycopg

from ingest.decode import DecodeStage, Limits
from ingest.sink import HeartbeatSink

AWKWARD_NAMES = {"tab\there": 1, "new\nline": 2, "back\\slash": 3, 'quote"d': 4, "pm2,5 µg/m³ ở Quy Nhơn": 5.5,
                 "line\u2028separator": 6, "bell\u0007": 7, "\\N": 8, "": 9}
AWKWARD_NUMBERS = {"huge": 2**70, "small": 5e-324, "negative_zero": -0.0, "big_float": 1e16, "i64": -(2**63)}


def test_awkward_names_and_numbers_are_stored_as_decoded(database_url: str, db: psycopg.Connection) -> None:
    received = datetime.now(UTC)
    ts = received.replace(microsecond=123456) - timedelta(minutes=1)
    body = {"device_id": "air-1", "kind": "air_monitor", "ts": ts.astimezone().isoformat(), "seq": 2**63 - 1,
            "status": "degraded", "checks": {"ok\t1": True, "ok\\2": False},
            "metrics": AWKWARD_NUMBERS, "measurements": AWKWARD_NAMES}
    raw = json.dumps(body, ensure_ascii=False).encode()
    acknowledged = []
    message = DecodeStage(Limits()).message(source="kafka", origin="heartbeats/0/7", payload=raw,
                                            received_at=received, expected_device_id="air-1", allow_array=False,
                                            acknowledge=lambda: acknowledged.append(True))
    sink = HeartbeatSink(database_url)
    result = sink.write([message])
    sink.close()
    row = db.execute("SELECT * FROM heartbeats").fetchone()
    hb = message.decoded.accepted[0]
    assert (result.stored, acknowledged) == (1, [True])
    assert (row["device_id"], row["kind"], row["status"], row["seq"], row["healthy"]) == (
        "air-1", "air_monitor", "degraded", 2**63 - 1, False)
    assert (row["ts"], row["received_at"], row["source"]) == (hb.ts, received, "kafka")
    assert row["checks"] == {"ok\t1": True, "ok\\2": False}
    assert row["measurements"] == AWKWARD_NAMES
    assert row["metrics"] == AWKWARD_NUMBERS
