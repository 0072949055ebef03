"""One key point's history, as the registry holds it: every version with its validity, unit and place, and every
device bound to it, with the binding's validity. Times are the province's local time."""

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from registry.queries import PointHistory
from web.pages.report_page import STYLE

CATEGORY_VI = {"security_point": "điểm an ninh trật tự", "public_place": "điểm công cộng",
               "transit_stop": "điểm dừng xe buýt", "water_source": "nguồn nước",
               "air_hotspot": "điểm quan trắc không khí", "wastewater_facility": "cơ sở xử lý nước thải"}
KIND_VI = {"cctv": "camera", "wifi_ap": "điểm phát Wi-Fi", "bus_display": "bảng thông tin xe buýt",
           "water_monitor": "trạm quan trắc nước", "air_monitor": "trạm quan trắc không khí",
           "wastewater_station": "trạm quan trắc nước thải"}


def _at(instant: datetime | None, zone: ZoneInfo, *, open_end: str = "nay") -> str:
    return open_end if instant is None else instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def render_point_page(point_id: str, history: PointHistory, zone: ZoneInfo) -> str:
    latest = history.versions[-1]
    versions = "".join(
        f'<tr class="version"><td>{_at(v["valid_from"], zone)}</td><td>{_at(v["valid_to"], zone)}</td>'
        f'<td>{escape(v["name"])}</td>'
        f'<td>{escape(", ".join(CATEGORY_VI.get(c, c) for c in v["categories"]))}</td>'
        f'<td>{escape(v["admin_unit"] or "—")}{_unit_name(v["admin_unit_name"])}</td>'
        f'<td class="num">{v["lat"]:.5f}, {v["lon"]:.5f}</td></tr>' for v in history.versions)
    bindings = "".join(
        f'<tr class="binding"><td>{escape(b["device_id"])}</td><td>{escape(KIND_VI.get(b["kind"], b["kind"]))}</td>'
        f'<td>{_at(b["valid_from"], zone)}</td><td>{_at(b["valid_to"], zone)}</td>'
        f'<td class="num">{b["heartbeat_interval_s"] or "mặc định"}</td><td>{escape(b["gateway_id"] or "—")}</td></tr>'
        for b in history.bindings) or '<tr><td colspan="6">Chưa có thiết bị nào được gắn với điểm này.</td></tr>'
    return f"""<!doctype html><html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Điểm {escape(point_id)} — lịch sử</title><style>{STYLE}</style></head><body>
<p><a href="/">← Báo cáo</a></p>
<h1>Điểm {escape(point_id)}: {escape(latest["name"])}</h1>
<p class="muted">Mỗi thay đổi tên, đơn vị, vị trí hay nhóm điểm là một phiên bản mới; không phiên bản nào bị xoá.
Thời gian theo giờ địa phương; hiệu lực từ thời điểm bắt đầu đến trước thời điểm kết thúc.</p>
<h2>Các phiên bản</h2>
<table id="versions"><thead><tr><th>Hiệu lực từ</th><th>Đến</th><th>Tên</th><th>Nhóm điểm</th><th>Đơn vị</th>
<th>Toạ độ (vĩ độ, kinh độ)</th></tr></thead><tbody>{versions}</tbody></table>
<h2>Thiết bị được gắn</h2>
<table id="bindings"><thead><tr><th>Mã thiết bị</th><th>Loại</th><th>Gắn từ</th><th>Đến</th>
<th>Chu kỳ heartbeat (giây)</th><th>Gateway</th></tr></thead><tbody>{bindings}</tbody></table>
</body></html>"""


def _unit_name(name: str | None) -> str:
    return f" — {escape(name)}" if name else ""


def render_point_problem(status: int, message: str) -> str:
    """The page for an id that is malformed (422) or that the registry never held (404)."""
    title = "Mã điểm không hợp lệ" if status == 422 else "Không có điểm này"
    return f"""<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style></head><body><p><a href="/">← Báo cáo</a></p><h1>{title}</h1>
<p>{escape(message)}</p></body></html>"""
