"""Monitoring-station files dropped in a directory (by the province's FTP server) as a source of heartbeats."""

from ingest.files.source import FilesSource

__all__ = ["FilesSource"]
