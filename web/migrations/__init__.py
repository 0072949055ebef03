"""API tokens and the audit log of every write attempt (web/README.md)."""

from base.migrations import Schema

# Applied as kpi's until the HTTP app left the kpi package.
SCHEMA = Schema("web", formerly={"020_api_access.sql": "kpi"})
