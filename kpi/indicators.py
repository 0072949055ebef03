"""Reads of indicator values, as the CLI and (later) the API serve them."""

from datetime import UTC, date, datetime

import psycopg

from citykpi.settings import Settings
from kpi.catalog import Catalog, load_catalog
from kpi.coverage import CoverageValue, coverage


def sensor_value(conn: psycopg.Connection, code: str, period_from: date, period_to: date, *, settings: Settings,
                 catalog: Catalog | None = None, now: datetime | None = None) -> CoverageValue:
    """One sensor indicator over [period_from, period_to); raises UnknownIndicator or ValueError."""
    indicator = (catalog or load_catalog()).indicator(code)
    if indicator.sensor is None:
        raise ValueError(f"indicator {code} is form-based; its values come from agency submissions")
    return coverage(conn, code=indicator.code, name_vi=indicator.name_vi, unit=indicator.unit,
                    category=indicator.sensor.category, device_kind=indicator.sensor.device_kind,
                    theta=indicator.sensor.theta, period_from=period_from, period_to=period_to,
                    zone=settings.zone, now=now or datetime.now(UTC), lateness_window=settings.lateness_window)


def all_sensor_values(conn: psycopg.Connection, period_from: date, period_to: date, *, settings: Settings,
                      now: datetime | None = None) -> list[CoverageValue]:
    catalog = load_catalog()
    return [sensor_value(conn, i.code, period_from, period_to, settings=settings, catalog=catalog, now=now)
            for i in catalog.sensor_indicators()]
