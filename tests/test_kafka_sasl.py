"""Kafka with SASL/SCRAM and ACLs against a real broker of its own (users created when its storage is
formatted, StandardAuthorizer): the simulator's producer and the ingest consumer, with the right passwords and
the ACLs deploy/README.md documents, store a heartbeat; with a wrong password, or without ACLs, each reports
why within a deadline instead of retrying in silence."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from base.brokers.kafka import KafkaSecurity
from base.settings import Settings
from devstack.errors import ServiceUnavailable
from devstack.kafka import KafkaBroker
from ingest.service import KafkaIngest
from simulators.stream import Outgoing
from simulators.transports import KafkaTransport
from tests.helpers import unavailable, wait_for
from tests.kafka_helpers import allow, refusal_reported

pytestmark = pytest.mark.kafka

USERS = {"citykpi-ingest": "ingest-scram-secret", "citykpi-simulator": "simulator-scram-secret",
         "outsider": "outsider-scram-secret"}


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    try:
        broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka-sasl")), scram_users=USERS,
                             authorizer=True).start()
    except ServiceUnavailable as exc:
        unavailable("Kafka with SASL", exc)
    yield broker
    broker.stop()


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"heartbeats-{suffix}", f"citykpi-ingest-{suffix}"


def _grant_as_documented(broker: KafkaBroker, topic: str, group: str) -> None:
    """deploy/README.md, "Kafka": the simulator (a producer) writes the topic and may create it; ingest reads
    the topic, in its group."""
    allow(broker.bootstrap, broker.admin_password, [
        ("User:citykpi-simulator", "write", "topic", topic), ("User:citykpi-simulator", "create", "topic", topic),
        ("User:citykpi-ingest", "read", "topic", topic), ("User:citykpi-ingest", "read", "group", group)])


def _settings(database_url: str, broker: KafkaBroker, topic: str, group: str, password: str,
              user: str = "citykpi-ingest") -> Settings:
    return Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap, kafka_topic=topic,
                    kafka_group_id=group, kafka_security_protocol="SASL_PLAINTEXT",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_username=user, kafka_password=password,
                    batch_max_wait_s=0.05, kafka_commit_interval_s=0.2, kafka_session_timeout_ms=6000)


def _heartbeat(device_id: str) -> Outgoing:
    body = {"device_id": device_id, "kind": "wifi_ap", "ts": datetime.now(UTC).replace(microsecond=0).isoformat()}
    return Outgoing(datetime.now(UTC), f"devices/{device_id}/heartbeat", device_id, json.dumps(body).encode())


def _simulator(password: str) -> KafkaSecurity:
    return KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "citykpi-simulator", password)


def _stored(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT device_id, source FROM heartbeats").fetchall()


def test_with_the_right_passwords_and_the_documented_acls_a_simulated_heartbeat_is_stored(
        database_url: str, sasl_kafka: KafkaBroker) -> None:
    topic, group = _names()
    _grant_as_documented(sasl_kafka, topic, group)
    transport = KafkaTransport(sasl_kafka.bootstrap, topic, security=_simulator(USERS["citykpi-simulator"]))
    transport.send(_heartbeat("wifi-sasl-1"))
    transport.close()
    ingest = KafkaIngest(_settings(database_url, sasl_kafka, topic, group, USERS["citykpi-ingest"]), database_url)
    ingest.start()
    try:
        wait_for(lambda: _stored(database_url) == [("wifi-sasl-1", "kafka")], timeout_s=60,
                 what="the heartbeat produced and consumed with SCRAM")
        assert ingest.source.last_error is None
        assert ingest.not_ready() == []
    finally:
        assert ingest.stop(timeout_s=15)


def test_a_wrong_password_keeps_ingest_not_ready_naming_the_authentication_failure(
        database_url: str, sasl_kafka: KafkaBroker) -> None:
    ingest = KafkaIngest(_settings(database_url, sasl_kafka, *_names(), "not-the-password"), database_url)
    try:
        # What /readyz answers, and the log says once: the broker's own reason, and what to check.
        assert refusal_reported(ingest, "the authentication failure") == [
            f"kafka: not connected to the broker (authentication failed at {sasl_kafka.bootstrap} (SASL_PLAINTEXT, "
            "SCRAM-SHA-512 as 'citykpi-ingest'): [Error 58] SaslAuthenticationFailed: Authentication failed during "
            "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512; check "
            "CITYKPI_KAFKA_USERNAME, CITYKPI_KAFKA_PASSWORD and CITYKPI_KAFKA_SASL_MECHANISM)"]
    finally:
        ingest.stop(timeout_s=15)
    assert not ingest.source.alive


def test_the_simulator_with_a_wrong_password_fails_at_once_with_the_reason(sasl_kafka: KafkaBroker) -> None:
    with pytest.raises(ConnectionError, match=r"authentication failed at .*SCRAM-SHA-256 as 'citykpi-simulator'"):
        KafkaTransport(sasl_kafka.bootstrap, "heartbeats", security=_simulator("not-the-password"))


def test_a_user_without_acls_keeps_ingest_not_ready_naming_the_refusal(database_url: str,
                                                                        sasl_kafka: KafkaBroker) -> None:
    topic, group = _names()
    _grant_as_documented(sasl_kafka, topic, group)
    ingest = KafkaIngest(_settings(database_url, sasl_kafka, topic, group, USERS["outsider"], user="outsider"),
                         database_url)
    ingest.start()
    try:
        wait_for(lambda: ingest.source.last_error is not None, timeout_s=30, what="the refusal")
        assert ingest.not_ready() == [
            f"kafka: not connected to the broker (not authorized ([Error 29] TopicAuthorizationFailedError: {topic}); "
            f"the Kafka ACLs must allow User:outsider to read topic {topic} and group {group} "
            '(deploy/README.md, "Kafka"))']
    finally:
        ingest.stop(timeout_s=15)
