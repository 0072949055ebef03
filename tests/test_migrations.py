import psycopg
import pytest

from base.db import connect, timescaledb_in_use
from citykpi.schema import discover, migrate
from tests.helpers import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every migration test runs on plain PostgreSQL and on TimescaleDB."""
    return request.param


def test_migrate_applies_every_package_migration_once(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        first = migrate(conn)
        second = migrate(conn)
        tables = {r["table_name"] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert [(m.package, m.name) for m in first] == [(m.package, m.name) for m in discover()]
    assert second == []
    assert {"key_points", "devices", "bindings", "admin_units", "heartbeats", "dead_letters",
            "schema_migrations"} <= tables


def test_registry_migrations_run_before_ingest_ones() -> None:
    packages = [m.package for m in discover()]
    assert packages.index("registry") < packages.index("ingest")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_heartbeats_is_a_plain_table_without_timescaledb(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn)
        assert not timescaledb_in_use(conn)
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'heartbeats'").fetchone()["relkind"]
    assert kind == "r"


@pytest.mark.parametrize("backend", ["timescaledb"])
def test_heartbeats_is_a_hypertable_with_timescaledb(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn)
        row = conn.execute("SELECT count(*) AS n FROM timescaledb_information.hypertables"
                           " WHERE hypertable_name = 'heartbeats'").fetchone()
    assert row["n"] == 1


def test_an_edited_applied_migration_is_refused(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        migrate(conn)
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE package = 'ingest' AND version = 1")
        try:
            migrate(conn)
        except Exception as exc:  # noqa: BLE001 - the message is what we check
            assert "001_heartbeats.sql changed after it was applied" in str(exc)
        else:
            raise AssertionError("an edited migration was accepted")


def test_migrate_command_reports_applied_then_nothing(empty_database_url: str) -> None:
    import subprocess
    import sys

    env = {"CITYKPI_DATABASE_URL": empty_database_url, "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-m", "citykpi.cli", "db", "migrate"], capture_output=True, text=True,
                           env=env, check=True)
    second = subprocess.run([sys.executable, "-m", "citykpi.cli", "db", "migrate"], capture_output=True,
                            text=True, env=env, check=True)
    assert f"{len(discover())} migration(s) applied" in first.stdout
    assert "0 migration(s) applied" in second.stdout
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(discover())
