import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from base.settings import Settings
from ingest.service import MqttIngest
from simulators.mqtt_publisher import MqttPublisher
from tests.helpers import wait_for


def _settings(database_url: str, broker, **overrides: object) -> Settings:
    return Settings(database_url=database_url, mqtt_url=broker.url,
                    mqtt_protocol="5" if broker.supports_mqtt5 else "3.1.1",
                    mqtt_client_id=f"test-{uuid.uuid4().hex[:8]}", batch_max_wait_s=0.05, **overrides)


def started_ingest(database_url: str, broker, **overrides: object) -> MqttIngest:
    """A running in-process MQTT ingest, subscribed; `overrides` are settings (e.g. mappings=FILE)."""
    ingest = MqttIngest(_settings(database_url, broker, **overrides), database_url)
    ingest.start()
    wait_for(ingest.source.connected.is_set, what="the ingest worker's MQTT connection")
    return ingest


def _run_ingest(database_url: str, broker, messages: list[tuple[str, bytes]], **overrides: object) -> MqttIngest:
    ingest = started_ingest(database_url, broker, **overrides)
    publisher = MqttPublisher(broker.url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    for topic, body in messages:
        publisher.publish_raw(topic, body)
    publisher.close()
    wait_for(lambda: ingest.worker.totals.messages >= len(messages), what=f"{len(messages)} messages written")
    ingest.stop()
    assert ingest.worker.failure is None
    return ingest


def _heartbeat(device_id: str, ts: datetime, kind: str = "cctv", **fields: object) -> tuple[str, bytes]:
    body = {"device_id": device_id, "kind": kind, "ts": ts.isoformat(), **fields}
    return f"devices/{device_id}/heartbeat", json.dumps(body).encode()


def test_heartbeats_published_over_mqtt_are_stored(database_url: str, mqtt_broker, db: psycopg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    messages = [_heartbeat(f"cam-{n}", now - timedelta(minutes=m)) for n in range(5) for m in range(20)]
    _run_ingest(database_url, mqtt_broker, messages)
    stored = db.execute("SELECT count(*) AS n, count(DISTINCT device_id) AS devices, bool_and(healthy) AS healthy,"
                        " min(source) AS source FROM heartbeats").fetchone()
    assert dict(stored) == {"n": 100, "devices": 5, "healthy": True, "source": "mqtt"}


def test_a_duplicate_is_stored_once_and_the_first_wins(database_url: str, mqtt_broker,
                                                      db: psycopg.Connection) -> None:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    ingest = _run_ingest(database_url, mqtt_broker, [
        _heartbeat("cam-1", ts, seq=1), _heartbeat("cam-1", ts, seq=2), _heartbeat("cam-1", ts, seq=3)])
    rows = db.execute("SELECT seq FROM heartbeats").fetchall()
    assert [r["seq"] for r in rows] == [1]
    assert (ingest.worker.totals.stored, ingest.worker.totals.duplicates) == (1, 2)


def test_every_rejected_message_lands_in_dead_letters_with_its_reason(database_url: str, mqtt_broker,
                                                                     db: psycopg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    db.execute("INSERT INTO devices (device_id, kind) VALUES ('air-1', 'air_monitor')")
    db.commit()
    messages = [
        _heartbeat("cam-1", now),
        ("devices/cam-1/heartbeat", b"{not json"),
        ("devices/cam-1/heartbeat", json.dumps({"device_id": "cam-2", "kind": "cctv", "ts": now.isoformat()})
         .encode()),
        _heartbeat("cam-1", now + timedelta(minutes=10)),
        _heartbeat("cam-1", now - timedelta(days=8)),
        _heartbeat("air-1", now, kind="cctv"),
        ("devices/cam-1/heartbeat", b"\xff\xfe"),
    ]
    _run_ingest(database_url, mqtt_broker, messages)
    reasons = [r["reason"] for r in db.execute("SELECT reason FROM dead_letters ORDER BY reason")]
    raw = db.execute("SELECT raw FROM dead_letters WHERE reason = 'not_json'").fetchone()["raw"]
    stored = db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"]
    assert reasons == ["device_mismatch", "kind_mismatch", "not_json", "not_utf8", "ts_future", "ts_too_old"]
    assert bytes(raw) == b"{not json"
    assert stored == 1


def test_a_gateway_reports_for_several_cameras_in_one_message(database_url: str, mqtt_broker,
                                                             db: psycopg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    body = json.dumps([{"device_id": f"cam-{n}", "kind": "cctv", "ts": now.isoformat(),
                        "checks": {"stream_ok": n != 2}} for n in range(3)]).encode()
    _run_ingest(database_url, mqtt_broker, [("gateways/vms-1/heartbeats", body)])
    rows = db.execute("SELECT device_id, healthy FROM heartbeats ORDER BY device_id").fetchall()
    assert [(r["device_id"], r["healthy"]) for r in rows] == [("cam-0", True), ("cam-1", True), ("cam-2", False)]


def test_two_workers_in_one_shared_group_split_the_stream_and_store_it_once(database_url: str, mqtt_broker,
                                                                         db: psycopg.Connection) -> None:
    if not mqtt_broker.supports_mqtt5:
        import pytest

        pytest.skip("shared subscriptions need an MQTT 5 broker (Mosquitto)")
    group = f"g{uuid.uuid4().hex[:6]}"
    workers = []
    for n in range(2):
        settings = _settings(database_url, mqtt_broker).model_copy(update={"mqtt_shared_group": group,
                                                                            "mqtt_client_id": f"{group}-{n}"})
        worker = MqttIngest(settings, database_url)
        worker.start()
        wait_for(worker.source.connected.is_set, what=f"worker {n} subscribed")
        workers.append(worker)
    now = datetime.now(UTC).replace(microsecond=0)
    publisher = MqttPublisher(mqtt_broker.url, client_id=f"pub-{group}")
    for n in range(400):
        topic, body = _heartbeat(f"cam-{n % 20}", now - timedelta(seconds=n))
        publisher.publish_raw(topic, body)
    publisher.close()
    wait_for(lambda: sum(w.worker.totals.messages for w in workers) >= 400, what="400 messages written")
    for worker in workers:
        worker.stop()
    shares = [w.worker.totals.messages for w in workers]
    stored = db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"]
    assert sum(shares) == 400 and min(shares) > 0  # each worker took part, none took a message twice
    assert stored == 400


def test_a_failure_on_pahos_thread_is_reported_and_the_messages_read_before_it_are_still_stored(
        database_url: str, mqtt_broker, db: psycopg.Connection) -> None:
    calls = 0

    def clock_failing_at_the_third_message() -> datetime:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the clock broke")
        return datetime.now(UTC)

    ingest = MqttIngest(_settings(database_url, mqtt_broker), database_url, clock=clock_failing_at_the_third_message)
    ingest.start()
    try:
        wait_for(ingest.source.connected.is_set, what="the ingest worker's MQTT connection")
        now = datetime.now(UTC).replace(microsecond=0)
        publisher = MqttPublisher(mqtt_broker.url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        for n in range(5):
            publisher.publish_raw(*_heartbeat("cam-1", now - timedelta(minutes=n), seq=n))
        publisher.close()
        wait_for(lambda: ingest.failures() != [], what="the failure reported")
        wait_for(lambda: ingest.worker.totals.stored == 2, what="the two heartbeats read before it stored")
        assert ingest.failures() == ["mqtt: RuntimeError: the clock broke"]
        assert [r["seq"] for r in db.execute("SELECT seq FROM heartbeats ORDER BY seq")] == [0, 1]
    finally:
        ingest.stop(timeout_s=10)
