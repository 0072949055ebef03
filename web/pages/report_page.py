"""The 27 indicators of a period, grouped as the decision groups them, with their trend and, for the sensor
indicators, a link to the evidence (which key points counted, which did not, and why)."""

from collections.abc import Callable
from decimal import Decimal
from html import escape

from base.periods import Period
from catalog import Catalog
from report.build import ReportRow
from report.formats import STATUS_VI
from web.pages.charts import sparkline
from web.pages.map_parts import MAP_STYLE, map_head

STYLE = """
body{font-family:system-ui,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1b1f24;padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:2px solid #0b5394}
h3{font-size:1rem;color:#0b5394;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;width:100%;font-size:.92rem} th,td{padding:.35rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle} th{background:#f3f6fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:.8rem;white-space:nowrap}
.final{background:#d4edda;color:#155724}.provisional{background:#fff3cd;color:#7a5b00}
.insufficient_data{background:#eceff1;color:#455a64}.muted{color:#6b7785}.spark{color:#0b5394}
nav a{margin-right:.8rem} .missing{font-size:.8rem;color:#7a5b00}
"""


def _value(row: ReportRow) -> str:
    if row.value is None:
        return '<span class="muted">—</span>'
    return f"{row.value} {escape(row.unit)}" if isinstance(row.value, Decimal) else escape(str(row.value))


def render_report_page(catalog: Catalog, period: Period, rows: list[ReportRow],
                       trends: dict[str, list[tuple[str, Decimal | str | None]]],
                       evidence_url: Callable[[str], str], other_periods: list[str], unit_map: str) -> str:
    """`unit_map` is the overview's map section (`unit_map.render_unit_map`), shown above the indicators."""
    parts = [f"""<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(catalog.title_vi)} — {escape(period.label)}</title><style>{STYLE}{MAP_STYLE}</style>
{map_head("unit-map.js")}</head><body>
<h1>{escape(catalog.title_vi)}</h1>
<p class="muted">{escape(catalog.source)}</p>
<p>Kỳ báo cáo: <strong>{escape(period.label)}</strong>{_against(period)}</p>
<nav>Kỳ khác: {"".join(f'<a href="/?period={escape(p)}">{escape(p)}</a>' for p in other_periods)}</nav>
{unit_map}"""]
    for layer in catalog.layers:
        layer_rows = [r for r in rows if r.layer == layer.code]
        if not layer_rows:
            continue
        parts.append(f"<h2>Lớp {escape(layer.code)}. {escape(layer.name_vi)}</h2>")
        groups: dict[str, list[ReportRow]] = {}
        for row in layer_rows:
            groups.setdefault(row.group_vi, []).append(row)
        for group, group_rows in groups.items():
            parts.append(f"<h3>{escape(group)}</h3><table><thead><tr><th>#</th><th>Chỉ số</th><th>Giá trị</th>"
                         "<th>Kỳ trước</th><th>Trạng thái</th><th>Tử số / Mẫu số</th><th>Xu hướng</th>"
                         "<th>Nguồn</th></tr></thead><tbody>")
            for row in group_rows:
                parts.append(_row(row, trends.get(row.code, []), evidence_url))
            parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _against(period: Period) -> str:
    previous = period.previous()
    return f" · so với kỳ trước {escape(previous.label)}" if previous else ""


def _row(row: ReportRow, trend: list[tuple[str, Decimal | str | None]], evidence_url: Callable[[str], str]) -> str:
    fraction = f"{row.numerator} / {row.denominator}" if row.denominator is not None else "—"
    previous = (f"{row.previous_value}" if row.previous_value is not None else "—")
    name = escape(row.name_vi)
    if row.kind == "sensor":
        name = f'<a href="{escape(evidence_url(row.code))}" title="Xem bằng chứng từng điểm">{name}</a>'
    missing = "".join(f'<div class="missing">Thiếu: {escape(m)}</div>' for m in row.missing)
    numeric_trend = [(label, v if isinstance(v, Decimal) else None) for label, v in trend]
    return (f'<tr data-code="{escape(row.code)}"><td>{escape(row.code)}</td><td>{name}{missing}</td>'
            f'<td class="num">{_value(row)}</td><td class="num">{escape(previous)}</td>'
            f'<td><span class="badge {escape(row.status)}">{escape(STATUS_VI.get(row.status, row.status))}</span></td>'
            f'<td class="num">{fraction}</td><td>{sparkline(numeric_trend)}</td>'
            f'<td>{escape(row.source or "—")}</td></tr>')
