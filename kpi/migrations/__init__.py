"""The KPI engine's tables: the rollups of heartbeats and the point rollups (kpi/README.md)."""

import psycopg

from base.migrations import Migration, Schema
from kpi.rollups import materialise_history


def _materialise_once_created(conn: psycopg.Connection, applied: list[Migration]) -> None:
    # Outside the migration's transaction, which a TimescaleDB refresh cannot run in.
    if any(m.version == 1 for m in applied):
        materialise_history(conn)


# Rollups of ingest's heartbeats and availability events, and the registry's points, bindings and kind rules:
# triggers on them mark the point rollups stale, a read joins them. (The unit tree comes through
# registry/tree.py.)
SCHEMA = Schema("kpi", after_applying=_materialise_once_created,
                uses={"registry": ("key_points", "devices", "bindings", "kind_rules"),
                      "ingest": ("heartbeats", "heartbeat_batch_hooks", "availability_events")})
