"""Faults while heartbeats flow: nothing received is lost, duplicates are absorbed, every bad message is kept.

Each test injects one fault into real services — a database or broker restart, a SIGKILL of the ingest
process, a rebalance (see test_kafka_ingest.py), a flood of malformed messages — and then waits, with a
deadline, for the database to hold exactly what was published.
"""

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from base.db import connect
from base.settings import Settings
from citykpi.schema import migrate
from devstack.ingest_process import IngestProcess
from ingest.service import Ingest, MqttIngest
from simulators.mqtt_publisher import MqttPublisher
from tests.heartbeat_examples import EXAMPLES, RECEIVED
from tests.helpers import unavailable, wait_for
from tests.kafka_helpers import end_offsets, group_offsets, produce


def _heartbeats(count: int, *, prefix: str = "cam", now: datetime | None = None) -> list[dict]:
    """`count` distinct heartbeats over 10 devices, one second apart."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    return [{"device_id": f"{prefix}-{n % 10}", "kind": "cctv", "ts": (now - timedelta(seconds=n)).isoformat()}
            for n in range(count)]


def _publish(broker_url: str, heartbeats: list[dict]) -> None:
    publisher = MqttPublisher(broker_url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    publisher.publish_all(heartbeats)
    publisher.close()


def _kafka_records(heartbeats: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(hb["device_id"].encode(), json.dumps(hb).encode()) for hb in heartbeats]


def _count(url: str, table: str = "heartbeats") -> int:
    with connect(url) as conn:
        return conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))).fetchone()["n"]


def _count_or_none(url: str) -> int | None:
    try:
        return _count(url)
    except psycopg.OperationalError:
        return None


def _process_env(database_url: str, **extra: str) -> dict[str, str]:
    return {"CITYKPI_DATABASE_URL": database_url, "CITYKPI_BATCH_MAX_ROWS": "50", "CITYKPI_BATCH_MAX_WAIT_S": "0.05",
            "CITYKPI_RETRY_MAX_BACKOFF_S": "0.5", "CITYKPI_SHUTDOWN_TIMEOUT_S": "20",
            "CITYKPI_KAFKA_COMMIT_INTERVAL_S": "0.2", "CITYKPI_KAFKA_SESSION_TIMEOUT_MS": "6000", **extra}


def _mqtt_env(broker, client_id: str) -> dict[str, str]:
    return {"CITYKPI_MQTT_URL": broker.url, "CITYKPI_MQTT_PROTOCOL": "5" if broker.supports_mqtt5 else "3.1.1",
            "CITYKPI_MQTT_CLIENT_ID": client_id}


def _kafka_env(bootstrap: str, topic: str, group: str) -> dict[str, str]:
    return {"CITYKPI_KAFKA_BOOTSTRAP": bootstrap, "CITYKPI_KAFKA_TOPIC": topic, "CITYKPI_KAFKA_GROUP_ID": group}


@pytest.fixture
def processes() -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for process in started:
        process.close()


def _spawn(processes: list[IngestProcess], tmp_path: Path, source: str, env: dict[str, str]) -> IngestProcess:
    process = IngestProcess(source=source, env=env, log_path=tmp_path / f"ingest-{len(processes)}.log")
    processes.append(process)
    return process.start()


def test_mqtt_ingest_killed_mid_stream_loses_nothing_once_restarted(
        database_url: str, mqtt_broker, tmp_path: Path, processes: list[IngestProcess]) -> None:
    # A backlog in the session and a narrow delivery window: the kill lands with most of the stream unread.
    env = _process_env(database_url, CITYKPI_MQTT_RECEIVE_MAXIMUM="10",
                       **_mqtt_env(mqtt_broker, f"ingest-{uuid.uuid4().hex[:8]}"))
    assert _spawn(processes, tmp_path, "mqtt", env).terminate() == 0  # creates the persistent session
    _publish(mqtt_broker.url, _heartbeats(1200))
    first = _spawn(processes, tmp_path, "mqtt", env)
    wait_for(lambda: _count(database_url) >= 100, what="the first process storing")
    first.kill()  # no drain, no acknowledgement: the persistent session keeps what was not acknowledged
    assert _count(database_url) < 1200

    _spawn(processes, tmp_path, "mqtt", env)
    wait_for(lambda: _count(database_url) == 1200, timeout_s=60, what="all 1200 heartbeats after the restart")
    assert _count(database_url, "dead_letters") == 0


@pytest.mark.kafka
def test_kafka_ingest_killed_mid_stream_loses_nothing_once_restarted(
        database_url: str, kafka_bootstrap: str, tmp_path: Path, processes: list[IngestProcess]) -> None:
    topic, group = f"heartbeats-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    # A backlog in the topic and a narrow in-flight bound: the kill lands with most of the stream unread.
    env = _process_env(database_url, CITYKPI_KAFKA_MAX_IN_FLIGHT="20", **_kafka_env(kafka_bootstrap, topic, group))
    produce(kafka_bootstrap, topic, _kafka_records(_heartbeats(1200)))
    first = _spawn(processes, tmp_path, "kafka", env)
    wait_for(lambda: _count(database_url) >= 100, what="the first process storing")
    first.kill()  # offsets committed so far are all the group keeps; the rest is read again
    assert _count(database_url) < 1200

    _spawn(processes, tmp_path, "kafka", env)
    wait_for(lambda: _count(database_url) == 1200, timeout_s=90, what="all 1200 heartbeats after the restart")
    ends = end_offsets(kafka_bootstrap, topic)
    wait_for(lambda: group_offsets(kafka_bootstrap, topic, group) == {p: n for p, n in ends.items() if n},
             timeout_s=30, what="the restarted process committing to the end of every partition")
    assert _count(database_url, "dead_letters") == 0


@pytest.mark.kafka
def test_sigterm_over_kafka_exits_0_with_every_stored_message_committed(
        database_url: str, kafka_bootstrap: str, tmp_path: Path, processes: list[IngestProcess]) -> None:
    topic, group = f"heartbeats-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    process = _spawn(processes, tmp_path, "kafka", _process_env(database_url, **_kafka_env(kafka_bootstrap, topic,
                                                                                             group)))
    assert process.healthz() == 200
    produce(kafka_bootstrap, topic, _kafka_records(_heartbeats(1500)))
    wait_for(lambda: _count(database_url) > 0, what="the process storing")
    assert process.terminate(timeout_s=40) == 0
    # One distinct heartbeat per record: the committed offsets count exactly the records written.
    assert sum(group_offsets(kafka_bootstrap, topic, group).values()) == _count(database_url)
    assert "stopped cleanly" in process.log()


def test_sigterm_over_mqtt_exits_0_having_acknowledged_everything_it_stored(
        database_url: str, mqtt_broker, tmp_path: Path, processes: list[IngestProcess]) -> None:
    # The backlog waits in the session before the first process starts, and a narrow delivery window (MQTT 5
    # Receive Maximum) lets it take only a little at a time: when SIGTERM comes most of the stream is still
    # in the broker, so the second process has something to receive and the test something to prove.
    env = _process_env(database_url, CITYKPI_MQTT_RECEIVE_MAXIMUM="10",
                       **_mqtt_env(mqtt_broker, f"ingest-{uuid.uuid4().hex[:8]}"))
    assert _spawn(processes, tmp_path, "mqtt", env).terminate() == 0  # creates the persistent session
    _publish(mqtt_broker.url, _heartbeats(3000))
    first = _spawn(processes, tmp_path, "mqtt", env)
    wait_for(lambda: _count(database_url) > 0, what="the first process storing")
    assert first.terminate(timeout_s=40) == 0

    stored_by_first = _count(database_url)
    second = _spawn(processes, tmp_path, "mqtt", env)
    wait_for(lambda: _count(database_url) == 3000, timeout_s=60, what="the rest from the session")
    wait_for(lambda: second.metric("citykpi_ingest_heartbeats_stored_total", 'source="mqtt"') == 3000 - stored_by_first,
             what="the second process's metrics to show what it stored")
    # Whatever the first process stored it also acknowledged: none of it came back to the second.
    assert second.metric("citykpi_ingest_heartbeats_duplicate_total", 'source="mqtt"') == 0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator:
    """A PostgreSQL server of this test's own, to stop and start (the session's serves everyone else)."""
    from devstack.errors import ServiceUnavailable
    from devstack.postgres import LocalPostgres

    try:
        server = LocalPostgres(workdir=tmp_path / "pg").start()
    except ServiceUnavailable as exc:
        unavailable("PostgreSQL", exc)
    with connect(server.url) as conn:
        migrate(conn)
    yield server
    server.close()


def _in_process_settings(database_url: str, broker, **extra: object) -> Settings:
    return Settings(database_url=database_url, mqtt_url=broker.url,
                    mqtt_protocol="5" if broker.supports_mqtt5 else "3.1.1",
                    mqtt_client_id=f"test-{uuid.uuid4().hex[:8]}", batch_max_rows=50, batch_max_wait_s=0.05,
                    retry_max_backoff_s=0.5, **extra)


def test_postgresql_restarted_mid_stream_loses_and_duplicates_nothing(own_postgres, mqtt_broker) -> None:
    url = own_postgres.url
    ingest = MqttIngest(_in_process_settings(url, mqtt_broker), url)
    ingest.start()
    try:
        wait_for(ingest.source.connected.is_set, what="the MQTT subscription")
        batches = _heartbeats(1000)
        _publish(mqtt_broker.url, batches[:500])
        wait_for(lambda: _count(url) >= 50, what="some heartbeats stored before the restart")
        own_postgres.stop()
        _publish(mqtt_broker.url, batches[500:])
        wait_for(lambda: any(p.startswith("database:") for p in ingest.not_ready()), what="/readyz noticing")
        own_postgres.start()
        wait_for(lambda: _count_or_none(url) == 1000, timeout_s=60, what="all 1000 heartbeats after the restart")
        assert ingest.not_ready() == []
    finally:
        assert ingest.stop() is True
    assert ingest.worker.failure is None
    assert _count(url, "dead_letters") == 0


def test_mosquitto_restarted_mid_stream_the_worker_reconnects_and_loses_nothing(database_url: str,
                                                                               tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from devstack.mqtt_broker import LocalMqttBroker

    broker = LocalMqttBroker(workdir=tmp_path).start()
    # A narrow delivery window keeps most of the first half queued in the broker when it restarts.
    ingest = MqttIngest(_in_process_settings(database_url, broker, mqtt_receive_maximum=10), database_url)
    reconnects_before = REGISTRY.get_sample_value("citykpi_ingest_reconnects_total", {"source": "mqtt"}) or 0
    try:
        ingest.start()
        wait_for(ingest.source.connected.is_set, what="the MQTT subscription")
        batches = _heartbeats(1000)
        _publish(broker.url, batches[:500])
        wait_for(lambda: _count(database_url) >= 50, what="some heartbeats stored before the restart")
        broker.stop()
        broker.start()
        wait_for(ingest.source.connected.is_set, timeout_s=60, what="the worker reconnecting")
        _publish(broker.url, batches[500:])
        wait_for(lambda: _count(database_url) == 1000, timeout_s=60, what="all 1000 heartbeats")
    finally:
        ingest.stop()
        broker.close()
    assert ingest.worker.failure is None
    assert REGISTRY.get_sample_value("citykpi_ingest_reconnects_total", {"source": "mqtt"}) > reconnects_before
    assert _count(database_url, "dead_letters") == 0


# Every example the table rejects outright, that a device topic or a Kafka key can carry.
_BAD = [(name, raw, device, expected) for name, raw, device, array, expected in EXAMPLES
        if device is not None and not array and not any(e.startswith("ok") for e in expected)
        and not raw.lstrip().startswith(b"[")]


@pytest.mark.kafka
def test_a_flood_of_malformed_messages_over_both_sources_stores_every_good_one_and_dead_letters_every_bad_one(
        database_url: str, mqtt_broker, kafka_bootstrap: str) -> None:
    topic = f"heartbeats-{uuid.uuid4().hex[:8]}"
    # Every letter kept: the few devices of the example table send far more than a minute's dead-letter rate.
    settings = _in_process_settings(database_url, mqtt_broker, kafka_bootstrap=kafka_bootstrap, kafka_topic=topic,
                                    kafka_group_id=f"group-{uuid.uuid4().hex[:8]}", kafka_commit_interval_s=0.2,
                                    dead_letter_rate_per_minute=100_000)
    good_mqtt = _heartbeats(200, prefix="mqtt-cam", now=RECEIVED)
    good_kafka = _heartbeats(200, prefix="kafka-cam", now=RECEIVED)
    bad = [_BAD[n % len(_BAD)] for n in range(200)]
    expected = Counter()
    for _name, _raw, _device, reasons in bad:
        expected.update({("mqtt", reason): 1 for reason in reasons})
        expected.update({("kafka", reason): 1 for reason in reasons})

    ingest = Ingest(settings, database_url, sources=("mqtt", "kafka"), clock=lambda: RECEIVED)
    ingest.start()
    try:
        wait_for(lambda: all(s.connected.is_set() for s in ingest.sources), timeout_s=60, what="both sources")
        publisher = MqttPublisher(mqtt_broker.url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        kafka_records = []
        for good_m, good_k, (_name, raw, device, _reasons) in zip(good_mqtt, good_kafka, bad, strict=True):
            publisher.publish_heartbeat(good_m)
            publisher.publish_raw(f"devices/{device}/heartbeat", raw)
            kafka_records += [(good_k["device_id"].encode(), json.dumps(good_k).encode()), (device.encode(), raw)]
        publisher.close()
        produce(kafka_bootstrap, topic, kafka_records)
        wait_for(lambda: ingest.worker.totals.messages == 800, timeout_s=90, what="all 800 messages written")
    finally:
        ingest.stop()
    with connect(database_url) as db:
        stored = {r["source"]: r["n"] for r in db.execute("SELECT source, count(*) AS n FROM heartbeats GROUP BY 1")}
        letters = Counter({(r["source"], r["reason"]): r["n"] for r in db.execute(
            "SELECT source, reason, count(*) AS n FROM dead_letters GROUP BY 1, 2")})
    assert stored == {"mqtt": 200, "kafka": 200}
    assert letters == expected


def test_sigterm_with_the_database_down_exits_1_within_the_shutdown_timeout_and_loses_nothing(
        own_postgres, mqtt_broker, tmp_path: Path, processes: list[IngestProcess]) -> None:
    url = own_postgres.url
    env = _process_env(url, CITYKPI_SHUTDOWN_TIMEOUT_S="2",
                       **_mqtt_env(mqtt_broker, f"ingest-{uuid.uuid4().hex[:8]}"))
    first = _spawn(processes, tmp_path, "mqtt", env)
    own_postgres.stop()
    _publish(mqtt_broker.url, _heartbeats(300))
    wait_for(lambda: first.metric("citykpi_ingest_database_errors_total", 'error_class="retry:client"') is not None,
             what="the sink failing to write")
    began = time.monotonic()
    assert first.terminate(timeout_s=30) == 1
    assert time.monotonic() - began < 2 + 10  # the drain deadline, then the last retry's give-up
    assert "drain did not finish" in first.log() or "stopped with problems" in first.log()

    own_postgres.start()
    _spawn(processes, tmp_path, "mqtt", env)
    wait_for(lambda: _count(url) == 300, timeout_s=60, what="all 300 heartbeats from the session")
