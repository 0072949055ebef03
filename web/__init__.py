"""`citykpi serve`: the HTTP app over the features — the KPI API, the report and evidence pages, form
submissions with agency tokens, and the audit log of every write attempt."""
