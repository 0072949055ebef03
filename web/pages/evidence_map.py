"""The evidence page's map: every point of the denominator at its place, coloured by why it counted or not."""

from html import escape
from urllib.parse import quote

from web.pages.map_parts import json_for_script

# Colour classes, in the legend's order. A point that did not count is grey when no device of the indicator's
# kind was bound to it at all in the period (a registry gap), orange when one was and was not up often enough.
STATES = {
    "covered": "Đạt: hoạt động ≥ θ",
    "not-covered": "Không đạt: có thiết bị đúng loại nhưng hoạt động < θ",
    "no-device": "Không đạt: không gắn thiết bị đúng loại nào trong kỳ",
}
POPUP_LABELS = {"id": "Mã điểm", "unit": "Đơn vị", "availability": "Hoạt động", "devices": "Thiết bị",
                "hours": "giờ", "online_only": "giờ chỉ có tín hiệu trực tuyến", "none": "không có",
                "history": "Lịch sử điểm →"}


def point_url(point_id: str) -> str:
    return "/points/" + quote(point_id, safe="")


def map_entries(points: list[dict], bound: dict[str, list[str]]) -> list[dict]:
    """One entry per point of the evidence (`kpi.export.evidence_dicts`), `bound` being the devices of the
    indicator's kind bound to each point during the period: those that were never up appear with 0 hours."""
    entries = []
    for p in points:
        hours = {d["device_id"]: d["up_hours"] for d in p["devices"]}
        online_only = {d["device_id"]: d.get("online_only_hours", 0) for d in p["devices"]}
        devices = sorted(set(hours) | set(bound.get(p["point_id"], [])))
        state = "covered" if p["covered"] else "not-covered" if devices else "no-device"
        entries.append({
            "id": p["point_id"], "name": p["name"] or "", "unit": p["admin_unit"] or "—",
            "lat": p["lat"], "lon": p["lon"], "state": state, "up": p["buckets_up"], "in_force": p["buckets_in_force"],
            "percent": p["availability_percent"], "url": point_url(p["point_id"]),
            "devices": [{"id": d, "up_hours": hours.get(d, 0), "online_only_hours": online_only.get(d, 0)}
                        for d in devices]})
    return entries


def render_evidence_map(entries: list[dict], tiles: dict[str, str] | None) -> str:
    """The map's section: hidden until the page script has Leaflet and draws it; the legend counts each colour;
    points without coordinates are listed under the map (the script skips them)."""
    counts = {state: sum(1 for e in entries if e["state"] == state) for state in STATES}
    legend = "".join(f'<span><i class="swatch {state}-swatch"></i>{escape(label)} ({counts[state]})</span>'
                     for state, label in STATES.items())
    unlocated = [e for e in entries if e["lat"] is None or e["lon"] is None]
    missing = ""
    if unlocated:
        names = ", ".join(f'<a href="{escape(e["url"])}">{escape(e["id"])}</a> {escape(e["name"])}' for e in unlocated)
        missing = f'<p class="muted" id="unlocated-points">Điểm không có toạ độ (không vẽ): {names}</p>'
    payload = {"points": entries, "tiles": tiles, "states": STATES, "labels": POPUP_LABELS}
    return (f'<section id="evidence-map-section" hidden><h2>Bản đồ các điểm</h2>'
            f'<div class="legend" id="evidence-map-legend">{legend}</div>'
            f'<div id="evidence-map" class="map" role="region" aria-label="Bản đồ các điểm"></div>{missing}'
            f'{json_for_script("evidence-map-data", payload)}</section>')
