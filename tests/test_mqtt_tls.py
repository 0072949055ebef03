"""MQTT over TLS against a real Mosquitto with a TLS listener, certificates made by a throwaway CA in the test:
`citykpi ingest` trusting that CA (with a user name and password) stores what the simulator sends over TLS;
trusting another CA it stays not ready and says why; mutual TLS with a client certificate."""

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from base.brokers.mqtt import MqttTls
from base.settings import Settings
from devstack.ingest_process import IngestProcess
from devstack.mqtt_broker import LocalMqttBroker, TlsListener, find_mosquitto
from ingest.service import MqttIngest
from registry.broker_accounts import mosquitto_hash
from simulators.mqtt_publisher import MqttPublisher
from simulators.stream import Outgoing
from simulators.transports import MqttTransport
from tests.helpers import missing, wait_for
from tests.tls_helpers import Issued, ThrowawayCa

PASSWORD = "ingest-secret-over-tls"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    ca, other_ca = ThrowawayCa.create(directory / "ca", "citykpi-test-ca"), ThrowawayCa.create(directory / "other",
                                                                                               "someone-else-ca")
    return {"ca": ca, "other_ca": other_ca, "server": ca.issue("server"), "client": ca.issue("ingest", client=True)}


def _broker(pki: dict, workdir: Path, *, require_certificate: bool) -> LocalMqttBroker:
    if find_mosquitto() is None:
        missing("mosquitto is not installed (apt-get install mosquitto); the amqtt fallback has no TLS listener")
    server: Issued = pki["server"]
    (workdir / "passwd").write_text(f"citykpi-ingest:{mosquitto_hash(PASSWORD)}\n"
                                    f"citykpi-simulator:{mosquitto_hash(PASSWORD)}\n")
    return LocalMqttBroker(implementation="mosquitto", workdir=workdir,
                           security=f"password_file {workdir / 'passwd'}\n",
                           tls=TlsListener(pki["ca"].cert, server.cert, server.key, require_certificate))


@pytest.fixture(scope="module")
def tls_broker(pki: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMqttBroker]:
    with _broker(pki, tmp_path_factory.mktemp("mqtt-tls"), require_certificate=False) as broker:
        yield broker


def _env(database_url: str, broker: LocalMqttBroker, ca: Path) -> dict[str, str]:
    return {"CITYKPI_DATABASE_URL": database_url, "CITYKPI_MQTT_URL": broker.tls_url,
            "CITYKPI_MQTT_CA_FILE": str(ca), "CITYKPI_MQTT_USERNAME": "citykpi-ingest",
            "CITYKPI_MQTT_PASSWORD": PASSWORD, "CITYKPI_MQTT_CLIENT_ID": f"ingest-{uuid.uuid4().hex[:8]}",
            "CITYKPI_BATCH_MAX_WAIT_S": "0.05"}


def _settings(database_url: str, broker: LocalMqttBroker, ca: Path, **more: object) -> Settings:
    """The settings `_env` gives the ingest process, for an ingest run in this process."""
    return Settings(**{k.removeprefix("CITYKPI_").lower(): v for k, v in _env(database_url, broker, ca).items()},
                    **more)


def _heartbeat(device_id: str) -> Outgoing:
    body = {"device_id": device_id, "kind": "cctv", "ts": datetime.now(UTC).replace(microsecond=0).isoformat()}
    return Outgoing(datetime.now(UTC), f"devices/{device_id}/heartbeat", device_id, json.dumps(body).encode())


