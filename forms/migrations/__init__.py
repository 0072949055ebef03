"""Form submissions and their files (forms/README.md)."""

from base.migrations import Schema

# Applied as kpi's until the forms left the kpi package.
SCHEMA = Schema("forms", formerly={"010_form_submissions.sql": "kpi"})
