"""Ingest telemetry, declared once. Units in the names, per Prometheus conventions."""

from prometheus_client import Counter, Histogram

MESSAGES_RECEIVED = Counter(
    "citykpi_ingest_messages_received_total", "Broker messages received", ["source"])
HEARTBEATS_STORED = Counter(
    "citykpi_ingest_heartbeats_stored_total", "Heartbeats newly stored", ["source"])
HEARTBEATS_DUPLICATE = Counter(
    "citykpi_ingest_heartbeats_duplicate_total", "Heartbeats already stored (same device_id and ts)", ["source"])
HEARTBEATS_UNKNOWN_DEVICE = Counter(
    "citykpi_ingest_heartbeats_unknown_device_total", "Stored heartbeats from devices not in the registry",
    ["source"])
DEAD_LETTERS = Counter(
    "citykpi_ingest_dead_letters_total", "Rejected messages or heartbeats, by reason", ["source", "reason"])
BATCH_ROWS = Histogram(
    "citykpi_ingest_batch_rows", "Heartbeats per database transaction",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000))
BATCH_WRITE_SECONDS = Histogram(
    "citykpi_ingest_batch_write_seconds", "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DATABASE_ERRORS = Counter(
    "citykpi_ingest_database_errors_total", "Database errors while writing, by class", ["error_class"])
