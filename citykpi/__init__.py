"""citykpi: coverage indicators for a province's smart-city infrastructure.

This package holds the shared glue (settings, database access, migrations, the CLI and the
throwaway local services); the domain lives in the top-level packages `registry`, `ingest`,
`kpi` and `simulators`.
"""

__version__ = "0.1.0"
