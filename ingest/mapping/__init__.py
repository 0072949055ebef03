"""Vendor messages mapped to heartbeats by a file, not code (`citykpi ingest --mappings FILE`)."""
