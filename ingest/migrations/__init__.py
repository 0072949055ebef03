"""Ingest's tables: heartbeats (a hypertable on TimescaleDB), dead letters, the batch hooks (ingest/README.md)."""

from base.migrations import Schema

# The registry decides a device's kind and which gateway may report for it.
SCHEMA = Schema("ingest", public=("heartbeats", "heartbeat_batch_hooks", "availability_events"),
                uses={"registry": ("devices", "bindings")})
