"""The province's complete report: all indicators of the catalog for one period, sensor and form alike,
grouped as the decision groups them, with the change against the previous period."""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from base.periods import Period
from base.settings import Settings
from catalog import Catalog, Indicator
from forms.store import current_submissions
from forms.values import form_value
from kpi.indicators import sensor_value


@dataclass
class ReportRow:
    layer: str
    group_vi: str
    subgroup_vi: str | None
    code: str
    name_vi: str
    unit: str
    kind: str
    value: Decimal | str | None
    status: str
    numerator: int | None
    denominator: int | None
    source: str
    previous_value: Decimal | str | None
    missing: list[str]

    @property
    def change(self) -> Decimal | None:
        if isinstance(self.value, Decimal) and isinstance(self.previous_value, Decimal):
            return self.value - self.previous_value
        return None

    def as_dict(self) -> dict[str, object]:
        def plain(v: object) -> object:
            return float(v) if isinstance(v, Decimal) else v
        return {"layer": self.layer, "group_vi": self.group_vi, "subgroup_vi": self.subgroup_vi, "code": self.code,
                "name_vi": self.name_vi, "unit": self.unit, "kind": self.kind, "value": plain(self.value),
                "status": self.status, "numerator": self.numerator, "denominator": self.denominator,
                "source": self.source, "previous_value": plain(self.previous_value),
                "change": plain(self.change), "missing": self.missing}


def _row_value(conn: psycopg.Connection, indicator: Indicator, period: Period, catalog: Catalog,
               settings: Settings, submissions: list[dict], now: datetime) -> tuple:
    if indicator.kind == "sensor":
        v = sensor_value(conn, indicator.code, period.start, period.end, settings=settings, catalog=catalog,
                         now=now)
        return v.value, v.status, v.numerator, v.denominator, "cảm biến (heartbeat thiết bị)", []
    own = [s for s in submissions if s["indicator_code"] == indicator.code]
    f = form_value(indicator, period, own, catalog, now=now)
    names = [(catalog.agency(s.split("/")[0]).name_vi if catalog.agency(s.split("/")[0]) else s) for s in f.sources]
    return f.value, f.status, f.numerator, f.denominator, "; ".join(names), f.missing


def build_report(conn: psycopg.Connection, catalog: Catalog, period: Period, *, settings: Settings,
                 now: datetime | None = None) -> list[ReportRow]:
    now = now or datetime.now(UTC)
    previous = period.previous()
    this_subs = current_submissions(conn, catalog.id, period.label)
    previous_subs = current_submissions(conn, catalog.id, previous.label) if previous else []
    rows = []
    for indicator in catalog.indicators:
        value, status, numerator, denominator, source, missing = _row_value(
            conn, indicator, period, catalog, settings, this_subs, now)
        previous_value = None if previous is None else _row_value(
            conn, indicator, previous, catalog, settings, previous_subs, now)[0]
        rows.append(ReportRow(indicator.layer, indicator.group_vi, indicator.subgroup_vi, indicator.code,
                              indicator.name_vi, indicator.unit, indicator.kind, value, status, numerator,
                              denominator, source, previous_value, missing))
    return rows
