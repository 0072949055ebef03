"""Indicator catalog, coverage computation, form submissions and the KPI API."""
