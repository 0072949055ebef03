"""One sensor indicator's evidence: every key point of its denominator, whether it counted, and why."""

from html import escape

from kpi.coverage import CoverageValue
from report.formats import STATUS_VI
from web.pages.evidence_map import point_url, render_evidence_map
from web.pages.map_parts import MAP_STYLE, map_head
from web.pages.report_page import STYLE


def _why(point: dict, theta: str) -> str:
    if point["covered"]:
        return f"Đạt: hoạt động {point['availability']} giờ ≥ θ = {theta}"
    if not point["devices"]:
        return "Không đạt: không có thiết bị đúng loại nào gửi heartbeat tốt trong kỳ"
    return f"Không đạt: hoạt động {point['availability']} giờ ({point['availability_percent']}%) < θ = {theta}"


def _device_hours(device: dict) -> str:
    # The hours only a connection status made up are named, so that an auditor sees how much of a rate rests
    # on "online" alone (README, "Availability messages").
    online_only = device.get("online_only_hours", 0)
    extra = f", trong đó {online_only} giờ chỉ có tín hiệu trực tuyến" if online_only else ""
    return f"{device['up_hours']} giờ{extra}"


def render_evidence_page(value: CoverageValue, points: list[dict], back_url: str, *, map_entries: list[dict],
                         tiles: dict[str, str] | None) -> str:
    """`points` as `kpi.export.evidence_dicts` gives them; `map_entries` from `evidence_map.map_entries`."""
    shown = "—" if value.value is None else f"{value.value} {escape(value.unit)}"
    status = f'<span class="badge {escape(value.status)}">{escape(STATUS_VI.get(value.status, value.status))}</span>'
    rows = []
    for p in points:
        devices = ", ".join(f"{escape(d['device_id'])} ({_device_hours(d)})" for d in p["devices"]) or "—"
        rows.append(
            f'<tr data-point="{escape(p["point_id"])}" class="{"covered" if p["covered"] else "not-covered"}">'
            f'<td><a href="{escape(point_url(p["point_id"]))}">{escape(p["point_id"])}</a></td>'
            f'<td>{escape(p["name"] or "")}</td>'
            f'<td>{escape(p["admin_unit"] or "—")}</td>'
            f'<td class="num">{p["buckets_up"]} / {p["buckets_in_force"]}</td>'
            f'<td class="num">{p["availability_percent"]}%</td><td>{"Có" if p["covered"] else "Không"}</td>'
            f"<td>{devices}</td><td>{escape(_why(p, str(value.theta)))}</td></tr>")
    return f"""<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chỉ số {escape(value.code)} — bằng chứng</title><style>{STYLE}{MAP_STYLE}
tr.not-covered td{{background:#fff8f0}}</style>{map_head("evidence-map.js")}</head><body>
<p><a href="{escape(back_url)}">← Báo cáo</a></p>
<h1>#{escape(value.code)} {escape(value.name_vi)}</h1>
<p>Kỳ {value.period_from} đến trước {value.period_to}: <strong>{shown}</strong> ({value.numerator} / {value.denominator}
điểm đạt, θ = {value.theta}) {status}</p>
<p class="muted">Một điểm hoạt động trong một giờ (giờ địa phương) khi có thiết bị đúng loại gắn với điểm gửi
ít nhất một heartbeat tốt trong giờ đó (với camera, Wi-Fi và bảng thông tin: hoặc báo trực tuyến trong giờ đó); điểm
đạt khi số giờ hoạt động / số giờ điểm có hiệu lực ≥ θ.</p>
{render_evidence_map(map_entries, tiles)}
<table><thead><tr><th>Mã điểm</th><th>Tên</th><th>Đơn vị</th><th>Giờ hoạt động / có hiệu lực</th><th>Tỷ lệ</th>
<th>Đạt</th><th>Thiết bị (giờ hoạt động)</th><th>Lý do</th></tr></thead><tbody>
{"".join(rows)}
</tbody></table></body></html>"""
