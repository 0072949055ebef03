"""Dead letters stay useful and bounded: raw bytes cut to a limit, a rate per sender beyond which rejections are
counted and not stored, a retention, and an ingest process whose memory stays flat under a flood of junk."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from devstack.ingest_process import IngestProcess
from ingest.dead_letters import DeadLetterLimit, DeadLetterRetention
from ingest.decode import DecodeStage, Limits
from ingest.message import Message
from ingest.sink import HeartbeatSink
from tests.helpers import wait_for


def _junk(device_id: str, payload: bytes) -> Message:
    return DecodeStage(Limits()).message(source="mqtt", origin=f"devices/{device_id}/heartbeat", payload=payload,
                                         received_at=datetime.now(UTC), expected_device_id=device_id,
                                         allow_array=False, acknowledge=lambda: None)


def test_a_dead_letter_keeps_at_most_the_raw_bytes_allowed_and_says_so(database_url: str,
                                                                       db: psycopg.Connection) -> None:
    sink = HeartbeatSink(database_url, max_raw_bytes=100)
    try:
        sink.write([_junk("cam-1", b"{" + b"x" * 5000), _junk("cam-2", b"{short")])
    finally:
        sink.close()
    letters = db.execute("SELECT origin, length(raw) AS kept, detail FROM dead_letters ORDER BY origin").fetchall()
    assert [(r["origin"], r["kept"]) for r in letters] == [("devices/cam-1/heartbeat", 100),
                                                          ("devices/cam-2/heartbeat", 6)]
    assert letters[0]["detail"].endswith("(raw bytes cut to 100 of 5001)")
    assert "cut" not in letters[1]["detail"]


def test_a_sender_over_its_rate_is_counted_not_stored_and_others_are_not_held_back(
        database_url: str, db: psycopg.Connection) -> None:
    minute = [0.0]
    sink = HeartbeatSink(database_url, dead_letter_limit=DeadLetterLimit(50, clock=lambda: minute[0]))
    try:
        first = sink.write([_junk("cam-1", b"junk") for _ in range(300)] + [_junk("cam-2", b"junk")] * 3)
        minute[0] = 61.0                                       # the next minute: a new allowance
        second = sink.write([_junk("cam-1", b"junk") for _ in range(10)])
    finally:
        sink.close()
    stored = {r["origin"]: r["n"] for r in db.execute("SELECT origin, count(*) AS n FROM dead_letters GROUP BY 1")}
    assert (first.dead_lettered, first.suppressed, first.messages) == (53, 250, 303)
    assert (second.dead_lettered, second.suppressed) == (10, 0)
    assert stored == {"devices/cam-1/heartbeat": 60, "devices/cam-2/heartbeat": 3}


def test_the_senders_tracked_are_bounded_and_newcomers_share_one_allowance() -> None:
    limit = DeadLetterLimit(2, max_senders=3, clock=lambda: 0.0)
    admitted = [limit.admit(f"mqtt:dev-{n}") for n in range(10)]
    assert admitted == [True, True, True, True, True, False, False, False, False, False]


def test_retention_deletes_the_letters_that_aged_out(database_url: str, db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    for age_days in (1, 89, 91, 400):
        db.execute("INSERT INTO dead_letters (received_at, source, origin, reason, raw) VALUES"
                   " (%s, 'mqtt', 'devices/x/heartbeat', 'not_json', '\\x00')", (now - timedelta(days=age_days),))
    db.commit()
    deleted = DeadLetterRetention(database_url, timedelta(days=90)).run_once()
    kept = [r["received_at"] for r in db.execute("SELECT received_at FROM dead_letters ORDER BY received_at")]
    assert deleted == 2
    assert kept == [now - timedelta(days=89), now - timedelta(days=1)]


def test_memory_stays_flat_and_the_table_bounded_under_a_flood_of_junk(
        database_url: str, mqtt_broker, db: psycopg.Connection, tmp_path: Path) -> None:
    ingest = IngestProcess(source="mqtt", log_path=tmp_path / "ingest.log", env={
        "CITYKPI_DATABASE_URL": database_url, "CITYKPI_MQTT_URL": mqtt_broker.url,
        "CITYKPI_MQTT_PROTOCOL": "5" if mqtt_broker.supports_mqtt5 else "3.1.1",
        "CITYKPI_MQTT_CLIENT_ID": "junk-flood-ingest", "CITYKPI_DEAD_LETTER_RATE_PER_MINUTE": "100"}).start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="junk-flood", protocol=mqtt.MQTTv311)
    try:
        publisher.connect("127.0.0.1", int(mqtt_broker.url.rsplit(":", 1)[1]))
        publisher.loop_start()
        junk = b"{" + b"\xff" * 20_000                           # 20 kB, not UTF-8, not JSON
        for round_ in range(2):
            for _ in range(1_000):
                publisher.publish("devices/cam-junk/heartbeat", junk, qos=1).wait_for_publish(10)
            wait_for(lambda n=(round_ + 1) * 1_000: _suppressed(ingest) + _stored(db)["n"] >= n, timeout_s=120,
                     what="ingest dead-lettering or counting the junk")
            if round_ == 0:
                after_first = _peak_mib(ingest)
        suppressed, stored = _suppressed(ingest), _stored(db)
        growth = _peak_mib(ingest) - after_first
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        ingest.close()
    assert stored["n"] <= 200 and stored["biggest"] <= 4096      # a minute's allowance, or two across a boundary
    assert suppressed + stored["n"] == 2_000
    assert growth < 20                                           # MiB: a second thousand costs nothing lasting


def _suppressed(ingest: IngestProcess) -> float:
    return ingest.metric("citykpi_ingest_dead_letters_suppressed_total", 'source="mqtt",reason="not_utf8"') or 0


def _stored(db: psycopg.Connection) -> dict:
    db.rollback()
    return db.execute("SELECT count(*) AS n, coalesce(max(length(raw)), 0) AS biggest FROM dead_letters").fetchone()


def _peak_mib(ingest: IngestProcess) -> float:
    assert ingest.process is not None
    for line in Path(f"/proc/{ingest.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
