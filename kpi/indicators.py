"""Reads of indicator values, as the CLI, the API and the exports serve them."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg

from citykpi.settings import Settings
from kpi.catalog import Catalog, Indicator, load_catalog
from kpi.coverage import CoverageValue, completed_end, coverage, local_midnight, point_evidence, summarise
from kpi.rollups import check_rollup_zone, refresh_recent_rollups
from kpi.units import points_by_unit
from registry.tree import unit_tree
from registry.units import AdminUnit


class FormIndicator(ValueError):
    """The indicator exists but is form-based: its values come from agency submissions, not heartbeats."""


def sensor_indicator(catalog: Catalog, code: str) -> Indicator:
    """Raises UnknownIndicator or FormIndicator."""
    indicator = catalog.indicator(code)
    if indicator.sensor is None:
        raise FormIndicator(f"indicator {code} is form-based; its values come from agency submissions")
    return indicator


def sensor_value(conn: psycopg.Connection, code: str, period_from: date, period_to: date, *, settings: Settings,
                 catalog: Catalog | None = None, now: datetime | None = None,
                 admin_unit: str | None = None, devices: bool = False) -> CoverageValue:
    """One sensor indicator over [period_from, period_to), for the province or one unit and its descendants.

    `devices` adds each point's devices and their up hours to the evidence (slower: read per device-day).

    Raises UnknownIndicator, FormIndicator or ValueError (empty period), UnknownAdminUnit.
    """
    indicator = sensor_indicator(catalog or load_catalog(), code)
    return coverage(conn, code=indicator.code, name_vi=indicator.name_vi, unit=indicator.unit,
                    category=indicator.sensor.category, device_kind=indicator.sensor.device_kind,
                    theta=indicator.sensor.theta, period_from=period_from, period_to=period_to,
                    zone=settings.zone, now=now or datetime.now(UTC), lateness_window=settings.lateness_window,
                    admin_unit=admin_unit, devices=devices)


def all_sensor_values(conn: psycopg.Connection, period_from: date, period_to: date, *, settings: Settings,
                      now: datetime | None = None) -> list[CoverageValue]:
    catalog = load_catalog()
    return [sensor_value(conn, i.code, period_from, period_to, settings=settings, catalog=catalog, now=now)
            for i in catalog.sensor_indicators()]


def latest_complete_month(now: datetime, settings: Settings) -> tuple[date, date]:
    """The last local calendar month that has ended by `now`, as [first day, first day of the next)."""
    this_month = now.astimezone(settings.zone).date().replace(day=1)
    previous = (this_month - timedelta(days=1)).replace(day=1)
    return previous, this_month


@dataclass(frozen=True)
class ReportRow:
    """One indicator for the province (unit None) or one administrative unit."""

    value: CoverageValue
    unit: AdminUnit | None


def period_report(conn: psycopg.Connection, period_from: date, period_to: date, *, settings: Settings,
                  catalog: Catalog | None = None, now: datetime | None = None) -> list[ReportRow]:
    """Every sensor indicator, for the province and for every unit of the tree in force in the last bucket.

    The points' evidence is read once per indicator and split by unit here, not once per unit.
    """
    if period_to <= period_from:
        raise ValueError(f"period end {period_to} must be after its start {period_from}")
    catalog = catalog or load_catalog()
    now = now or datetime.now(UTC)
    start, end = local_midnight(period_from, settings.zone), local_midnight(period_to, settings.zone)
    refresh_recent_rollups(conn, start, completed_end(start, end, now), lateness_window=settings.lateness_window)
    check_rollup_zone(conn, settings.timezone)
    tree = unit_tree(conn, end - timedelta(hours=1))
    rows = []
    for indicator in catalog.sensor_indicators():
        spec = indicator.sensor
        evidence = point_evidence(conn, category=spec.category, device_kind=spec.device_kind, theta=spec.theta,
                                  start=start, end=completed_end(start, end, now), zone=settings.zone)
        common = dict(code=indicator.code, name_vi=indicator.name_vi, unit=indicator.unit, theta=spec.theta,
                      period_from=period_from, period_to=period_to, period_end=end, now=now,
                      lateness_window=settings.lateness_window)
        rows.append(ReportRow(summarise(evidence=evidence, **common), None))
        grouped = points_by_unit(evidence, tree)
        for unit in tree.in_order():
            rows.append(ReportRow(summarise(evidence=grouped[unit.code], admin_unit=unit.code, **common), unit))
    return rows
