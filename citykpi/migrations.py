"""Applies every package's numbered .sql migrations in order, once each.

A package owns its tables; its migrations live in `<package>/migrations/NNN_name.sql`. The order of
packages is fixed here because later packages reference earlier ones' tables.
"""

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

PACKAGES = ("registry", "ingest", "kpi")
_FILENAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same in every process that migrates this database.
_ADVISORY_LOCK = 0x63697479


@dataclass(frozen=True)
class Migration:
    package: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover() -> list[Migration]:
    found = []
    for package in PACKAGES:
        folder = resources.files(package) / "migrations"
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            match = _FILENAME.match(entry.name)
            if match:
                found.append(Migration(package, int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return found


def migrate(conn: psycopg.Connection, *, timezone: str = "Asia/Ho_Chi_Minh") -> list[Migration]:
    """Apply what is missing and return it; an already-applied file whose text changed is an error.

    `timezone` (CITYKPI_TIMEZONE) reaches the SQL as the `citykpi.timezone` setting: the rollups bucket
    by local hour and record the zone they were built in (kpi/migrations/001_rollups.sql).
    """
    conn.autocommit = True
    conn.execute("SELECT set_config('citykpi.timezone', %s, false)", (timezone,))
    conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " package text NOT NULL, version integer NOT NULL, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (package, version))"
        )
        applied = {(r["package"], r["version"]): r for r in conn.execute(
            "SELECT package, version, name, checksum FROM schema_migrations")}
        done = []
        for migration in discover():
            previous = applied.get((migration.package, migration.version))
            if previous is not None:
                if previous["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{migration.package}/migrations/{migration.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one")
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (package, version, name, checksum) VALUES (%s, %s, %s, %s)",
                    (migration.package, migration.version, migration.name, migration.checksum))
            done.append(migration)
        if any((m.package, m.version) == ("kpi", 1) for m in done):
            # Outside the migration's transaction, which a TimescaleDB refresh cannot run in.
            from kpi.rollups import materialise_history

            materialise_history(conn)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))
