"""Reaching the brokers: shared by ingest (which consumes) and the simulators (which publish)."""
