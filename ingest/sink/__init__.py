"""The batching sink: decoded heartbeats into the database, rejections into dead letters, then acknowledgement."""

from ingest.sink.writer import BatchResult, HeartbeatSink, WriteAbandoned

__all__ = ["BatchResult", "HeartbeatSink", "WriteAbandoned"]
