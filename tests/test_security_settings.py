"""Transport security settings that cannot work stop the start, naming the variable; empty ones are unset."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from base.brokers.kafka import KafkaSecurity
from base.settings import Settings


def _error(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    [error] = caught.value.errors()
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


def test_sasl_without_credentials_is_refused() -> None:
    assert _error(kafka_security_protocol="SASL_SSL", kafka_username="citykpi-ingest") == (
        "kafka_password: Value error, SASL_SSL needs CITYKPI_KAFKA_USERNAME and CITYKPI_KAFKA_PASSWORD")


def test_credentials_without_sasl_are_refused_rather_than_silently_unused() -> None:
    assert _error(kafka_username="citykpi-ingest", kafka_password="secret") == (
        "kafka_password: Value error, a Kafka user name and password need CITYKPI_KAFKA_SECURITY_PROTOCOL "
        "SASL_SSL or SASL_PLAINTEXT")


def test_a_kafka_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not checked before TLS is on\n")
    assert _error(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="u", kafka_password="p",
                  kafka_ca_file=tmp_path / "ca.crt") == (
        "kafka_ca_file: Value error, is only used over TLS: CITYKPI_KAFKA_SECURITY_PROTOCOL must be SSL or SASL_SSL")


def test_an_unusable_kafka_ca_file_is_named_before_any_connection(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    settings = Settings(kafka_security_protocol="SSL", kafka_ca_file=tmp_path / "ca.crt")
    with pytest.raises(ValueError, match=r"CITYKPI_KAFKA_CA_FILE .*ca\.crt: not a PEM CA certificate"):
        KafkaSecurity.from_settings(settings).client_options()


def test_sasl_options_reach_the_kafka_client() -> None:
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                        kafka_username="citykpi-ingest", kafka_password="secret")
    assert KafkaSecurity.from_settings(settings).client_options() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "citykpi-ingest", "sasl_plain_password": "secret"}
    assert "secret" not in repr(KafkaSecurity.from_settings(settings))


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # What docker compose passes for `${CITYKPI_MQTT_CA_FILE:-}` when deploy/.env leaves it out.
    for name in ("CITYKPI_MQTT_CA_FILE", "CITYKPI_MQTT_CERT_FILE", "CITYKPI_KAFKA_USERNAME", "CITYKPI_KAFKA_PASSWORD",
                 "CITYKPI_KAFKA_CA_FILE"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.kafka_username, settings.kafka_password,
            settings.kafka_ca_file) == (None, None, None, None, None)
