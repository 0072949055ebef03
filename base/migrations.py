"""Applies the numbered .sql migrations of the packages that own tables, in order, once each.

A package owns its tables; its migrations live in `<package>/migrations/NNN_name.sql`, and
`<package>/migrations/__init__.py` declares them as a `Schema`: the tables (views, functions) it offers other
packages, those of other packages it uses, what must run once its files are applied, and where files came from
when they changed owner. The application names its schemas in order (`citykpi/schema.py`); this runner knows
none of them.
"""

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources

import psycopg

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


@dataclass(frozen=True)
class Schema:
    """One package's migrations.

    `public`: its tables, views and functions that other packages may use (read, call, attach a trigger to);
    the rest are its own.
    `uses`: package → the public tables, views and functions of that package it uses; those packages are
    migrated first.
    `after_applying`: called with the connection (autocommit) and the migrations this run applied of this
    package, outside their transactions — for work a transaction cannot hold (a TimescaleDB refresh).
    `formerly`: file name → the package it was applied under before it moved here (same version, same text);
    its row in schema_migrations is relabelled, so that a database migrated before the move does not run it
    again.
    """

    package: str
    public: tuple[str, ...] = ()
    uses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    after_applying: Callable[[psycopg.Connection, list[Migration]], None] | None = None
    formerly: dict[str, str] = field(default_factory=dict)

    def migrations(self) -> list[Migration]:
        folder = resources.files(self.package) / "migrations"
        found = []
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            match = _FILENAME.match(entry.name)
            if match:
                found.append(Migration(self.package, int(match.group(1)), entry.name, entry.read_text("utf-8")))
        return found


class MigrationError(RuntimeError):
    pass


def discover(schemas: Sequence[Schema]) -> list[Migration]:
    """Every migration of `schemas`, in the order they are applied; raises MigrationError when a schema comes
    before one it requires."""
    seen: set[str] = set()
    for schema in schemas:
        missing = [name for name in schema.uses if name not in seen]
        if missing:
            raise MigrationError(f"{schema.package}'s migrations build on {', '.join(missing)}, which must come "
                                 "before them")
        seen.add(schema.package)
    return [migration for schema in schemas for migration in schema.migrations()]


def migrate(conn: psycopg.Connection, schemas: Sequence[Schema], *,
            timezone: str = "Asia/Ho_Chi_Minh") -> list[Migration]:
    """Apply what is missing and return it; an already-applied file whose text changed is an error.

    `timezone` (CITYKPI_TIMEZONE) reaches the SQL as the `citykpi.timezone` setting: the rollups bucket
    by local hour and record the zone they were built in (kpi/migrations/001_rollups.sql).
    """
    wanted = discover(schemas)
    conn.autocommit = True
    conn.execute("SELECT set_config('citykpi.timezone', %s, false)", (timezone,))
    conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " package text NOT NULL, version integer NOT NULL, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (package, version))"
        )
        _relabel_moved(conn, schemas)
        applied = {(r["package"], r["version"]): r for r in conn.execute(
            "SELECT package, version, name, checksum FROM schema_migrations")}
        done = []
        for migration in wanted:
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
        for schema in schemas:
            if schema.after_applying is not None and (mine := _of(schema, done)):
                schema.after_applying(conn, mine)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))


def _relabel_moved(conn: psycopg.Connection, schemas: Iterable[Schema]) -> None:
    for schema in schemas:
        for name, old_package in schema.formerly.items():
            conn.execute("UPDATE schema_migrations SET package = %s WHERE package = %s AND name = %s",
                         (schema.package, old_package, name))


def _of(schema: Schema, migrations: Iterable[Migration]) -> list[Migration]:
    return [m for m in migrations if m.package == schema.package]
