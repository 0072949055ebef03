"""Reads of sensor indicator values, as the CLI, the API, the report and the exports serve them.

Every read of a period goes one way (`PeriodRead`): the period's local midnights and the hours ended by now;
the rollups refreshed over its recent part and their zone checked; then, per indicator, the points'
evidence, the unit tree in force in the period's last hour when the value is broken down, and the summary.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg

from base.settings import Settings
from base.time import local_midnight
from catalog import Catalog, Indicator, load_catalog
from kpi.availability import extend_open_availability
from kpi.coverage import CoverageValue, PointEvidence, completed_end, point_evidence, summarise
from kpi.rollups import check_rollup_zone, refresh_recent_rollups
from kpi.units import points_by_unit, points_in_unit
from registry.tree import UnitTree, unit_tree
from registry.units import AdminUnit


class FormIndicator(ValueError):
    """The indicator exists but is form-based: its values come from agency submissions, not heartbeats."""


def sensor_indicator(catalog: Catalog, code: str) -> Indicator:
    """Raises UnknownIndicator or FormIndicator."""
    indicator = catalog.indicator(code)
    if indicator.sensor is None:
        raise FormIndicator(f"indicator {code} is form-based; its values come from agency submissions")
    return indicator


@dataclass(frozen=True)
class PeriodRead:
    """The half-open local-date period [period_from, period_to), ready to be read at `now`.

    Only buckets that have ended by `now` count (`completed`), so the current month reads as "so far", not as
    a month whose future hours were all down.
    """

    period_from: date
    period_to: date
    start: datetime
    end: datetime
    completed: datetime
    now: datetime
    settings: Settings

    @classmethod
    def open(cls, conn: psycopg.Connection, period_from: date, period_to: date, *, settings: Settings,
             now: datetime) -> "PeriodRead":
        """Raises ValueError for an empty period, RollupZoneMismatch when the rollups were built in another zone."""
        if period_to <= period_from:
            raise ValueError(f"period end {period_to} must be after its start {period_from}")
        start, end = local_midnight(period_from, settings.zone), local_midnight(period_to, settings.zone)
        completed = completed_end(start, end, now)
        # First, while the connection is idle: on TimescaleDB it may refresh the rollups (not in a transaction).
        refresh_recent_rollups(conn, start, completed, lateness_window=settings.lateness_window)
        extend_open_availability(conn, now)
        check_rollup_zone(conn, settings.timezone)
        return cls(period_from, period_to, start, end, completed, now, settings)

    def evidence(self, conn: psycopg.Connection, indicator: Indicator, *, devices: bool = False
                 ) -> list[PointEvidence]:
        """Every key point of the indicator's category in force in a completed bucket; with `devices`, each
        point's devices and their up hours too (closed months from their monthly rollup, other days per
        device-day)."""
        spec = indicator.sensor
        return point_evidence(conn, category=spec.category, device_kind=spec.device_kind, theta=spec.theta,
                              start=self.start, end=self.completed, zone=self.settings.zone, devices=devices)

    def tree(self, conn: psycopg.Connection) -> UnitTree:
        # DESIGN: "in the unit tree in force in the last bucket of P"
        return unit_tree(conn, self.end - timedelta(hours=1))

    def value(self, indicator: Indicator, evidence: list[PointEvidence], admin_unit: str | None = None
              ) -> CoverageValue:
        return summarise(code=indicator.code, name_vi=indicator.name_vi, unit=indicator.unit,
                         theta=indicator.sensor.theta, period_from=self.period_from, period_to=self.period_to,
                         evidence=evidence, period_end=self.end, now=self.now,
                         lateness_window=self.settings.lateness_window, admin_unit=admin_unit)


def sensor_value(conn: psycopg.Connection, code: str, period_from: date, period_to: date, *, settings: Settings,
                 catalog: Catalog | None = None, now: datetime | None = None,
                 admin_unit: str | None = None, devices: bool = False) -> CoverageValue:
    """One sensor indicator over [period_from, period_to), for the province or one unit and its descendants.

    `devices` adds each point's devices and their up hours to the evidence.

    Raises UnknownIndicator, FormIndicator, ValueError (empty period), UnknownAdminUnit (a unit not in the
    tree in force in the period's last bucket) or RollupZoneMismatch.
    """
    indicator = sensor_indicator(catalog or load_catalog(), code)
    read = PeriodRead.open(conn, period_from, period_to, settings=settings, now=now or datetime.now(UTC))
    evidence = read.evidence(conn, indicator, devices=devices)
    if admin_unit is not None:
        evidence = points_in_unit(evidence, read.tree(conn), admin_unit)
    return read.value(indicator, evidence, admin_unit)


def all_sensor_values(conn: psycopg.Connection, period_from: date, period_to: date, *, settings: Settings,
                      now: datetime | None = None) -> list[CoverageValue]:
    read = PeriodRead.open(conn, period_from, period_to, settings=settings, now=now or datetime.now(UTC))
    return [read.value(indicator, read.evidence(conn, indicator)) for indicator in load_catalog().sensor_indicators()]


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
    catalog = catalog or load_catalog()
    read = PeriodRead.open(conn, period_from, period_to, settings=settings, now=now or datetime.now(UTC))
    tree = read.tree(conn)
    rows = []
    for indicator in catalog.sensor_indicators():
        evidence = read.evidence(conn, indicator)
        rows.append(ReportRow(read.value(indicator, evidence), None))
        grouped = points_by_unit(evidence, tree)
        for unit in tree.in_order():
            rows.append(ReportRow(read.value(indicator, grouped[unit.code], unit.code), unit))
    return rows