def _stored(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT device_id, source FROM heartbeats ORDER BY device_id").fetchall()


def test_ingest_trusting_the_brokers_ca_stores_what_the_simulator_sends_over_tls(
        database_url: str, tls_broker: LocalMqttBroker, pki: dict, tmp_path: Path) -> None:
    ingest = IngestProcess(source="mqtt", env=_env(database_url, tls_broker, pki["ca"].cert),
                           log_path=tmp_path / "ingest.log")
    try:
        ingest.start()  # returns once /readyz says 200: connected over TLS, logged in, subscribed
        transport = MqttTransport(tls_broker.tls_url, client_id=f"sim-{uuid.uuid4().hex[:6]}",
                                  username="citykpi-simulator", password=PASSWORD, tls=MqttTls(pki["ca"].cert))
        transport.send(_heartbeat("cam-tls-1"))
        transport.close()
        wait_for(lambda: _stored(database_url) == [("cam-tls-1", "mqtt")], what="the heartbeat sent over TLS")
        assert ingest.terminate() == 0
        assert "over TLS" in ingest.log()
    finally:
        ingest.close()


def test_ingest_trusting_another_ca_stays_not_ready_and_says_why(
        database_url: str, tls_broker: LocalMqttBroker, pki: dict, tmp_path: Path) -> None:
    ingest = MqttIngest(_settings(database_url, tls_broker, pki["other_ca"].cert), database_url)
    ingest.start()
    try:
        wait_for(lambda: ingest.source.last_error is not None, what="the failed TLS handshake reported")
        # Mosquitto sends its CA along with its certificate, hence "self-signed certificate in certificate chain".
        problems = ingest.not_ready()
        assert not ingest.source.connected.is_set()
        assert problems == [f"mqtt: not connected to the broker (TLS: the certificate of 127.0.0.1:"
                            f"{tls_broker.tls_port} was not accepted (self-signed certificate in certificate chain); "
                            "is CITYKPI_MQTT_CA_FILE the CA that signed it, and does it name this host?)"]
    finally:
        ingest.stop(timeout_s=5)


def test_a_publisher_trusting_another_ca_fails_at_once_with_the_reason(tls_broker: LocalMqttBroker,
                                                                       pki: dict) -> None:
    with pytest.raises(ConnectionError, match="certificate of 127.0.0.1:.* was not accepted"):
        MqttPublisher(tls_broker.tls_url, client_id="sim-wrong-ca", username="citykpi-simulator",
                      password=PASSWORD, tls=MqttTls(pki["other_ca"].cert))


def test_mutual_tls_ingest_with_a_client_certificate_stores_heartbeats(
        database_url: str, pki: dict, tmp_path: Path) -> None:
    client: Issued = pki["client"]
    with _broker(pki, tmp_path, require_certificate=True) as broker:
        settings = _settings(database_url, broker, pki["ca"].cert, mqtt_cert_file=client.cert,
                             mqtt_key_file=client.key)
        ingest = MqttIngest(settings, database_url)
        ingest.start()
        try:
            wait_for(ingest.source.connected.is_set, what="the ingest connection with a client certificate")
            publisher = MqttPublisher(broker.tls_url, client_id="sim-mtls", username="citykpi-simulator",
                                      password=PASSWORD, tls=MqttTls(pki["ca"].cert, client.cert, client.key))
            publisher.publish_raw(_heartbeat("cam-mtls-1").topic, _heartbeat("cam-mtls-1").body)
            publisher.close()
            wait_for(lambda: _stored(database_url) == [("cam-mtls-1", "mqtt")], what="the heartbeat over mutual TLS")
        finally:
            ingest.stop(timeout_s=5)


def test_mutual_tls_ingest_without_a_client_certificate_is_not_ready_and_hints_at_it(
        database_url: str, pki: dict, tmp_path: Path) -> None:
    with _broker(pki, tmp_path, require_certificate=True) as broker:
        ingest = MqttIngest(_settings(database_url, broker, pki["ca"].cert), database_url)
        ingest.start()
        try:
            wait_for(lambda: ingest.source.last_error is not None, what="the refused connection reported")
            [problem] = ingest.not_ready()
            assert problem.startswith("mqtt: not connected to the broker (")
            assert problem.endswith("does the broker require a client certificate (CITYKPI_MQTT_CERT_FILE)?)")
        finally:
            ingest.stop(timeout_s=5)


@pytest.mark.parametrize(("env", "message"), [
    ({"CITYKPI_MQTT_URL": "mqtt://127.0.0.1:1883", "CITYKPI_MQTT_CA_FILE": "{ca}"},
     "CITYKPI_MQTT_CA_FILE: Value error, is only used over TLS: CITYKPI_MQTT_URL must be mqtts://host:port"),
    ({"CITYKPI_MQTT_URL": "mqtts://127.0.0.1:8883", "CITYKPI_MQTT_CA_FILE": "/nonexistent/ca.crt"},
     "CITYKPI_MQTT_CA_FILE: Value error, /nonexistent/ca.crt: no such file"),
    ({"CITYKPI_MQTT_URL": "mqtts://127.0.0.1:8883", "CITYKPI_MQTT_KEY_FILE": "{ca}"},
     "CITYKPI_MQTT_KEY_FILE: Value error, needs CITYKPI_MQTT_CERT_FILE, the certificate this key belongs to"),
])
def test_tls_settings_that_cannot_work_stop_the_start_naming_the_variable(
        env: dict[str, str], message: str, pki: dict) -> None:
    environment = {"PATH": "/usr/bin:/bin", "CITYKPI_DATABASE_URL": "postgresql://unused@127.0.0.1:1/x",
                   **{k: v.format(ca=pki["ca"].cert) for k, v in env.items()}}
    result = subprocess.run([sys.executable, "-m", "citykpi.cli", "ingest", "--source", "mqtt"], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert message in result.stderr
