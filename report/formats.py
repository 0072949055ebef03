"""The report as officials and their tools read it: JSON, CSV, Markdown or an XLSX workbook, in Vietnamese."""

import csv
import io
import json
from decimal import Decimal

from base.periods import Period
from catalog import Catalog
from kpi.export import neutralise
from report.build import ReportRow

STATUS_VI = {"final": "chính thức", "provisional": "tạm tính", "insufficient_data": "chưa đủ dữ liệu"}

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
    sheet.append([f"Kỳ báo cáo: {period.label}{against(period)}"])
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
        lines = [f"# {catalog.title_vi}", "", f"Kỳ báo cáo: **{period.label}**{against(period)}", ""]
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


def against(period: Period) -> str:
    """What the report compares the period with: " (so với 2025)", or nothing for a first period."""
    previous = period.previous()
    return f" (so với {previous.label})" if previous else ""


def _shown(value: object, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value} {unit}" if isinstance(value, Decimal) else str(value)
