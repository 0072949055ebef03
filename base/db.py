"""Database connections. One place decides how we connect, so that every caller gets the same session settings."""

import psycopg
from psycopg.rows import dict_row


def connect(url: str, *, autocommit: bool = False, connect_timeout_s: int | None = None) -> psycopg.Connection:
    """A connection whose session time zone is UTC: the code converts to local time explicitly, never by accident.

    `connect_timeout_s` bounds the wait for an unreachable server (libpq waits for the OS otherwise)."""
    extra = {} if connect_timeout_s is None else {"connect_timeout": connect_timeout_s}
    conn = psycopg.connect(url, autocommit=autocommit, row_factory=dict_row,
                           application_name="citykpi", options="-c timezone=UTC", **extra)
    return conn


def timescaledb_available(conn: psycopg.Connection) -> bool:
    """True when the extension is installed and preloaded, which CREATE EXTENSION requires."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS installed,"
        " current_setting('shared_preload_libraries') AS preload"
    ).fetchone()
    return bool(row["installed"]) and "timescaledb" in row["preload"]


def timescaledb_in_use(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS used").fetchone()
    return bool(row["used"])
