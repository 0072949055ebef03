"""The province's complete report: all indicators of the catalog for one period, sensor and form alike,
grouped as the decision groups them, with the change against the previous period."""

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from citykpi.settings import Settings
from kpi.catalog import Catalog, Indicator
from kpi.export import neutralise
from kpi.forms.periods import Period
from kpi.forms.store import current_submissions
from kpi.forms.values import form_value
from kpi.indicators import sensor_value

STATUS_VI = {"final": "chính thức", "provisional": "tạm tính", "insufficient_data": "chưa đủ dữ liệu"}


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
    previous_subs = current_submissions(conn, catalog.id, previous.label)
    rows = []
    for indicator in catalog.indicators:
        value, status, numerator, denominator, source, missing = _row_value(
            conn, indicator, period, catalog, settings, this_subs, now)
        previous_value = _row_value(conn, indicator, previous, catalog, settings, previous_subs, now)[0]
        rows.append(ReportRow(indicator.layer, indicator.group_vi, indicator.subgroup_vi, indicator.code,
                              indicator.name_vi, indicator.unit, indicator.kind, value, status, numerator,
                              denominator, source, previous_value, missing))
    return rows


TABLE_COLUMNS = ["layer", "group_vi", "subgroup_vi", "code", "name_vi", "unit", "kind", "value", "status",
                 "numerator", "denominator", "source", "previous_value", "change", "missing"]


def _table(rows: list[ReportRow]) -> list[list[object]]:
    table = []
    for row in rows:
        d = row.as_dict()
        d["missing"] = " | ".join(row.missing)
        table.append([neutralise("" if d[c] is None else d[c]) for c in TABLE_COLUMNS])
    return table


def render_xlsx(rows: list[ReportRow], catalog: Catalog, period: Period) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = f"Báo cáo {period.label}"
    sheet.append([catalog.title_vi])
    sheet.append([f"Kỳ báo cáo: {period.label} (so với {period.previous().label})"])
    sheet.append(TABLE_COLUMNS)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    for line in _table(rows):
        sheet.append(line)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render(rows: list[ReportRow], catalog: Catalog, period: Period, fmt: str) -> str:
    if fmt == "json":
        layers = []
        for layer in catalog.layers:
            groups: dict[str, list[dict]] = {}
            for row in rows:
                if row.layer == layer.code:
                    groups.setdefault(row.group_vi, []).append(row.as_dict())
            layers.append({"code": layer.code, "name_vi": layer.name_vi,
                           "groups": [{"name_vi": g, "indicators": items} for g, items in groups.items()]})
        return json.dumps({"catalog": catalog.id, "title_vi": catalog.title_vi, "period": period.label,
                           "layers": layers}, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        writer.writerows(_table(rows))
        return "\ufeff" + out.getvalue()
    if fmt == "md":
        lines = [f"# {catalog.title_vi}", "", f"Kỳ báo cáo: **{period.label}** (so với {period.previous().label})", ""]
        for layer in catalog.layers:
            lines += [f"## Lớp {layer.code}. {layer.name_vi}", "",
                      "| # | Chỉ số | Giá trị | Kỳ trước | Trạng thái | Tử số/Mẫu số | Nguồn |",
                      "|---|---|---|---|---|---|---|"]
            for row in (r for r in rows if r.layer == layer.code):
                fraction = f"{row.numerator}/{row.denominator}" if row.denominator is not None else "—"
                lines.append(f"| {row.code} | {row.name_vi} | {_shown(row.value, row.unit)} | "
                             f"{_shown(row.previous_value, row.unit)} | {STATUS_VI.get(row.status, row.status)} | "
                             f"{fraction} | {row.source or '—'} |")
            lines.append("")
        return "\n".join(lines)
    raise ValueError(f"unknown format {fmt!r}; use json, csv or md")


def _shown(value: object, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value} {unit}" if isinstance(value, Decimal) else str(value)
