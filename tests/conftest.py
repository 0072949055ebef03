"""Real services for the suite: PostgreSQL, an MQTT broker and Kafka on loopback.

Each is taken from an environment variable when given (CITYKPI_TEST_DATABASE_URL, CITYKPI_TEST_MQTT_URL,
CITYKPI_TEST_KAFKA_BOOTSTRAP), else started here for the session. A service that cannot start skips
its tests with the reason — except under CI=true, where it fails the run: CI must test everything.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from citykpi.db import connect, timescaledb_available
from citykpi.migrations import migrate
from citykpi.services.databases import create_database, scratch_database
from citykpi.services.errors import ServiceUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} unavailable: {exc}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: every service must run)", pytrace=False)
    pytest.skip(message)


_STARTED: list[str] = []


def _announce(line: str) -> None:
    _STARTED.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """CI logs must show which real services the run used (pytest captures fixture output)."""
    if _STARTED:
        terminalreporter.section("services started by the test harness")
        for line in _STARTED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL of a PostgreSQL server."""
    if url := os.environ.get("CITYKPI_TEST_DATABASE_URL"):
        yield url
        return
    from citykpi.services.postgres import LocalPostgres

    try:
        server = LocalPostgres(workdir=tmp_path_factory.mktemp("postgres")).start()
    except ServiceUnavailable as exc:
        _unavailable("PostgreSQL", exc)
    _announce(f"PostgreSQL started from {server.bindir} on {server.url}")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def migrated_template(postgres_server: str) -> str:
    """A migrated database used as the template of each test's own database (copying is fast)."""
    name = f"citykpi_template_{uuid.uuid4().hex[:8]}"
    with connect(create_database(postgres_server, name)) as conn:
        migrate(conn)
    return name


@pytest.fixture
def database_url(postgres_server: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with scratch_database(postgres_server, "citykpi_test", template=migrated_template) as url:
        yield url


@pytest.fixture
def empty_database_url(postgres_server: str) -> Iterator[str]:
    """A fresh database with no schema, for migration tests."""
    with scratch_database(postgres_server, "citykpi_empty") as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as conn:
        yield conn


@pytest.fixture(scope="session")
def timescaledb(postgres_server: str) -> None:
    """Skips (even in CI: no registry here serves the extension) when TimescaleDB is not installed."""
    with connect(postgres_server) as conn:
        if not timescaledb_available(conn):
            pytest.skip("TimescaleDB extension not installed/preloaded on this PostgreSQL; "
                        "its variant of this test was not run")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A running broker object (`.url`, `.supports_mqtt5`, and `.stop()/.start()` when started here)."""
    from citykpi.services.mqtt_broker import LocalMqttBroker

    if url := os.environ.get("CITYKPI_TEST_MQTT_URL"):
        class External:
            pass
        broker = External()
        broker.url, broker.supports_mqtt5, broker.implementation = url, True, "external"
        yield broker
        return
    try:
        broker = LocalMqttBroker(workdir=tmp_path_factory.mktemp("mqtt")).start()
    except ServiceUnavailable as exc:
        _unavailable("MQTT broker", exc)
    if IN_CI and broker.implementation != "mosquitto":
        broker.close()
        pytest.fail("CI=true but mosquitto is not installed (apt-get install mosquitto)", pytrace=False)
    _announce(f"{broker.implementation} started at {broker.url}")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if bootstrap := os.environ.get("CITYKPI_TEST_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    from citykpi.services.kafka import KafkaBroker

    try:
        broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka"))).start()
    except ServiceUnavailable as exc:
        _unavailable("Kafka", exc)
    _announce(f"Kafka {broker.version} broker (KRaft) started at {broker.bootstrap}, log {broker.log_path}")
    yield broker.bootstrap
    broker.stop()
