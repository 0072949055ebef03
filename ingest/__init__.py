"""Heartbeat ingestion: broker sources, message decoding, the batching database sink and dead letters."""
