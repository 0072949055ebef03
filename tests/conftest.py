"""Real services for the suite: PostgreSQL, an MQTT broker and Kafka on loopback.

Each is taken from an environment variable when given (CITYKPI_TEST_DATABASE_URL, CITYKPI_TEST_MQTT_URL,
CITYKPI_TEST_KAFKA_BOOTSTRAP), else started here for the session. A service that cannot start skips
its tests with the reason — except under CI=true, where it fails the run: CI must test everything.

Tests run on plain PostgreSQL; those that ask for the `timescaledb` backend (see BACKENDS) run on a second
server with TimescaleDB preloaded (CITYKPI_TEST_TIMESCALEDB_URL, else started here when the extension is
installed for the PostgreSQL binaries in use, e.g. CITYKPI_PG_BINDIR), and skip, saying so, where it is not.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from base.db import connect, timescaledb_available
from citykpi.schema import migrate
from devstack.databases import create_database, scratch_database
from devstack.errors import ServiceUnavailable
from tests.helpers import IN_CI, unavailable

_STARTED: list[str] = []


def _announce(line: str) -> None:
    _STARTED.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """CI logs must show which real services the run used (pytest captures fixture output)."""
    if _STARTED:
        terminalreporter.section("services started by the test harness")
        for line in _STARTED:
            terminalreporter.write_line(line)


def _start_postgres(tmp_path_factory: pytest.TempPathFactory, *, timescaledb: bool) -> Iterator[str]:
    from devstack.postgres import LocalPostgres

    try:
        server = LocalPostgres(workdir=tmp_path_factory.mktemp("postgres"), timescaledb=timescaledb).start()
    except ServiceUnavailable as exc:
        if timescaledb:
            # Even in CI: no package registry this project's CI reaches serves the extension.
            pytest.skip(f"TimescaleDB unavailable, its variant of this test was not run: {exc}")
        unavailable("PostgreSQL", exc)
    _announce(f"PostgreSQL{' with TimescaleDB' if timescaledb else ''} started from {server.bindir} on {server.url}")
    yield server.url
    server.stop()


def _given_or_started(variable: str, tmp_path_factory: pytest.TempPathFactory, *, timescaledb: bool) -> Iterator[str]:
    """The server named by environment `variable`, else one started (and stopped) for the session."""
    if url := os.environ.get(variable):
        yield url
        return
    yield from _start_postgres(tmp_path_factory, timescaledb=timescaledb)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL of a plain PostgreSQL server (no TimescaleDB, even where it is installed)."""
    yield from _given_or_started("CITYKPI_TEST_DATABASE_URL", tmp_path_factory, timescaledb=False)


@pytest.fixture(scope="session")
def timescaledb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL of a PostgreSQL server with TimescaleDB preloaded; skips the test when there is none."""
    yield from _given_or_started("CITYKPI_TEST_TIMESCALEDB_URL", tmp_path_factory, timescaledb=True)


@pytest.fixture
def backend() -> str:
    """Plain PostgreSQL unless overridden (tests/helpers.py BACKENDS)."""
    return "postgresql"


@pytest.fixture
def server_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The superuser URL of the backend's server (the TimescaleDB one starts on first use)."""
    return request.getfixturevalue("timescaledb_server" if backend == "timescaledb" else "postgres_server")


def _migrated_template(server: str) -> str:
    name = f"citykpi_template_{uuid.uuid4().hex[:8]}"
    with connect(create_database(server, name)) as conn:
        migrate(conn)
    return name


@pytest.fixture(scope="session")
def migrated_template(postgres_server: str) -> str:
    """A migrated database used as the template of each test's own database (copying is fast)."""
    return _migrated_template(postgres_server)


@pytest.fixture(scope="session")
def timescaledb_template(timescaledb_server: str) -> str:
    with connect(timescaledb_server) as conn:
        if not timescaledb_available(conn):
            pytest.fail("the TimescaleDB test server does not preload the extension (shared_preload_libraries)",
                        pytrace=False)
    return _migrated_template(timescaledb_server)


@pytest.fixture
def database_url(backend: str, server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    template = request.getfixturevalue("timescaledb_template" if backend == "timescaledb" else "migrated_template")
    with scratch_database(server_url, "citykpi_test", template=template) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database with no schema, for migration tests."""
    with scratch_database(server_url, "citykpi_empty") as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as conn:
        yield conn


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A running broker object (`.url`, `.supports_mqtt5`, and `.stop()/.start()` when started here)."""
    from devstack.mqtt_broker import LocalMqttBroker

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
        unavailable("MQTT broker", exc)
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
    from devstack.kafka import KafkaBroker

    try:
        broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka"))).start()
    except ServiceUnavailable as exc:
        unavailable("Kafka", exc)
    _announce(f"Kafka {broker.version} broker (KRaft) started at {broker.bootstrap}, log {broker.log_path}")
    yield broker.bootstrap
    broker.stop()
