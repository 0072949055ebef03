"""Heartbeat ingestion: broker sources, one decode stage, the batching database sink and dead letters."""
