"""The service's database: every package's migrations, in the order their tables build on each other."""

import psycopg

import forms.migrations
import ingest.migrations
import kpi.migrations
import registry.migrations
import web.migrations
from base import migrations

SCHEMAS = (registry.migrations.SCHEMA, ingest.migrations.SCHEMA, kpi.migrations.SCHEMA, forms.migrations.SCHEMA,
           web.migrations.SCHEMA)


def migrate(conn: psycopg.Connection, *, timezone: str = "Asia/Ho_Chi_Minh") -> list[migrations.Migration]:
    """Apply every package's missing migrations (idempotent); `timezone` is CITYKPI_TIMEZONE (the rollups'
    buckets are built in it)."""
    return migrations.migrate(conn, SCHEMAS, timezone=timezone)


def discover() -> list[migrations.Migration]:
    return migrations.discover(SCHEMAS)
