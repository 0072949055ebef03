"""The registry's tables: key points, devices, bindings, administrative units (registry/README.md)."""

from base.migrations import Schema

SCHEMA = Schema("registry", public=("key_points", "devices", "bindings", "admin_units", "kind_rules"))
