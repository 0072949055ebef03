"""The Kafka source against a real broker: the example table, storage, offsets, the key check, rebalances."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from base.settings import Settings
from ingest.decode import DecodeStage, Limits
from ingest.handoff import Handoff
from ingest.kafka import KafkaSource
from ingest.message import Message
from ingest.service import KafkaIngest
from tests.heartbeat_examples import EXAMPLES, RECEIVED
from tests.helpers import unavailable, wait_for
from tests.kafka_helpers import end_offsets, group_offsets, produce

pytestmark = pytest.mark.kafka

# In Kafka an array value is, by contract, a gateway's report whatever its key: the table's "array on a
# device topic" (an MQTT-only distinction) has no Kafka equivalent.
_NOT_EXPRESSIBLE_IN_KAFKA = {"array on a device topic"}
KAFKA_EXAMPLES = [e for e in EXAMPLES if e[0] not in _NOT_EXPRESSIBLE_IN_KAFKA]


def _key(device_id: str | None, allow_array: bool) -> bytes | None:
    if device_id is not None:
        return device_id.encode()
    return b"vms-1" if allow_array else None


def _settings(database_url: str, bootstrap: str, topic: str, group_id: str) -> Settings:
    return Settings(database_url=database_url, kafka_bootstrap=bootstrap, kafka_topic=topic,
                    kafka_group_id=group_id, batch_max_wait_s=0.05, batch_max_rows=200,
                    kafka_commit_interval_s=0.2, kafka_session_timeout_ms=6000, retry_max_backoff_s=0.5)


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"heartbeats-{suffix}", f"group-{suffix}"


def _heartbeat(device_id: str, ts: datetime, **fields: object) -> tuple[bytes, bytes]:
    body = {"device_id": device_id, "kind": "cctv", "ts": ts.isoformat(), **fields}
    return device_id.encode(), json.dumps(body).encode()


def _count(db: psycopg.Connection, table: str) -> int:
    db.rollback()  # a fresh snapshot on every poll
    return db.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))).fetchone()["n"]


def _lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("citykpi_ingest_kafka_consumer_lag_messages",
                                     {"topic": topic, "partition": str(partition)})


@pytest.fixture(scope="module")
def table_through_kafka(kafka_bootstrap: str) -> dict[str, Message]:
    """Every example produced once to Kafka and read back by the source, keyed by example name."""
    topic, group = _names()
    placed = produce(kafka_bootstrap, topic,
                     [(_key(device, array), raw) for _, raw, device, array, _ in KAFKA_EXAMPLES])
    by_origin = {f"{topic}/{partition}/{offset}": example[0] for example, (partition, offset)
                 in zip(KAFKA_EXAMPLES, placed, strict=True)}
    source = KafkaSource(kafka_bootstrap, topic=topic, group_id=group, clock=lambda: RECEIVED)
    received = Handoff(10_000)
    source.start(received, DecodeStage(Limits()))
    messages: dict[str, Message] = {}
    try:
        def all_received() -> bool:
            for message in _take_now(received, 10_000):
                messages[by_origin[message.origin]] = message
                message.acknowledge()
            return len(messages) == len(KAFKA_EXAMPLES)
        wait_for(all_received, timeout_s=60, what="every example back from Kafka")
    finally:
        source.close()
    return messages


@pytest.mark.parametrize(("name", "raw", "expected"), [(e[0], e[1], e[4]) for e in KAFKA_EXAMPLES],
                         ids=[e[0] for e in KAFKA_EXAMPLES])
def test_kafka_source_agrees_with_the_example_table(table_through_kafka: dict[str, Message], name: str, raw: bytes,
                                                    expected: list[str]) -> None:
    message = table_through_kafka[name]
    decoded = message.decoded
    outcomes = ["ok" if hb.healthy else "ok:unhealthy" for hb in decoded.accepted]
    outcomes += [r.reason for r in decoded.rejected]
    assert message.payload == raw
    assert sorted(outcomes) == sorted(expected)


def test_heartbeats_produced_to_kafka_are_stored_and_their_offsets_committed(
        database_url: str, kafka_bootstrap: str, db: psycopg.Connection) -> None:
    topic, group = _names()
    now = datetime.now(UTC).replace(microsecond=0)
    records = [_heartbeat(f"cam-{n}", now - timedelta(minutes=m)) for n in range(6) for m in range(50)]
    produce(kafka_bootstrap, topic, records)
    ingest = KafkaIngest(_settings(database_url, kafka_bootstrap, topic, group), database_url)
    ingest.start()
    wait_for(lambda: _count(db, "heartbeats") == 300, timeout_s=60, what="300 heartbeats stored")
    ends = end_offsets(kafka_bootstrap, topic)
    wait_for(lambda: group_offsets(kafka_bootstrap, topic, group) == {p: n for p, n in ends.items() if n},
             timeout_s=30, what="the group's offsets committed up to the end of each partition")
    wait_for(lambda: [_lag(topic, p) for p, n in ends.items() if n] == [0] * len([n for n in ends.values() if n]),
             timeout_s=30, what="the consumer-lag gauge of every partition falling to 0")
    assert ingest.stop() is True
    row = db.execute("SELECT count(DISTINCT device_id) AS devices, min(source) AS source FROM heartbeats").fetchone()
    assert dict(row) == {"devices": 6, "source": "kafka"}
    assert ingest.worker.totals.stored == 300


def test_an_object_whose_device_id_is_not_the_key_is_dead_lettered_with_topic_partition_offset(
        database_url: str, kafka_bootstrap: str, db: psycopg.Connection) -> None:
    topic, group = _names()
    now = datetime.now(UTC).replace(microsecond=0)
    _, body = _heartbeat("cam-2", now)
    [(partition, offset)] = produce(kafka_bootstrap, topic, [(b"cam-1", body)])
    ingest = KafkaIngest(_settings(database_url, kafka_bootstrap, topic, group), database_url)
    ingest.start()
    wait_for(lambda: _count(db, "dead_letters") == 1, timeout_s=60, what="one dead letter")
    ingest.stop()
    letter = db.execute("SELECT source, origin, reason, detail, raw FROM dead_letters").fetchone()
    assert (letter["source"], letter["origin"], letter["reason"]) == ("kafka", f"{topic}/{partition}/{offset}",
                                                                      "device_mismatch")
    assert "'cam-2' != 'cam-1'" in letter["detail"]
    assert bytes(letter["raw"]) == body
    assert _count(db, "heartbeats") == 0


def test_a_gateway_array_keyed_by_the_gateway_id_is_stored_for_each_camera(
        database_url: str, kafka_bootstrap: str, db: psycopg.Connection) -> None:
    topic, group = _names()
    now = datetime.now(UTC).replace(microsecond=0)
    body = json.dumps([{"device_id": f"cam-{n}", "kind": "cctv", "ts": now.isoformat()} for n in range(4)]).encode()
    produce(kafka_bootstrap, topic, [(b"vms-7", body)])
    ingest = KafkaIngest(_settings(database_url, kafka_bootstrap, topic, group), database_url)
    ingest.start()
    wait_for(lambda: _count(db, "heartbeats") == 4, timeout_s=60, what="four cameras' heartbeats")
    ingest.stop()
    assert _count(db, "dead_letters") == 0


def test_a_second_worker_joining_and_leaving_the_group_loses_and_double_stores_nothing(
        database_url: str, kafka_bootstrap: str, db: psycopg.Connection) -> None:
    topic, group = _names()
    settings = _settings(database_url, kafka_bootstrap, topic, group)
    now = datetime.now(UTC).replace(microsecond=0)
    waves = [[_heartbeat(f"cam-{n}", now - timedelta(seconds=wave * 1000 + s)) for n in range(20) for s in range(25)]
             for wave in range(3)]  # 3 × 500 distinct heartbeats over 20 keys, so every partition gets some
    first = KafkaIngest(settings, database_url)
    first.start()
    produce(kafka_bootstrap, topic, waves[0])
    wait_for(lambda: _count(db, "heartbeats") >= 100, timeout_s=60, what="the first worker storing")

    second = KafkaIngest(settings, database_url)
    second.start()
    wait_for(lambda: len(second.source.tracker.assigned()) > 0 and len(first.source.tracker.assigned()) > 0,
             timeout_s=60, what="the partitions split between the two workers")
    produce(kafka_bootstrap, topic, waves[1])
    wait_for(lambda: _count(db, "heartbeats") == 1000, timeout_s=60, what="two waves stored by two workers")
    assert second.stop() is True  # leaves the group: its partitions go back to the first worker

    produce(kafka_bootstrap, topic, waves[2])
    wait_for(lambda: _count(db, "heartbeats") == 1500, timeout_s=60, what="the third wave stored")
    ends = end_offsets(kafka_bootstrap, topic)
    wait_for(lambda: group_offsets(kafka_bootstrap, topic, group) == {p: n for p, n in ends.items() if n},
             timeout_s=30,
             what="the group's offsets committed to the end of every partition")
    assert first.stop() is True
    assert second.worker.totals.stored > 0
    assert first.worker.totals.stored + second.worker.totals.stored == 1500
    assert _count(db, "dead_letters") == 0


def test_the_source_stops_fetching_at_max_in_flight_until_the_sink_acknowledges(kafka_bootstrap: str) -> None:
    topic, group = _names()
    now = datetime.now(UTC).replace(microsecond=0)
    produce(kafka_bootstrap, topic, [_heartbeat("cam-1", now - timedelta(seconds=n)) for n in range(100)])
    source = KafkaSource(kafka_bootstrap, topic=topic, group_id=group, max_in_flight=10)
    handed_over = Handoff(10_000)
    source.start(handed_over, DecodeStage(Limits()))
    try:
        wait_for(lambda: handed_over.qsize() >= 10, timeout_s=60, what="the first 10 records")
        assert handed_over.qsize() == 10
        for message in _take_now(handed_over, 4):
            message.acknowledge()
        wait_for(lambda: handed_over.qsize() >= 10, timeout_s=30, what="4 more records once 4 were acknowledged")
        assert (handed_over.qsize(), source.tracker.unacknowledged()) == (10, 10)
    finally:
        source.close()


def _take_now(handoff: Handoff, most: int) -> list[Message]:
    return handoff.take(most, first_wait_s=0, max_wait_s=0, idle_s=0)


def test_closing_while_the_sink_queue_is_full_still_ends_the_consumer_thread(kafka_bootstrap: str) -> None:
    topic, group = _names()
    now = datetime.now(UTC).replace(microsecond=0)
    produce(kafka_bootstrap, topic, [_heartbeat("cam-1", now - timedelta(seconds=n)) for n in range(20)])
    source = KafkaSource(kafka_bootstrap, topic=topic, group_id=group)
    nobody_drains = Handoff(5)
    source.start(nobody_drains, DecodeStage(Limits()))
    wait_for(lambda: nobody_drains.qsize() >= 5, timeout_s=60, what="the hand-over filling up")
    # More records: a fetch of them is received (so counted by the tracker) but finds no room.
    produce(kafka_bootstrap, topic, [_heartbeat("cam-2", now - timedelta(seconds=n)) for n in range(20)])
    wait_for(lambda: source.tracker.unacknowledged() > nobody_drains.qsize(), timeout_s=60,
             what="a fetch waiting for room")
    source.close(timeout_s=10)
    assert not source.alive
    assert group_offsets(kafka_bootstrap, topic, group) == {}  # nothing acknowledged, nothing committed


@pytest.fixture
def own_kafka(tmp_path):
    """A Kafka broker of this test's own, to stop and start (the session's serves everyone else)."""
    from devstack.errors import ServiceUnavailable
    from devstack.kafka import KafkaBroker

    try:
        broker = KafkaBroker(tmp_path / "kafka").start()
    except ServiceUnavailable as exc:
        unavailable("Kafka", exc)
    yield broker
    broker.stop()


def test_kafka_restarted_mid_stream_readiness_drops_and_returns_and_nothing_is_lost(
        database_url: str, own_kafka, db: psycopg.Connection) -> None:
    topic, group = _names()
    bootstrap = own_kafka.bootstrap
    now = datetime.now(UTC).replace(microsecond=0)
    waves = [[_heartbeat(f"cam-{n}", now - timedelta(seconds=wave * 1000 + s)) for n in range(10) for s in range(30)]
             for wave in range(2)]
    reconnects_before = REGISTRY.get_sample_value("citykpi_ingest_reconnects_total", {"source": "kafka"}) or 0
    produce(bootstrap, topic, waves[0])
    ingest = KafkaIngest(_settings(database_url, bootstrap, topic, group), database_url)
    ingest.source.probe_interval_s = 0.5
    ingest.start()
    try:
        wait_for(lambda: _count(db, "heartbeats") == 300, timeout_s=60, what="the first wave stored")
        own_kafka.stop()
        wait_for(lambda: not ingest.source.connected.is_set(), timeout_s=30, what="the source noticing")
        assert any(p.startswith("kafka:") for p in ingest.not_ready())
        own_kafka.start()
        produce(bootstrap, topic, waves[1])
        wait_for(lambda: _count(db, "heartbeats") == 600, timeout_s=90, what="the second wave stored")
        wait_for(ingest.source.connected.is_set, timeout_s=30, what="the source ready again")
        ends = end_offsets(bootstrap, topic)
        wait_for(lambda: group_offsets(bootstrap, topic, group) == {p: n for p, n in ends.items() if n},
                 timeout_s=30, what="offsets committed to the end after the restart")
    finally:
        ingest.stop()
    assert ingest.worker.failure is None
    assert REGISTRY.get_sample_value("citykpi_ingest_reconnects_total", {"source": "kafka"}) > reconnects_before
    assert _count(db, "dead_letters") == 0
