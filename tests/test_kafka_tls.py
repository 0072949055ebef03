"""Kafka over TLS against real brokers of their own, with a TLS listener configured as deploy/README.md §6 says
(a PEM keystore: the key, then the certificate) and certificates made by a throwaway CA in the test: the
simulator's producer and the ingest consumer trusting that CA store a heartbeat, over SSL and over SASL_SSL;
trusting another CA, or reaching the broker by a name its certificate does not carry, each says why within a
deadline and stores nothing."""

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from base.brokers.kafka import KafkaSecurity
from base.settings import Settings
from devstack.errors import ServiceUnavailable
from devstack.kafka import KafkaBroker, KafkaTls
from ingest.service import KafkaIngest
from simulators.stream import Outgoing
from simulators.transports import KafkaTransport
from tests.helpers import unavailable, wait_for
from tests.kafka_helpers import refusal_reported
from tests.tls_helpers import ThrowawayCa

pytestmark = pytest.mark.kafka

USERS = {"citykpi-ingest": "ingest-scram-secret", "citykpi-simulator": "simulator-scram-secret"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("kafka-pki")
    ca = ThrowawayCa.create(directory / "ca", "citykpi-kafka-test-ca")
    # Only the address the clients use: reaching the broker as "localhost" must fail the host name check.
    return {"ca": ca, "other_ca": ThrowawayCa.create(directory / "other", "someone-else-ca"),
            "server": ca.issue("kafka", names="IP:127.0.0.1")}


def _start(workdir: Path, pki: dict, **options: object) -> KafkaBroker:
    server = pki["server"]
    try:
        return KafkaBroker(workdir, tls=KafkaTls(server.cert, server.key), **options).start()
    except ServiceUnavailable as exc:
        unavailable("Kafka with TLS", exc)


@pytest.fixture(scope="module")
def tls_kafka(pki: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = _start(Path(tmp_path_factory.mktemp("kafka-tls")), pki)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_tls_kafka(pki: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = _start(Path(tmp_path_factory.mktemp("kafka-sasl-tls")), pki, scram_users=USERS)
    yield broker
    broker.stop()


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"heartbeats-{suffix}", f"citykpi-ingest-{suffix}"


def _settings(database_url: str, bootstrap: str, topic: str, group: str, ca: Path, **security: object) -> Settings:
    return Settings(database_url=database_url, kafka_bootstrap=bootstrap, kafka_topic=topic, kafka_group_id=group,
                    kafka_ca_file=ca, batch_max_wait_s=0.05, kafka_commit_interval_s=0.2,
                    kafka_session_timeout_ms=6000, **{"kafka_security_protocol": "SSL", **security})


def _heartbeat(device_id: str) -> Outgoing:
    body = {"device_id": device_id, "kind": "wifi_ap", "ts": datetime.now(UTC).replace(microsecond=0).isoformat()}
    return Outgoing(datetime.now(UTC), f"devices/{device_id}/heartbeat", device_id, json.dumps(body).encode())


def _send(bootstrap: str, topic: str, security: KafkaSecurity, device_id: str) -> None:
    transport = KafkaTransport(bootstrap, topic, security=security)
    transport.send(_heartbeat(device_id))
    transport.close()  # waits for the broker's acknowledgement


def _stored(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT device_id, source FROM heartbeats").fetchall()


def _ingest_stores(ingest: KafkaIngest, database_url: str, expected: list[tuple[str, str]], what: str) -> None:
    ingest.start()
    try:
        wait_for(lambda: _stored(database_url) == expected, timeout_s=60, what=what)
        assert ingest.source.last_error is None
        assert ingest.not_ready() == []
    finally:
        assert ingest.stop(timeout_s=15)


def test_trusting_the_brokers_ca_the_simulator_and_ingest_store_a_heartbeat_over_tls(
        database_url: str, tls_kafka: KafkaBroker, pki: dict) -> None:
    topic, group = _names()
    assert tls_kafka.tls_security_protocol == "SSL"
    _send(tls_kafka.tls_bootstrap, topic, KafkaSecurity("SSL", ca_file=pki["ca"].cert), "wifi-tls-1")
    ingest = KafkaIngest(_settings(database_url, tls_kafka.tls_bootstrap, topic, group, pki["ca"].cert),
                         database_url)
    _ingest_stores(ingest, database_url, [("wifi-tls-1", "kafka")], "the heartbeat produced and consumed over TLS")


def test_ingest_trusting_another_ca_stays_not_ready_naming_the_ca_and_stores_nothing(
        database_url: str, tls_kafka: KafkaBroker, pki: dict) -> None:
    topic, group = _names()
    _send(tls_kafka.tls_bootstrap, topic, KafkaSecurity("SSL", ca_file=pki["ca"].cert), "wifi-tls-2")
    untrusting = KafkaIngest(_settings(database_url, tls_kafka.tls_bootstrap, topic, group, pki["other_ca"].cert),
                             database_url)
    try:
        assert refusal_reported(untrusting, "the TLS failure") == [
            f"kafka: not connected to the broker (TLS: the certificate of {tls_kafka.tls_bootstrap} was not accepted "
            "(unable to get local issuer certificate); is CITYKPI_KAFKA_CA_FILE the CA that signed it?)"]
        assert _stored(database_url) == []
    finally:
        assert untrusting.stop(timeout_s=15)
    assert not untrusting.source.alive
    # The same record, group and broker, trusting the right CA: it was there to be stored all along.
    trusting = KafkaIngest(_settings(database_url, tls_kafka.tls_bootstrap, topic, group, pki["ca"].cert),
                           database_url)
    _ingest_stores(trusting, database_url, [("wifi-tls-2", "kafka")], "the heartbeat, once the CA is the right one")


def test_the_simulator_trusting_another_ca_fails_at_once_naming_the_ca(tls_kafka: KafkaBroker, pki: dict) -> None:
    with pytest.raises(ConnectionError) as raised:
        KafkaTransport(tls_kafka.tls_bootstrap, "heartbeats",
                       security=KafkaSecurity("SSL", ca_file=pki["other_ca"].cert))
    assert str(raised.value) == (
        f"Kafka producer cannot connect to {tls_kafka.tls_bootstrap}: TLS: the certificate of "
        f"{tls_kafka.tls_bootstrap} was not accepted (unable to get local issuer certificate); "
        "is CITYKPI_KAFKA_CA_FILE the CA that signed it?")


def test_a_host_name_the_certificate_does_not_carry_is_refused_naming_the_host(
        tls_kafka: KafkaBroker, pki: dict) -> None:
    """The right CA, but the broker reached as "localhost" while its certificate names only IP:127.0.0.1."""
    by_name = f"localhost:{tls_kafka.tls_port}"
    with pytest.raises(ConnectionError) as raised:
        KafkaTransport(by_name, "heartbeats", security=KafkaSecurity("SSL", ca_file=pki["ca"].cert))
    assert re.fullmatch(
        rf"Kafka producer cannot connect to {by_name}: TLS: the certificate of {by_name} was not accepted "
        r"\(Hostname mismatch, certificate is not valid for 'localhost'\.\); the broker's certificate must name "
        r"localhost in its subjectAltName \(DNS:name or IP:address\), as given in CITYKPI_KAFKA_BOOTSTRAP and the "
        r"broker's advertised\.listeners", str(raised.value)), str(raised.value)


def test_scram_over_tls_with_the_right_passwords_stores_a_heartbeat(
        database_url: str, sasl_tls_kafka: KafkaBroker, pki: dict) -> None:
    topic, group = _names()
    assert sasl_tls_kafka.tls_security_protocol == "SASL_SSL"
    ca = pki["ca"].cert
    _send(sasl_tls_kafka.tls_bootstrap, topic,
          KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "citykpi-simulator", USERS["citykpi-simulator"], ca), "wifi-tls-3")
    ingest = KafkaIngest(_settings(database_url, sasl_tls_kafka.tls_bootstrap, topic, group, ca,
                                   kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                                   kafka_username="citykpi-ingest", kafka_password=USERS["citykpi-ingest"]),
                         database_url)
    _ingest_stores(ingest, database_url, [("wifi-tls-3", "kafka")], "the heartbeat produced and consumed with SASL_SSL")


def test_scram_over_tls_with_a_wrong_password_names_the_authentication_failure(
        sasl_tls_kafka: KafkaBroker, pki: dict) -> None:
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "citykpi-simulator", "not-the-password", pki["ca"].cert)
    with pytest.raises(ConnectionError, match=re.escape(
            f"authentication failed at {sasl_tls_kafka.tls_bootstrap} (SASL_SSL, SCRAM-SHA-512 as "
            "'citykpi-simulator'): [Error 58] SaslAuthenticationFailed")):
        KafkaTransport(sasl_tls_kafka.tls_bootstrap, "heartbeats", security=security)
